"""The simulator's voice on the ``/chat`` WebSocket, from a raw client: its Pipecat codec (against the SDK's),
the utterance rules in audio time, TTS and synthesizer options, interruptions, bad binary input."""

from __future__ import annotations

import array
import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from convai_sync.transports import pipecat as client_codec
from simulator import Simulator
from simulator.carriers.websocket import pipecat
from simulator.core import speech
from tests.sim_helpers import JSON, close_all_sockets, connect_ws, etype, post_connect

pytestmark = pytest.mark.timeout(20)

REPLY = "Hello there, traveller."


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    close_all_sockets()


def tone(seconds: float, rate: int = 16000) -> bytes:
    return array.array("h", (int(8000 * math.sin(2 * math.pi * 300 * i / rate))
                             for i in range(int(seconds * rate)))).tobytes()


def open_session(sim: Simulator, **body: Any) -> websocket.WebSocket:
    info = post_connect(sim, **body).json()
    return connect_ws(info["room_url"])


def read(ws: websocket.WebSocket, until: str) -> tuple[list[JSON], list[Any]]:
    """Text frames (decoded) and binary payloads (decoded with the SDK's codec) until ``until``."""
    texts: list[JSON] = []
    binaries: list[Any] = []
    while True:
        opcode, data = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_BINARY:
            binaries.append(client_codec.decode(data))
            continue
        frame = json.loads(data)
        texts.append(frame)
        if etype(frame) == until:
            return texts, binaries


def send_text(ws: websocket.WebSocket, msg_type: str, **data: Any) -> None:
    ws.send(json.dumps({"type": msg_type, "data": data}))


# ---------------------------------------------------------------------------- codec


def test_the_simulators_codec_and_the_sdks_understand_each_other() -> None:
    mono, stereo = tone(0.02, 24000), tone(0.02, 16000) * 2
    assert client_codec.decode(pipecat.audio(mono, 24000)) == client_codec.AudioPayload(mono, 24000, 1)
    assert pipecat.parse(client_codec.encode_audio(stereo, 16000, 2)) == pipecat.Audio(stereo, 16000, 2)
    assert client_codec.decode(pipecat.interruption()) == client_codec.InterruptionPayload()
    assert pipecat.parse(client_codec.encode_message('{"type":"x"}')) == pipecat.Message('{"type":"x"}')
    assert pipecat.parse(client_codec.encode_interruption()) == pipecat.Other("interruption")
    for bad in (b"\xff\xff", b"\x12\x02\x28\x01"):  # not a Frame; Frame.audio without a sample rate
        with pytest.raises(ValueError):
            pipecat.parse(bad)


# ---------------------------------------------------------------------------- hearing


def test_utterances_follow_audio_time_not_wall_time() -> None:
    heard: list[tuple[str, float]] = []

    async def started() -> None:
        heard.append(("start", 0.0))

    async def utterance(pcm: bytes, rate: int, channels: int) -> None:
        heard.append(("utterance", len(pcm) / (2 * rate * channels)))

    async def run() -> None:
        detector = speech.UtteranceDetector(started, utterance)
        speech_pcm, silence = tone(0.8), bytes(2 * 320)
        for i in range(0, len(speech_pcm), 640):  # 20 ms chunks, fed at once (faster than real time)
            await detector.feed(speech_pcm[i:i + 640], 16000, 1)
        for _ in range(24):  # 0.48 s of silence: not yet the end
            await detector.feed(silence, 16000, 1)
        assert heard == [("start", 0.0)]
        await detector.feed(silence, 16000, 1)  # 0.5 s: the utterance ends, its trailing silence cut
        await detector.feed(tone(0.1), 16000, 1)
        await detector.feed(tone(0.1, 48000), 48000, 1)  # a new format ends the utterance in progress
        await detector.finish()

    asyncio.run(run())
    assert heard == [("start", 0.0), ("utterance", pytest.approx(0.8)), ("start", 0.0),
                     ("utterance", pytest.approx(0.1)), ("start", 0.0), ("utterance", pytest.approx(0.1))]


def test_the_users_voice_is_heard_with_a_custom_transcriber() -> None:
    got: list[tuple[int, int, int]] = []

    def transcriber(pcm: bytes, rate: int, channels: int) -> str:
        got.append((len(pcm), rate, channels))
        return "open the gate"

    with Simulator(transcriber=transcriber, responder=lambda text: f"ok: {text}") as sim:
        ws = open_session(sim)
        read(ws, "bot-ready")
        for i in range(0, 2 * 16000, 640):
            ws.send_binary(client_codec.encode_audio(tone(1.0)[i:i + 640], 16000, 1))
        ws.send_binary(client_codec.encode_audio(bytes(2 * 16000), 16000, 1))  # a second of silence at once
        texts, _ = read(ws, "bot-turn-completed")
        assert [etype(t) for t in texts[:3]] == ["user-started-speaking", "user-stopped-speaking", "user-transcription"]
        assert texts[2]["data"] == {"text": "open the gate", "final": True}
        assert any(t["type"] == "bot-llm-text" for t in texts)
        assert got == [(2 * 16000, 16000, 1)]
        assert sim.wait_for_session(5).received_audio_seconds == pytest.approx(2.0)


def test_bad_binary_input_is_ignored_and_the_session_goes_on() -> None:
    with Simulator() as sim:
        ws = open_session(sim)
        read(ws, "bot-ready")
        ws.send_binary(b"\xff\xfe garbage")
        ws.send_binary(client_codec.encode_audio(b"", 16000, 1)[:-2])  # truncated
        send_text(ws, "reset-idle-timer")
        texts, binaries = read(ws, "server-response")
        assert texts[-1]["event_type"] == "reset-idle-timer" and texts[-1]["status"] == "success"
        assert sim.wait_for_session(5).received_audio_seconds == 0.0


# ---------------------------------------------------------------------------- speaking


def test_voice_follows_tts_and_the_synthesizer() -> None:
    def synthesizer(text: str) -> tuple[bytes, int]:
        return tone(0.1, 16000), 16000

    with Simulator(websocket_audio=True, responder=lambda text: REPLY, synthesizer=synthesizer) as sim:
        ws = open_session(sim)
        read(ws, "bot-ready")
        send_text(ws, "user_text_message", text="hi")
        _texts, binaries = read(ws, "bot-turn-completed")
        assert [len(b.pcm) for b in binaries] == [640] * 5 and {b.sample_rate for b in binaries} == {16000}
        send_text(ws, "tts-toggle", enabled=False)
        send_text(ws, "user_text_message", text="again")
        texts, binaries = read(ws, "bot-turn-completed")
        assert binaries == [] and "bot-started-speaking" in [etype(t) for t in texts]


def test_a_failing_synthesizer_is_a_non_fatal_error() -> None:
    def synthesizer(text: str) -> tuple[bytes, int]:
        raise RuntimeError("no voice today")

    with Simulator(websocket_audio=True, responder=lambda text: REPLY, synthesizer=synthesizer) as sim:
        ws = open_session(sim)
        read(ws, "bot-ready")
        send_text(ws, "user_text_message", text="hi")
        texts, binaries = read(ws, "bot-turn-completed")
        errors = [t for t in texts if t["type"] == "error"]
        assert binaries == [] and errors and errors[0]["data"]["fatal"] is False
        assert "no voice today" in errors[0]["data"]["error"]


def test_interrupt_bot_stops_the_voice_with_an_interruption_frame() -> None:
    with Simulator(websocket_audio=True, responder=lambda text: "la " * 200) as sim:
        ws = open_session(sim)
        read(ws, "bot-ready")
        send_text(ws, "user_text_message", text="sing")
        while True:  # wait for the first audio
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_BINARY:
                break
        send_text(ws, "interrupt-bot")
        texts, binaries = read(ws, "bot-turn-completed")
        assert client_codec.InterruptionPayload() in binaries
        after = binaries[binaries.index(client_codec.InterruptionPayload()) + 1:]
        assert after == []  # nothing of the voice after the interruption
        assert texts[-1]["data"]["was_interrupted"] is True
        assert sum(len(b.pcm) for b in binaries if isinstance(b, client_codec.AudioPayload)) < 2 * 24000 * 12


def test_the_users_voice_during_a_reply_interrupts_it_and_quiet_audio_does_not() -> None:
    """Barge-in: speech (a chunk peaking at ``SPEECH_PEAK`` or more) while the character replies stops its voice
    and ends the turn interrupted; audio below that is not speech and changes nothing."""
    with Simulator(websocket_audio=True, responder=lambda text: "la " * 200) as sim:
        ws = open_session(sim)
        read(ws, "bot-ready")
        send_text(ws, "user_text_message", text="sing")
        read(ws, "bot-started-speaking")
        quiet = array.array("h", [speech.SPEECH_PEAK - 1, -(speech.SPEECH_PEAK - 1)] * 160).tobytes()
        ws.send_binary(client_codec.encode_audio(quiet, 16000, 1))
        ws.send_binary(client_codec.encode_audio(tone(0.02), 16000, 1))  # speech
        texts, binaries = read(ws, "bot-turn-completed")
        names = [etype(t) for t in texts]
        assert names.count("user-started-speaking") == 1  # the speech, not the quiet chunk
        assert names.index("user-started-speaking") < names.index("bot-stopped-speaking")
        assert texts[-1]["data"]["was_interrupted"] is True
        assert client_codec.InterruptionPayload() in binaries
        assert sum(len(b.pcm) for b in binaries if isinstance(b, client_codec.AudioPayload)) < 2 * 24000 * 12


def test_websocket_audio_must_be_a_bool() -> None:
    with pytest.raises(TypeError):
        Simulator(websocket_audio="yes")  # type: ignore[arg-type]
