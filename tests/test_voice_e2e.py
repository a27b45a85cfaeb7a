"""The voice end to end over the WebSocket: the real client against the simulator on 127.0.0.1
(binary Pipecat frames both ways; ``Simulator(websocket_audio=True)``)."""

from __future__ import annotations

import array
import json
import math
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

from convai_sync import (
    AudioFrame,
    AudioInterrupted,
    BotText,
    ConvaiClient,
    EventDeliveryPolicy,
    ServerMessage,
    UserTranscription,
)
from convai_sync.testing import Recorder
from convai_sync.transports import pipecat as client_codec
from simulator import Simulator
from simulator.core.speech import voice_seconds

pytestmark = pytest.mark.timeout(30)

P = EventDeliveryPolicy
WAIT = 10.0
REPLY = "Hello from the simulated character."  # 35 characters: 0.7 s of voice, sent in 0.35 s


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(websocket_audio=True, responder=lambda text: REPLY) as server:
        yield server


@pytest.fixture
def client(sim: Simulator) -> Iterator[ConvaiClient]:
    with ConvaiClient(sim.client_config(transport="websocket")) as c:
        c.connect(timeout=WAIT)
        yield c


def tone(seconds: float, rate: int = 16000, hz: float = 300.0) -> bytes:
    return array.array("h", (int(8000 * math.sin(2 * math.pi * hz * i / rate))
                             for i in range(int(seconds * rate)))).tobytes()


def test_the_voice_arrives_in_order_in_20_ms_frames_of_the_synthesizers_length(client: ConvaiClient) -> None:
    seen: Recorder[Any] = Recorder()
    client.events.on_audio.subscribe(seen, P.IMMEDIATE)
    client.events.on_message.subscribe(seen, P.IMMEDIATE)
    stopped: Recorder[ServerMessage] = Recorder(lambda e: e.type == "bot-stopped-speaking")
    client.events.on_message.subscribe(stopped, P.IMMEDIATE)
    reply = client.ask("hi", timeout=WAIT)
    assert reply.text == REPLY
    # ask() wakes on the reader thread; the session thread may still be publishing the turn's
    # last events to IMMEDIATE handlers when it returns.
    stopped.wait(1)
    events = list(seen.events)
    names = ["audio" if isinstance(e, AudioFrame) else e.type for e in events]
    first, last = names.index("audio"), len(names) - 1 - names[::-1].index("audio")
    assert names.index("bot-started-speaking") < first and last < names.index("bot-stopped-speaking")
    assert set(names[first:last + 1]) == {"audio"}  # nothing else interleaved inside the voice
    frames = [e for e in events if isinstance(e, AudioFrame)]
    assert {(f.sample_rate, f.num_channels, f.turn_id) for f in frames} == {(24000, 1, 1)}
    assert all(f.samples_per_channel == 480 for f in frames[:-1])  # 20 ms each (the last may be shorter)
    assert sum(f.samples_per_channel for f in frames) == round(voice_seconds(REPLY) * 24000)
    stamps = [f.timestamp for f in frames]
    assert stamps == sorted(stamps)
    assert reply.audio is not None and reply.audio.pcm == b"".join(f.data for f in frames)


def test_ask_audio_write_wav_is_a_playable_wav_of_the_right_length(client: ConvaiClient, tmp_path: Path) -> None:
    path = tmp_path / "hi.wav"
    client.ask("hi", timeout=WAIT).audio.write_wav(path)  # type: ignore[union-attr]
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
        assert wav.getnframes() / wav.getframerate() == pytest.approx(voice_seconds(REPLY), abs=1 / 24000)
        assert wav.readframes(wav.getnframes())[:2] == b"\x00\x00"  # the tone starts at phase 0


def test_the_users_voice_is_counted_heard_and_answered(sim: Simulator, client: ConvaiClient) -> None:
    heard: Recorder[ServerMessage] = Recorder()
    client.events.on_message.subscribe(heard, P.IMMEDIATE)
    finals: Recorder[ServerMessage] = Recorder(lambda e: isinstance(e, UserTranscription) and e.final)
    client.events.on_message.subscribe(finals, P.IMMEDIATE)
    texts: Recorder[BotText] = Recorder()
    client.events.on_bot_text.subscribe(texts, P.IMMEDIATE)
    voice = tone(1.0) + bytes(2 * int(0.7 * 16000))  # a second of "speech", then enough silence to end it
    client.send_audio(voice, 16000)
    [transcription] = finals.wait(1)
    assert isinstance(transcription, UserTranscription)
    assert transcription.text == "[audio 1.00 s]"  # the default transcriber; trailing silence cut
    types = [e.type for e in heard.wait(3)]
    assert types[:3] == ["user-started-speaking", "user-stopped-speaking", "user-transcription"]
    session = sim.wait_for_session(WAIT)
    assert session.received_audio_seconds == pytest.approx(1.7, abs=0.001)
    assert client.diagnostics()["audio"]["seconds_sent"] == pytest.approx(1.7, abs=0.001)
    texts.wait(1)


def test_interrupt_stops_the_voice_within_a_frame() -> None:
    long_reply = "la " * 200  # 12 s of voice
    with Simulator(websocket_audio=True, responder=lambda text: long_reply) as server, \
            ConvaiClient(server.client_config(transport="websocket")) as client:
        client.connect(timeout=WAIT)
        after: list[AudioFrame] = []
        interrupted = threading.Event()
        started: Recorder[AudioFrame] = Recorder()
        stops: Recorder[AudioInterrupted] = Recorder()

        def on_audio(frame: AudioFrame) -> None:
            if interrupted.is_set():
                after.append(frame)
            else:
                started(frame)

        client.events.on_audio.subscribe(on_audio, P.IMMEDIATE)
        client.events.on_audio_interrupted.subscribe(stops, P.IMMEDIATE)
        done: Recorder[ServerMessage] = Recorder(lambda e: e.type == "bot-turn-completed")
        client.events.on_message.subscribe(done, P.IMMEDIATE)
        client.send_text("tell me everything")
        started.wait(10)
        began = time.monotonic()
        interrupted.set()
        client.interrupt()
        [completed] = done.wait(1)
        assert completed.data.get("was_interrupted") is True
        assert time.monotonic() - began < WAIT  # the server stopped long before the 12 s of voice ended
        assert stops.wait(1)[0].source == "client"
        assert [f for f in after if f.turn_id == 1] == []  # not one later frame of the turn was delivered
        assert client.diagnostics()["audio"]["interruptions"] >= 1


def test_websocket_audio_is_off_by_default_and_text_clients_see_only_text() -> None:
    with Simulator(responder=lambda text: REPLY) as server, \
            ConvaiClient(server.client_config(transport="websocket")) as client:
        client.connect(timeout=WAIT)
        reply = client.ask("hi", timeout=WAIT)
        assert reply.text == REPLY and reply.audio is None
        assert client.diagnostics()["audio"]["frames_received"] == 0


def test_a_raw_pipecat_client_gets_binary_audio_and_may_send_rtvi_as_message_frames(sim: Simulator) -> None:
    info = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id, "transport": "websocket"},
                         headers={"x-api-key": sim.api_key}, timeout=WAIT).json()
    ws = websocket.create_connection(info["room_url"], timeout=WAIT)
    try:
        message = {"type": "user_text_message", "data": {"text": "hi"}}
        ws.send_binary(client_codec.encode_message(json.dumps(message)))  # as Pipecat's web client sends it
        audio = bytearray()
        kinds: list[str] = []
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_BINARY:
                payload = client_codec.decode(data)
                assert isinstance(payload, client_codec.AudioPayload) and payload.sample_rate == 24000
                audio += payload.pcm
                continue
            frame = json.loads(data)
            kind = frame["data"]["type"] if frame["type"] == "server-message" else frame["type"]
            kinds.append(kind)
            if kind == "bot-turn-completed":
                break
        assert "server-response" in kinds and "bot-started-speaking" in kinds
        assert len(audio) == 2 * round(voice_seconds(REPLY) * 24000)
    finally:
        ws.close()
