"""Audio on the real WebSocket transport against raw loopback peers: bounded back-pressure for
send_audio, inbound binary Pipecat frames (audio, RTVI message, interruption), bad binary input."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from convai_sync import (
    AudioFrame,
    AudioInterrupted,
    BotText,
    ConvaiClient,
    ConvaiConfig,
    EventDeliveryPolicy,
    ReconnectPolicy,
    RetryPolicy,
    SendQueueFullError,
    SessionError,
    SessionState,
)
from convai_sync.testing import Recorder
from convai_sync.transports import pipecat
from tests.support.peers import Peer, form_b, text_frame

pytestmark = pytest.mark.timeout(30)

MARGIN = 0.75
P = EventDeliveryPolicy


@pytest.fixture
def clients() -> Iterator[list[ConvaiClient]]:
    made: list[ConvaiClient] = []
    yield made
    for client in made:
        client.close()


def connected(peer: Peer, clients: list[ConvaiClient], **overrides: Any) -> ConvaiClient:
    values: dict[str, Any] = {"api_key": "k", "character_id": "c", "url": peer.url,
                              "retry_policy": RetryPolicy(max_attempts=1),
                              "reconnect_policy": ReconnectPolicy(max_attempts=0), "connection_timeout": 10.0}
    values.update(overrides)
    client = ConvaiClient(ConvaiConfig(**values))
    clients.append(client)
    client.connect(timeout=5)
    assert client.state is SessionState.CONNECTED
    return client


def binary(payload: bytes) -> bytes:
    return text_frame(payload, opcode=0x2)


def test_send_audio_to_a_stalled_peer_is_bounded_and_leaves_room_for_messages(
        peer_factory: Callable[..., Peer], clients: list[ConvaiClient]) -> None:
    peer = peer_factory(after_ready="stall")
    client = connected(peer, clients, send_queue_bytes=64 * 1024)
    second = bytes(2 * 16000)
    full: SendQueueFullError | None = None
    for _ in range(200):  # far more than the kernel buffers and the queue hold
        started = time.monotonic()
        try:
            client.send_audio(second, 16000, timeout=0.3)
        except SendQueueFullError as exc:
            full = exc
            elapsed = time.monotonic() - started
            break
    assert full is not None, "the send queue never filled"
    assert elapsed < 0.3 + MARGIN, f"send_audio waited {elapsed:.2f} s past a 0.3 s timeout"
    assert "ms of audio queued" in str(full)
    client.send_text("still room for messages")  # audio may fill only part of the queue


def test_inbound_binary_pipecat_frames(peer_factory: Callable[..., Peer], clients: list[ConvaiClient]) -> None:
    peer = peer_factory()
    client = connected(peer, clients)
    audio: Recorder[AudioFrame] = Recorder()
    texts: Recorder[BotText] = Recorder()
    stops: Recorder[AudioInterrupted] = Recorder()
    client.events.on_audio.subscribe(audio, P.IMMEDIATE)
    client.events.on_bot_text.subscribe(texts, P.IMMEDIATE)
    client.events.on_audio_interrupted.subscribe(stops, P.IMMEDIATE)
    pcm = (1000).to_bytes(2, "little") * 480
    peer.send_raw(text_frame(form_b("bot-started-speaking")))
    peer.send_raw(binary(pipecat.encode_audio(pcm, 24000, 1)))
    peer.send_raw(binary(pipecat.encode_message(json.dumps(
        {"label": "rtvi-ai", "type": "bot-llm-text", "data": {"text": "as a Pipecat MessageFrame"}}))))
    peer.send_raw(binary(json.dumps({"label": "rtvi-ai", "type": "bot-llm-text",
                                     "data": {"text": "JSON in a binary frame"}}).encode()))
    [frame] = audio.wait(1)
    assert (frame.data, frame.sample_rate, frame.num_channels, frame.turn_id) == (pcm, 24000, 1, 1)
    assert [t.text for t in texts.wait(2)] == ["as a Pipecat MessageFrame", "JSON in a binary frame"]
    peer.send_raw(binary(pipecat.encode_interruption()))  # after the frame was delivered: it would drop it
    [stop] = stops.wait(1)
    assert stop.source == "server" and stop.turn_id == 1


def test_bad_binary_frames_are_reported_and_the_session_goes_on(
        peer_factory: Callable[..., Peer], clients: list[ConvaiClient]) -> None:
    peer = peer_factory()
    client = connected(peer, clients)
    errors: Recorder[SessionError] = Recorder()
    client.events.on_session_error.subscribe(errors, P.IMMEDIATE)
    audio: Recorder[AudioFrame] = Recorder()
    client.events.on_audio.subscribe(audio, P.IMMEDIATE)
    peer.send_raw(binary(b"\xff\xfe\x00garbage"))
    # Frame.audio with an odd number of bytes: not PCM16.
    peer.send_raw(binary(b"\x12\x0c\x1a\x03\x01\x02\x03\x20\x80\x7d\x28\x01\x30\x00"))
    got = errors.wait(2)
    assert {e.error_code.value for e in got} <= {"protocol.parse_failed", "protocol.message_invalid"}
    assert audio.events == []
    assert client.ask("still there?", timeout=5).text == "reply to still there?"
