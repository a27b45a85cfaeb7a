"""``ConvaiClient`` over LiveKit: the real ``livekit`` client against the simulator, over 127.0.0.1.

Every test goes through ``sim.client_config(transport="livekit")`` and the public client; the
transport is reached only through ``transport_factory`` where a test needs its audio hook or
LiveKit's scenario simulator. Waits are on events with deadlines; bounds are generous.
"""

from __future__ import annotations

import array
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from convai_sync import (
    AudioClip,
    AudioFrame,
    BotStartedSpeaking,
    ConvaiClient,
    ConvaiConfig,
    ConvaiError,
    Disconnected,
    DisconnectReason,
    ErrorCode,
    EventDeliveryPolicy,
    FinalUserTranscription,
    ParticipantJoined,
    ParticipantType,
    Reconnected,
    Reconnecting,
    ReconnectPolicy,
    RetryPolicy,
    ServerMessage,
    SessionError,
    SessionState,
)
from convai_sync.testing import Recorder
from convai_sync.transports import create
from convai_sync.transports.livekit import LiveKitTransport
from simulator import Simulator
from simulator.carriers.livekit import media
from simulator.core.character import default_reply
from tests.livekit_helpers import assert_only_routing_probes, assert_voice_arrived, native_threads, sent_voice_seconds

P = EventDeliveryPolicy
R = DisconnectReason
S = SessionState
E = ErrorCode
WAIT = 20.0
REPLY = "Hi! Nice to meet you."  # 0.42 s of the simulator's default voice
LOUD = 1000  # peak of a frame that carries the voice (the default voice's tone peaks near 8000)


def reply(text: str) -> str:
    return REPLY


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    # The default responder (no worker thread to outlive a test); its replies name the turn, so a
    # resumed conversation is visible: "This is turn N of our conversation".
    with Simulator() as server:
        yield server


def config(sim: Simulator, **overrides: Any) -> ConvaiConfig:
    values: dict[str, Any] = {
        "transport": "livekit", "connection_timeout": 15.0,
        # reconnect at once: these tests are about where a drop goes, not the backoff schedule
        "reconnect_policy": ReconnectPolicy(delays=(0.0,), server_shutdown_delay=0.0),
    }
    values.update(overrides)
    return sim.client_config(**values)


class Made:
    """A transport_factory that remembers the transports it built."""

    def __init__(self, cfg: ConvaiConfig) -> None:
        self.cfg = cfg
        self.transports: list[LiveKitTransport] = []

    def __call__(self) -> LiveKitTransport:
        transport = create(self.cfg)
        assert isinstance(transport, LiveKitTransport)
        self.transports.append(transport)
        return transport


def peak(pcm: bytes) -> int:
    samples = array.array("h")
    samples.frombytes(pcm)
    return max(max(samples), -min(samples)) if samples else 0


# ============================================================================ talking


@pytest.mark.timeout(60)
def test_connect_ask_stream_and_acknowledged_sends(sim: Simulator) -> None:
    joined: Recorder[ParticipantJoined] = Recorder()
    with ConvaiClient(config(sim)) as client:
        client.events.on_participant_joined.subscribe(joined, P.IMMEDIATE)
        started = time.monotonic()
        client.connect(timeout=WAIT)
        assert time.monotonic() - started < WAIT
        assert client.state is S.CONNECTED and client.is_bot_ready
        (session,) = [s for s in sim.sessions if s.session_id == client.session_id]
        assert session.transport == "livekit"
        assert client.ask("Hello there", timeout=WAIT).text == default_reply("Hello there", 1)
        chunks = list(client.stream("Tell me more", timeout=WAIT))
        assert len(chunks) > 1 and "".join(c.text for c in chunks) == default_reply("Tell me more", 2)
        ack = client.reset_idle_timer(wait=True, timeout=WAIT)
        assert (ack.event_type, ack.status) == ("reset-idle-timer", "success")
        keys = client.update_template_keys({"name": "Ada"}, wait=True, timeout=WAIT)
        assert (keys.event_type, keys.status) == ("update-template-keys", "success")
        people = {(p.participant_type, p.identity, p.is_local) for p in joined.wait(2)}
        assert (ParticipantType.CHARACTER, sim.character_id, False) in people
        assert any(kind is ParticipantType.LOCAL_PLAYER and local for kind, _identity, local in people)
        assert client.diagnostics()["transport"] == "livekit"
        received = sim.wait_for_received(client.session_id or "", "update-template-keys")
        assert received["data"] == {"template_keys": {"name": "Ada"}}
    sim.wait_for_slots(0)
    assert_only_routing_probes()


@pytest.mark.timeout(60)
def test_a_message_too_large_for_the_data_channel_is_reported(sim: Simulator) -> None:
    errors: Recorder[SessionError] = Recorder()
    with ConvaiClient(config(sim)) as client:
        client.events.on_session_error.subscribe(errors, P.IMMEDIATE)
        client.connect(timeout=WAIT)
        client.update_dynamic_info("x" * 100_000)  # over the simulator's 64 kB SCTP message size
        (error,) = errors.wait(1, WAIT)
        assert error.error_code is E.PROTOCOL_MESSAGE_INVALID and "not published" in error.message
        assert client.state is S.CONNECTED  # the session goes on
        assert client.reset_idle_timer(wait=True, timeout=WAIT).status == "success"


@pytest.mark.timeout(90)
def test_every_disconnect_reason_reaches_the_session(sim: Simulator) -> None:
    reconnecting: Recorder[Reconnecting] = Recorder()
    reconnected: Recorder[Reconnected] = Recorder()
    disconnected: Recorder[Disconnected] = Recorder()
    errors: Recorder[SessionError] = Recorder()
    with ConvaiClient(config(sim)) as client:
        client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
        client.events.on_reconnected.subscribe(reconnected, P.IMMEDIATE)
        client.events.on_disconnected.subscribe(disconnected, P.IMMEDIATE)
        client.events.on_session_error.subscribe(errors, P.IMMEDIATE)
        client.connect(timeout=WAIT)
        threads = native_threads()
        for reason in R:
            if client.state is not S.CONNECTED:
                client.connect(timeout=WAIT)
            session_id, csid = client.session_id, client.character_session_id
            marks = len(reconnecting), len(reconnected), len(disconnected), len(errors)
            assert sim.inject(reason, session_id=session_id) == 1
            if reason.should_retry:
                reconnected.wait(marks[1] + 1, WAIT)
                first = reconnecting.events[marks[0]]
                assert first.reason is reason, reason.name  # a leave: the session's own reconnect, at once
                assert client.session_id != session_id and client.character_session_id == csid, reason.name
                assert client.last_disconnect_reason is reason
            else:
                gone = disconnected.wait(marks[2] + 1, WAIT)[-1]
                assert gone.reason is reason and client.state is S.DISCONNECTED, reason.name
                assert len(reconnecting) == marks[0], reason.name  # not retried
                new_errors = [e.error_code for e in errors.events[marks[3]:]]
                assert new_errors == ([E.SERVER_FATAL_ERROR] if reason is R.AGENT_ERROR else []), reason.name
        if client.state is not S.CONNECTED:
            client.connect(timeout=WAIT)
        # 17 rooms later: one loop thread (the current room's), and livekit's native pool has not grown
        loops = [t.name for t in threading.enumerate() if t.name.startswith("convai-livekit-")]
        assert len(loops) == 1, loops
        assert native_threads() - threads <= 3, (threads, native_threads())
    sim.wait_for_slots(0)


@pytest.mark.timeout(60)
def test_signal_faults_fall_through_to_a_new_connect(sim: Simulator) -> None:
    # The simulator refuses LiveKit resumes: LiveKit's recovery (attempt 1) fails at once and the
    # session's attempt 2 makes a new POST /connect that resumes the conversation.
    expected = {"transport.signal_disconnected": R.STATE_MISMATCH, "transport.livekit_error": R.UNKNOWN_REASON}
    reconnecting: Recorder[Reconnecting] = Recorder()
    reconnected: Recorder[Reconnected] = Recorder()
    errors: Recorder[SessionError] = Recorder()
    with ConvaiClient(config(sim)) as client:
        client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
        client.events.on_reconnected.subscribe(reconnected, P.IMMEDIATE)
        client.events.on_session_error.subscribe(errors, P.IMMEDIATE)
        client.connect(timeout=WAIT)
        assert client.ask("first", timeout=WAIT).text == default_reply("first", 1)
        for fault, reason in expected.items():
            session_id, csid = client.session_id, client.character_session_id
            marks = len(reconnecting), len(reconnected), len(errors)
            assert sim.inject(fault, session_id=session_id) == 1
            done = reconnected.wait(marks[1] + 1, WAIT)[-1]
            attempts = [(e.attempt, e.reason) for e in reconnecting.events[marks[0]:]]
            assert attempts == [(1, R.UNKNOWN_REASON), (2, reason)], fault
            assert [e.error_code for e in errors.events[marks[2]:]] == [E.TRANSPORT_SIGNAL_DISCONNECTED], fault
            assert done.attempts == 2 and client.session_id != session_id, fault
            assert client.character_session_id == csid and client.last_disconnect_reason is reason, fault
        # the third session of one conversation: its history came along
        assert client.ask("still there?", timeout=WAIT).text == default_reply("still there?", 2)
        assert client.diagnostics()["transport_resumes"] == 2
    sim.wait_for_slots(0)


@pytest.mark.timeout(60)
def test_an_accepted_recovery_keeps_the_session(sim: Simulator) -> None:
    # LiveKit's simulated signal loss: the simulator answers the resume with leave{RECONNECT}, and the
    # client rejoins the same room (a full reconnect), so the Convai session itself goes on.
    cfg = config(sim)
    made = Made(cfg)
    reconnecting: Recorder[Reconnecting] = Recorder()
    reconnected: Recorder[Reconnected] = Recorder()
    with ConvaiClient(cfg, transport_factory=made) as client:
        client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
        client.events.on_reconnected.subscribe(reconnected, P.IMMEDIATE)
        client.connect(timeout=WAIT)
        session_id = client.session_id
        made.transports[-1].simulate_scenario("SIGNAL_RECONNECT", timeout=WAIT)
        (done,) = reconnected.wait(1, WAIT)
        assert [e.attempt for e in reconnecting.events] == [1] and done.attempts == 1
        assert client.session_id == session_id and len(made.transports) == 1  # no new /connect
        assert client.ask("are you still there?", timeout=WAIT).text == default_reply("are you still there?", 1)
    sim.wait_for_slots(0)


# Withheld ICE / a closed peer connection: tests/test_livekit_ice_faults.py (one ~15 s window for all).


@pytest.mark.timeout(60)
def test_join_refusals_map_to_connection_codes() -> None:
    # PROPOSED mappings (convai_sync.transports.livekit_map): Convai documents these as fallbacks.
    expected = {401: (E.CONNECTION_INVALID_TOKEN, 1), 403: (E.CONNECTION_AUTH_FAILED, 1),
                404: (E.CONNECTION_NOT_FOUND, 1), 429: (E.CONNECTION_RATE_LIMITED, 2)}  # 429 is retried
    for status, (code, attempts) in expected.items():
        with Simulator(responder=reply) as sim:
            sim.refuse_livekit_join(status, times=100)  # the livekit client retries its signal itself
            cfg = config(sim, retry_policy=RetryPolicy(max_attempts=2, delays=(0.0, 0.0)))
            with ConvaiClient(cfg) as client:
                with pytest.raises(ConvaiError) as failed:
                    client.connect(timeout=WAIT)
                assert failed.value.error_code is code, status
                assert failed.value.error.http_status_code == status, status
                assert client.diagnostics()["connect_attempts"] == attempts, status
            sim.wait_for_slots(0)  # each failed attempt released its session (POST /disconnect)


# ============================================================================ audio


@pytest.mark.timeout(60)
@pytest.mark.parametrize("rate", [None, 16000], ids=["default", "16k"])
def test_the_characters_voice_arrives_on_on_audio(sim: Simulator, rate: int | None) -> None:
    frames: list[tuple[AudioFrame, int]] = []
    cond = threading.Condition()
    expected = media.voice_seconds(default_reply("Hello there", 1))

    def heard(frame: AudioFrame) -> None:
        with cond:
            frames.append((frame, peak(frame.data)))
            cond.notify_all()

    with ConvaiClient(config(sim, audio_sample_rate=rate)) as client:
        client.events.on_audio.subscribe(heard, P.IMMEDIATE)
        client.connect(timeout=WAIT)
        # ask() returns once the reply's voice has played out (the track's tail included); the SDK drops
        # the digital silence libwebrtc goes on producing after it.
        reply = client.ask("Hello there", timeout=WAIT)
        assert reply.text == default_reply("Hello there", 1)
        assert reply.audio is not None
        voiced = reply.audio.duration
        # What the test controls: the frames the simulator sent, exactly (a doubled or lost chunk shows here).
        (session,) = [s for s in sim.sessions if s.session_id == client.session_id]
        assert session.sent_voice_seconds == pytest.approx(sent_voice_seconds(reply.text), abs=1e-9)
        with cond:  # the last frames' IMMEDIATE deliveries may still be on their way
            assert cond.wait_for(lambda: sum(f.duration for f, _p in frames if f.turn_id == 1) >= voiced - 1e-9,
                                 WAIT)
            snapshot = [(f, p) for f, p in frames if f.turn_id == 1]
    assert reply.audio.pcm == b"".join(f.data for f, _p in snapshot)
    assert reply.audio.sample_rate == (rate or 48_000)
    assert {(f.sample_rate, f.num_channels) for f, _p in snapshot} == {(rate or 48_000, 1)}
    assert all(f.samples_per_channel == (rate or 48_000) // 50 for f, _p in snapshot)  # 20 ms frames
    stamps = [f.timestamp for f, _p in snapshot]
    assert stamps == sorted(stamps)  # delivered in order
    assert_voice_arrived(loud_of(snapshot), expected)


def loud_of(frames: list[tuple[AudioFrame, int]]) -> float:
    return sum(f.duration for f, p in frames if p >= LOUD)


@pytest.mark.timeout(60)
def test_a_host_that_stops_pumping_loses_only_the_oldest_voice(sim: Simulator) -> None:
    """A MAIN_THREAD host that does not pump while the voice streams loses only audio frames (the
    oldest, counted); every other event of the turn is still delivered, in order, at the next pump.

    Measured against what the test controls, not the reply's clip: under load NetEq stretches the voice,
    so frames go on arriving after the turn completes (and during ``pump()``). An IMMEDIATE recorder
    subscribed after the MAIN_THREAD one sees every frame the hub published, in publish order, each one
    already queued for the host; the host's frames must be the same objects, in that order, and every
    frame it missed before its last one must be counted as dropped."""
    bound = 5
    with ConvaiClient(config(sim, audio_queue_frames=bound)) as client:
        heard: list[object] = []
        client.events.on_audio.subscribe(heard.append, P.MAIN_THREAD)
        client.events.on_message.subscribe(heard.append, P.MAIN_THREAD)
        published: list[AudioFrame] = []  # list.append is atomic: read from here while it grows
        client.events.on_audio.subscribe(published.append, P.IMMEDIATE)
        client.connect(timeout=WAIT)
        reply = client.ask("Hello there", timeout=WAIT)  # completes without any pump()
        assert reply.audio is not None and reply.audio.duration > bound * 0.02
        dropped_before = client.diagnostics()["events"]["audio_dropped"]["main_thread"]
        queued_before = len(published)  # all of these were in the host's queue (or dropped) before pump()
        client.pump()
    # closed: no frame is published or dropped any more, so the counter is final
    dropped = client.diagnostics()["events"]["audio_dropped"]["main_thread"]
    frames = [e for e in heard if isinstance(e, AudioFrame)]
    others = [e for e in heard if not isinstance(e, AudioFrame)]
    assert frames and dropped_before > 0
    index = {id(f): i for i, f in enumerate(published)}
    kept = [index[id(f)] for f in frames]  # KeyError: a frame the hub never published
    assert kept == sorted(set(kept))  # each once, in publish order
    # Only the oldest were lost: the first kept frame comes after every drop counted before pump() (the
    # queue held the newest frames then), and of the frames published up to the last kept one, every
    # frame not kept was dropped and counted (a drop during pump() may only take the oldest queued).
    assert kept[0] >= dropped_before
    assert kept[-1] + 1 - len(kept) <= dropped
    # Bounded: of the frames queued before pump(), the host got at most the queue's bound.
    assert sum(1 for i in kept if i < queued_before) <= bound
    texts = "".join(getattr(e, "text", "") for e in others if type(e).__name__ == "BotText")
    assert texts == reply.text
    assert type(others[-1]).__name__ == "BotTurnCompleted"


@pytest.mark.timeout(60)
def test_receive_audio_false_delivers_no_voice(sim: Simulator) -> None:
    frames: Recorder[AudioFrame] = Recorder()
    started: Recorder[ServerMessage] = Recorder(lambda e: isinstance(e, BotStartedSpeaking))
    with ConvaiClient(config(sim, receive_audio=False)) as client:
        client.events.on_audio.subscribe(frames, P.IMMEDIATE)
        client.events.on_message.subscribe(started, P.IMMEDIATE)
        client.connect(timeout=WAIT)
        assert client.ask("Hi", timeout=WAIT).text == default_reply("Hi", 1)  # the voice was sent meanwhile
        assert len(started) == 1
        assert client.reset_idle_timer(wait=True, timeout=WAIT).status == "success"
    assert len(frames) == 0


def tone(seconds: float, rate: int, hz: float = 300.0, amplitude: int = 8000) -> bytes:
    samples = array.array("h", (int(amplitude * math.sin(2 * math.pi * hz * i / rate))
                                for i in range(int(seconds * rate))))
    return samples.tobytes()


@pytest.mark.timeout(60)
def test_send_audio_is_heard_counted_and_transcribed(tmp_path: Path) -> None:
    heard: list[tuple[int, int, float]] = []

    def transcriber(pcm: bytes, rate: int, channels: int) -> str:
        heard.append((rate, channels, len(pcm) / (2 * rate * channels)))
        return "what a lovely tone"

    wav = tmp_path / "hello.wav"
    AudioClip(tone(1.0, 16000) + bytes(2 * 16000), 16000).write_wav(wav)  # 1 s of tone, 1 s of silence
    clip = AudioClip.read_wav(wav)
    with Simulator(responder=reply, transcriber=transcriber) as sim:
        cfg = config(sim)
        made = Made(cfg)
        finals: Recorder[ServerMessage] = Recorder(lambda e: isinstance(e, FinalUserTranscription))
        with ConvaiClient(cfg, transport_factory=made) as client:
            client.events.on_message.subscribe(finals, P.IMMEDIATE)
            client.connect(timeout=WAIT)
            transport = made.transports[-1]
            started = time.monotonic()
            transport.send_audio(clip.pcm, clip.sample_rate, clip.num_channels, timeout=WAIT)
            # ~1 s of it is buffered by the source; the rest is paced at real time
            assert 0.5 < time.monotonic() - started < WAIT
            (final,) = finals.wait(1, WAIT)
            assert isinstance(final, FinalUserTranscription)
            assert final.text == "what a lovely tone"
            # Once 1.5 s more silence is accepted, at most the source's 1 s buffer (all of it that
            # silence) is still unsent, so the whole WAV has gone out; allow 0.1 s in flight.
            transport.send_audio(bytes(int(2 * 16000 * 1.5)), 16000, 1, timeout=WAIT)
            (session,) = [s for s in sim.sessions if s.session_id == client.session_id]
            assert session.received_audio_seconds >= clip.duration - 0.1  # every decoded frame counts
            # Back-pressure, not unbounded buffering: 5 s of audio cannot be accepted within 0.5 s.
            started = time.monotonic()
            with pytest.raises(ConnectionError, match="accepted within"):
                transport.send_audio(tone(5.0, 16000), 16000, 1, timeout=0.5)
            assert time.monotonic() - started < 3.0
    (rate, channels, seconds), = heard
    assert (rate, channels) == (48_000, 1)  # LiveKit carries Opus at 48 kHz; the simulator hears that
    assert abs(seconds - 1.0) <= 0.15  # the utterance without its trailing silence


# ============================================================================ cycles


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.timeout(120)
def test_fifty_connect_close_cycles_leak_nothing(sim: Simulator) -> None:
    cfg = config(sim)

    def cycle() -> None:
        with ConvaiClient(cfg) as client:
            client.connect(timeout=WAIT)
            assert client.reset_idle_timer(wait=True, timeout=WAIT).status == "success"

    cycle()
    sim.wait_for_slots(0)
    threads, fds = native_threads(), _open_fds()
    for _ in range(49):
        cycle()
        assert not [t.name for t in threading.enumerate() if t.name.startswith("convai-")]
    sim.wait_for_slots(0)
    # livekit keeps a fixed pool of native threads after its first room; it must not grow per room
    assert native_threads() - threads <= 3, (threads, native_threads())
    assert _open_fds() - fds <= 5, (fds, _open_fds())
    assert sim.livekit_stats()["connections"] == 0
