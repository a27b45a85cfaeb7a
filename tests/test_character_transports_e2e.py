"""Lip-sync through the SDK on both transports: frames of every format line up with the voice the client
received within one frame (measured on the voiced part of ``BotReply.audio``; on LiveKit the voice is routed
as ``audio-data`` so it is the exact PCM sent), and a barge-in cancels the rest.
(The story itself: test_character_e2e.py; the wire: test_character_features_*.py.)"""

from __future__ import annotations

import array
import math
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from convai_sync import (
    BlendshapeConfig,
    BlendshapeFrames,
    ConvaiClient,
)
from simulator import Simulator
from simulator.core.characters import shipped_character
from simulator.core.features import FORMAT_VALUES
from simulator.core.lipsync import MOUTH_INDEX
from simulator.core.speech import voice_seconds

pytestmark = pytest.mark.timeout(90)

TRANSPORTS = ("websocket", "livekit")
KEYS = {"player_name": "Ada", "sword_price": "30"}
#: A voiced sample's loudness above which it counts as the character's voice (the default voice peaks at 8000).
VOICED = 1000
TALKER_REPLY = "Once upon a time, " + "la " * 120  # 7.6 s of voice
TALKER = {"id": "talker", "replies": [{"pattern": "story", "reply": TALKER_REPLY}]}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(characters_file=shipped_character("shopkeeper"), websocket_audio=True) as server:
        server.define_characters([TALKER])
        yield server


def config_for(sim: Simulator, transport: str, **overrides: Any) -> Any:
    return sim.client_config(character_id=overrides.pop("character_id", "shopkeeper"), transport=transport,
                             **overrides)


def voiced_seconds(pcm: bytes, rate: int) -> float:
    """Seconds from the first to the last voiced sample of PCM16 mono ``pcm``."""
    samples = array.array("h")
    samples.frombytes(pcm)
    if sys.byteorder != "little":
        samples.byteswap()
    loud = [i for i, v in enumerate(samples) if abs(v) >= VOICED]
    return (loud[-1] - loud[0] + 1) / rate if loud else 0.0


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fmt", list(FORMAT_VALUES))
def test_lipsync_frames_line_up_with_the_voice(sim: Simulator, transport: str, fmt: str) -> None:
    fps = 60
    # On LiveKit the voice comes as audio-data messages: the exact PCM the simulator sent (a track's
    # jitter buffer stretches and conceals audio under load, by tens of milliseconds).
    routing = {"audio_routing": "data_only"} if transport == "livekit" else {}
    config = config_for(sim, transport, blendshape_config=BlendshapeConfig(format=fmt, chunk_size=8, output_fps=fps),
                        **routing)
    with ConvaiClient(config) as client:
        client.connect(timeout=20)
        reply = client.ask("How much is the sword?", timeout=20)
    assert reply.audio is not None
    if FORMAT_VALUES[fmt] == 0:
        assert reply.lipsync is None or reply.lipsync.frames == ()
        return
    clip = reply.lipsync
    assert clip is not None and clip.format == fmt and clip.fps == fps
    assert len(clip.frames) == math.ceil(voice_seconds(reply.text) * fps)
    assert all(len(frame) == FORMAT_VALUES[fmt] for frame in clip.frames)
    # Within one frame of the voice the client received (plus one 20 ms audio frame of padding).
    heard = voiced_seconds(reply.audio.pcm, reply.audio.sample_rate)
    assert abs(clip.duration - heard) <= 1 / fps + 0.02, (clip.duration, heard)
    mouth = MOUTH_INDEX[fmt]
    middle = clip.frame_at(clip.duration / 2)
    assert middle[mouth] > 0.5  # mouth open mid-sentence


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_barge_in_cancels_the_rest_of_the_frames(sim: Simulator, transport: str) -> None:
    fps = 60
    config = config_for(sim, transport, character_id="talker",
                        blendshape_config=BlendshapeConfig(format="visemes", chunk_size=5, output_fps=fps))
    full = math.ceil(voice_seconds(TALKER_REPLY) * fps)
    with ConvaiClient(config) as client:
        client.connect(timeout=20)
        stream = client.stream("tell me a story", timeout=30)
        client.wait_for(BlendshapeFrames, lambda e: e.type == "chunked-neurosync-blendshapes", timeout=20)
        client.interrupt(wait=True, timeout=20)
        cancel = client.wait_for(BlendshapeFrames, lambda e: e.type == "neurosync-blendshapes-cancel", timeout=20)
        chunks = list(stream)
        lipsync = client.lipsync
    assert chunks and cancel.data["reason"] == "interruption"
    assert lipsync is not None and lipsync.cancelled and lipsync.finished
    assert lipsync.duration * fps < full  # the rest of the turn's frames never came
