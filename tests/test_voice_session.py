"""The character's voice in a session (memory transport, fake clock): turn tagging, BotReply.audio and
its bounded wait, barge-in, audio-data messages, the session's audio lane, send_audio's errors."""

from __future__ import annotations

import base64
import io
import time
import wave
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from convai_sync import (
    AudioFrame,
    AudioInterrupted,
    BotStartedSpeaking,
    BotStoppedSpeaking,
    BotText,
    ConvaiTimeoutError,
    EventDeliveryPolicy,
    InvalidStateError,
    SendQueueFullError,
    ServerMessage,
)
from convai_sync.testing import Recorder
from tests.helpers_memory import WAIT, Harness, SteppingClock, assert_no_convai_threads, make_config, run_async

pytestmark = pytest.mark.timeout(15)

P = EventDeliveryPolicy


@pytest.fixture(autouse=True)
def _no_convai_threads_survive() -> Iterator[None]:
    yield
    assert_no_convai_threads()


#: ``make(*, clock=None, **config overrides)``: a Harness closed after the test.
Make = Callable[..., Harness]


@pytest.fixture
def make() -> Iterator[Make]:
    made: list[Harness] = []

    def build(*, clock: Any = None, **overrides: Any) -> Harness:
        h = Harness(make_config(**overrides), clock=clock)
        made.append(h)
        return h

    yield build
    for h in made:
        h.close()


def rtvi(msg_type: str, **data: Any) -> dict[str, Any]:
    return {"label": "rtvi-ai", "type": msg_type, "data": data}


def form_b(inner: str, **data: Any) -> dict[str, Any]:
    return {"label": "rtvi-ai", "type": "server-message", "data": {"type": inner, **data}}


def voice(i: int, samples: int = 160) -> bytes:
    """Non-silent PCM16 mono whose samples all equal ``i + 1`` (so frames can be told apart)."""
    return (i + 1).to_bytes(2, "little", signed=True) * samples


def marker(f: AudioFrame) -> int:
    return int.from_bytes(f.data[:2], "little", signed=True) - 1


SILENCE = bytes(320)


def speak(h: Harness, frames: range, *, turn_completed: bool = True, message_id: str | None = None) -> None:
    """One spoken reply as the server streams it, audio in-band between the speaking messages."""
    if message_id is not None:
        h.server.push(form_b("final-user-transcription", text="q", message_id=message_id))
    h.server.push(rtvi("bot-llm-started"))
    h.server.push(rtvi("bot-llm-text", text="Hello there."))
    h.server.push(rtvi("bot-llm-stopped"))
    h.server.push(form_b("bot-started-speaking"))
    for i in frames:
        h.server.push_audio(voice(i))
    h.server.push(form_b("bot-stopped-speaking"))
    if turn_completed:
        h.server.push(form_b("bot-turn-completed", was_interrupted=False))


def ask_async(h: Harness, timeout: float = WAIT) -> tuple[Any, str]:
    asking = run_async(lambda: h.client.ask("hello?", timeout=timeout), "test-ask")
    mid = h.server.wait_sent("user_text_message")["data"]["message_id"]
    return asking, mid


# ---------------------------------------------------------------------------- turn tagging


def test_frames_carry_their_turn_and_silence_between_turns_is_dropped(make: Make) -> None:
    h = make()
    got: Recorder[Any] = Recorder()
    h.client.events.on_audio.subscribe(got, P.IMMEDIATE)
    h.connect()
    speak(h, range(0, 3))
    h.server.push_audio(SILENCE)  # digital silence between turns: dropped
    h.server.push_audio(voice(50))  # speech outside any turn: delivered untagged
    speak(h, range(3, 5))
    frames = got.wait(6)
    assert [(marker(f), f.turn_id) for f in frames] == [(0, 1), (1, 1), (2, 1), (50, None), (3, 2), (4, 2)]
    assert all(f.sample_rate == 16000 and f.num_channels == 1 and f.samples_per_channel == 160 for f in frames)
    assert frames[0].duration == pytest.approx(0.01)
    audio = h.client.diagnostics()["audio"]
    assert audio["turns"] == 2 and audio["dropped_silent"] == 1 and audio["frames_published"] == 6


def test_a_turns_leading_silence_is_dropped_and_its_pauses_kept(make: Make) -> None:
    h = make()
    got: Recorder[AudioFrame] = Recorder()
    h.client.events.on_audio.subscribe(got, P.IMMEDIATE)
    h.connect()
    h.server.push(form_b("bot-started-speaking"))
    h.server.push_audio(SILENCE)  # the voice lags its message: silence first
    h.server.push_audio(voice(0))
    h.server.push_audio(SILENCE)  # a pause inside the reply is part of it
    h.server.push_audio(voice(1))
    h.server.push(form_b("bot-stopped-speaking"))
    frames = got.wait(3)
    assert [f.data for f in frames] == [voice(0), SILENCE, voice(1)] and {f.turn_id for f in frames} == {1}


def test_audio_keeps_its_place_among_the_other_events(make: Make) -> None:
    h = make()
    order: Recorder[Any] = Recorder()
    h.client.events.on_audio.subscribe(order, P.BACKGROUND)
    h.client.events.on_message.subscribe(order, P.BACKGROUND)
    h.connect()
    speak(h, range(2))
    seen = order.wait(8)
    names = [f"audio{marker(e)}" if isinstance(e, AudioFrame) else e.type for e in seen]
    assert names == ["bot-llm-started", "bot-llm-text", "bot-llm-stopped", "bot-started-speaking", "audio0",
                     "audio1", "bot-stopped-speaking", "bot-turn-completed"]


# ---------------------------------------------------------------------------- BotReply.audio


def test_ask_returns_the_voice_of_its_reply_as_a_playable_wav(make: Make, tmp_path: Any) -> None:
    h = make()
    h.connect()
    asking, mid = ask_async(h)
    speak(h, range(10), message_id=mid)
    reply = asking.result(WAIT)
    assert reply.text == "Hello there."
    assert reply.audio is not None
    assert reply.audio.pcm == b"".join(voice(i) for i in range(10))
    assert reply.audio.duration == pytest.approx(0.1)
    path = tmp_path / "hi.wav"
    reply.audio.write_wav(path)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()) == (1, 2, 16000, 1600)


def test_ask_without_voice_returns_at_turn_completed(make: Make) -> None:
    h = make(tts_enabled=False)
    h.connect()
    asking, mid = ask_async(h)
    speak(h, range(0), message_id=mid)
    assert asking.result(WAIT).audio is None


def test_ask_with_tts_on_but_no_audio_on_an_in_band_transport(make: Make) -> None:
    h = make()
    h.connect()
    asking, mid = ask_async(h)
    speak(h, range(0), message_id=mid)  # speaking messages, no frames (e.g. a server that sends none)
    assert asking.result(WAIT).audio is None


def test_receive_audio_off_ignores_the_voice(make: Make) -> None:
    h = make(receive_audio=False)
    got: Recorder[AudioFrame] = Recorder()
    h.client.events.on_audio.subscribe(got, P.IMMEDIATE)
    h.connect()
    asking, mid = ask_async(h)
    speak(h, range(5), message_id=mid)
    assert asking.result(WAIT).audio is None
    assert len(got) == 0 and h.client.diagnostics()["audio"]["frames_received"] == 0


def test_lagging_audio_joins_the_reply_until_silence_ends_the_tail(make: Make) -> None:
    clock = SteppingClock()
    h = make(clock=clock)
    h.server.audio_lag = 0.5  # an out-of-band audio track (LiveKit)
    got: Recorder[AudioFrame] = Recorder()
    h.client.events.on_audio.subscribe(got, P.IMMEDIATE)
    h.connect()
    asking, mid = ask_async(h)
    speak(h, range(3), message_id=mid)  # bot-turn-completed arrives before the last audio
    h.server.push_audio(voice(3))  # the jitter buffer plays the rest after the messages
    h.server.push_audio(voice(4))
    assert not asking.done()
    h.server.push_audio(SILENCE)  # played out: the tail ends, the ask returns
    reply = asking.result(WAIT)
    assert reply.audio is not None and reply.audio.pcm == b"".join(voice(i) for i in range(5))
    assert [f.turn_id for f in got.wait(5)] == [1] * 5


def test_the_tail_ends_after_the_transports_audio_lag(make: Make) -> None:
    clock = SteppingClock()
    h = make(clock=clock)
    h.server.audio_lag = 0.5
    h.connect()
    asking, mid = ask_async(h)
    speak(h, range(2), message_id=mid)
    clock.step(0.5)  # no silence comes (a silent track sends nothing): the tail timer ends it
    reply = asking.result(WAIT)
    assert reply.audio is not None and reply.audio.duration == pytest.approx(0.02)


def test_ask_never_waits_past_its_deadline_for_the_voice(make: Make) -> None:
    clock = SteppingClock()  # never advanced: the tail would never end on its own
    h = make(clock=clock)
    h.server.audio_lag = 0.5
    h.connect()
    started = time.monotonic()
    asking, mid = ask_async(h, timeout=0.5)
    speak(h, range(2), message_id=mid)
    with pytest.raises(ConvaiTimeoutError, match="voice"):
        asking.result(WAIT)
    assert time.monotonic() - started < WAIT


# ---------------------------------------------------------------------------- barge-in


def test_interrupt_drops_queued_voice_at_once_and_later_frames_of_the_turn(make: Make) -> None:
    h = make(delivery_policy=P.MAIN_THREAD)
    frames: list[AudioFrame] = []
    stops: list[AudioInterrupted] = []
    texts: list[BotText] = []
    h.client.events.on_audio.subscribe(frames.append)
    h.client.events.on_audio_interrupted.subscribe(stops.append)
    h.client.events.on_bot_text.subscribe(texts.append)
    done: Recorder[ServerMessage] = Recorder(lambda e: e.type == "bot-turn-completed")
    h.client.events.on_message.subscribe(done, P.IMMEDIATE)
    h.connect()
    h.client.pump()
    h.server.push(rtvi("bot-llm-text", text="Hello there."))
    h.server.push(form_b("bot-started-speaking"))
    for i in range(40):
        h.server.push_audio(voice(i))
    # The host has not pumped: 40 frames wait in the MAIN_THREAD queue (or in the session inbox).
    h.client.interrupt()
    h.server.push_audio(voice(99))  # a late frame of the interrupted turn (sent before the server stopped)
    h.server.push(form_b("bot-stopped-speaking"))
    h.server.push(form_b("bot-turn-completed", was_interrupted=True))
    done.wait(1)
    h.client.pump()
    assert frames == []  # not one frame of the interrupted voice reached the host
    assert [e.text for e in texts] == ["Hello there."]  # other events are untouched
    assert len(stops) == 1 and stops[0].source == "client" and stops[0].turn_id == 1
    assert stops[0].dropped == 40
    assert h.server.count_sent("interrupt-bot") == 1
    audio = h.client.diagnostics()["audio"]
    assert audio["interruptions"] == 1 and audio["dropped_interrupted"] == 41
    speak(h, range(2))  # the next turn is heard again
    done.wait(2)
    h.client.pump()
    assert [f.turn_id for f in frames] == [2, 2]


@pytest.mark.parametrize("signal", ["turn-completed", "blendshapes-cancel", "interruption-frame"])
def test_server_interruptions_drop_the_voice(make: Make, signal: str) -> None:
    h = make(delivery_policy=P.MAIN_THREAD)
    frames: list[AudioFrame] = []
    stops: list[AudioInterrupted] = []
    h.client.events.on_audio.subscribe(frames.append)
    h.client.events.on_audio_interrupted.subscribe(stops.append)
    seen: Recorder[AudioInterrupted] = Recorder()
    h.client.events.on_audio_interrupted.subscribe(seen, P.IMMEDIATE)
    h.connect()
    speak(h, range(10), turn_completed=False)
    if signal == "turn-completed":
        h.server.push(form_b("bot-turn-completed", was_interrupted=True))
    elif signal == "blendshapes-cancel":
        h.server.push(form_b("neurosync-blendshapes-cancel", response_id="r", neurosync_turn_id="n", epoch=1,
                             sequence=3, valid_through_frame_index=None, reason="interruption"))
    else:
        h.server.interrupt()
    seen.wait(1)
    h.client.pump()
    assert frames == []
    expected = {"turn-completed": "bot-turn-completed", "blendshapes-cancel": "neurosync-blendshapes-cancel",
                "interruption-frame": "server"}[signal]
    assert [s.source for s in stops] == [expected] and stops[0].dropped == 10


def test_lagging_frames_of_an_interrupted_turn_are_dropped_too(make: Make) -> None:
    clock = SteppingClock()
    h = make(clock=clock)
    h.server.audio_lag = 0.5
    got: Recorder[AudioFrame] = Recorder()
    h.client.events.on_audio.subscribe(got, P.IMMEDIATE)
    h.connect()
    h.server.push(form_b("bot-started-speaking"))
    h.server.push_audio(voice(0))
    got.wait(1)
    h.client.interrupt()
    h.server.push(form_b("bot-stopped-speaking"))
    h.server.push(form_b("bot-turn-completed", was_interrupted=True))
    h.server.push_audio(voice(1))  # still in the jitter buffer when the messages came
    clock.step(0.5)  # the tail ends
    for _ in range(2):  # connect() while CONNECTED is answered by the session thread: two span its timers
        h.client.connect(timeout=WAIT)
    h.server.push_audio(voice(2))  # sound after the tail is outside any turn again
    frames = got.wait(2)
    assert [(marker(f), f.turn_id) for f in frames] == [(0, 1), (2, None)]


def test_user_speaking_alone_does_not_cut_the_voice(make: Make) -> None:
    h = make()
    got: Recorder[AudioFrame] = Recorder()
    h.client.events.on_audio.subscribe(got, P.IMMEDIATE)
    h.connect()
    h.server.push(form_b("bot-started-speaking"))
    h.server.push_audio(voice(0))
    h.server.push(rtvi("user-started-speaking"))  # the server decides whether this interrupts
    h.server.push_audio(voice(1))
    assert [marker(f) for f in got.wait(2)] == [0, 1]
    assert h.client.diagnostics()["audio"]["interruptions"] == 0


def test_interrupted_ask_keeps_the_voice_that_came_before(make: Make) -> None:
    h = make()
    h.connect()
    asking, mid = ask_async(h)
    h.server.push(form_b("final-user-transcription", text="q", message_id=mid))
    h.server.push(rtvi("bot-llm-started"))
    h.server.push(rtvi("bot-llm-text", text="Once upon"))
    h.server.push(form_b("bot-started-speaking"))
    for i in range(3):
        h.server.push_audio(voice(i))
    h.server.interrupt()
    h.server.push_audio(voice(3))  # dropped: after the interruption
    h.server.push(form_b("bot-stopped-speaking"))
    h.server.push(form_b("bot-turn-completed", was_interrupted=True))
    reply = asking.result(WAIT)
    assert reply.was_interrupted
    assert reply.audio is not None and reply.audio.pcm == b"".join(voice(i) for i in range(3))


# ---------------------------------------------------------------------------- bounded audio


def test_host_that_stops_pumping_loses_only_the_oldest_audio(make: Make) -> None:
    h = make(delivery_policy=P.MAIN_THREAD, audio_queue_frames=10)
    frames: list[AudioFrame] = []
    texts: list[BotText] = []
    h.client.events.on_audio.subscribe(frames.append)
    h.client.events.on_bot_text.subscribe(texts.append)
    stopped: Recorder[ServerMessage] = Recorder(lambda e: isinstance(e, BotStoppedSpeaking))
    h.client.events.on_message.subscribe(stopped, P.IMMEDIATE)
    h.connect()
    h.server.push(form_b("bot-started-speaking"))
    for i in range(100):
        h.server.push_audio(voice(i))
        if i % 10 == 0:
            h.server.push(rtvi("bot-llm-text", text=str(i)))
    h.server.push(form_b("bot-stopped-speaking"))
    stopped.wait(1)
    h.client.pump()
    assert [e.text for e in texts] == [str(i) for i in range(0, 100, 10)]
    assert [marker(f) for f in frames] == list(range(90, 100))
    events = h.client.diagnostics()["events"]
    assert events["audio_dropped"] == {"main_thread": 90} and events["overflows"] == {}


# ---------------------------------------------------------------------------- audio-data messages


def audio_data(pcm: bytes, rate: int = 24000, wav_header: bool = False) -> dict[str, Any]:
    body = pcm
    if wav_header:
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(pcm)
        body = buffer.getvalue()
    return form_b("audio-data", sample_rate=rate, channels=1, audio=base64.b64encode(body).decode(),
                  includes_wav_header=wav_header)


@pytest.mark.parametrize("wav_header", [False, True], ids=["raw", "wav-header"])
def test_audio_data_messages_become_audio_frames(make: Make, wav_header: bool) -> None:
    h = make(audio_routing="data_only")
    got: Recorder[AudioFrame] = Recorder()
    other: Recorder[ServerMessage] = Recorder()
    h.client.events.on_audio.subscribe(got, P.IMMEDIATE)
    h.client.events.on_message.subscribe(other, P.IMMEDIATE)
    h.connect()
    h.server.push(form_b("bot-started-speaking"))
    h.server.push(audio_data(voice(7, 2400), wav_header=wav_header))
    h.server.push(form_b("bot-stopped-speaking"))
    [frame] = got.wait(1)
    assert frame.data == voice(7, 2400) and frame.sample_rate == 24000 and frame.turn_id == 1
    assert frame.duration == pytest.approx(0.1)
    other.wait(2)
    assert [m.type for m in other.events] == ["bot-started-speaking", "bot-stopped-speaking"]


def test_audio_data_is_ignored_when_the_track_carries_the_same_voice(make: Make) -> None:
    h = make(audio_routing="both")
    got: Recorder[Any] = Recorder()
    h.client.events.on_audio.subscribe(got, P.IMMEDIATE)
    h.client.events.on_message.subscribe(got, P.IMMEDIATE)
    h.connect()
    h.server.push(form_b("bot-started-speaking"))
    h.server.push(audio_data(voice(1)))
    h.server.push_audio(voice(2))
    h.server.push(form_b("bot-stopped-speaking"))
    got.wait(3)
    assert [marker(e) for e in got.of(AudioFrame)] == [2]


# ---------------------------------------------------------------------------- send_audio


def test_send_audio_checks_its_input_before_anything_else(make: Make) -> None:
    h = make()
    with pytest.raises(ValueError, match="whole number"):
        h.client.send_audio(b"\x00", 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        h.client.send_audio(b"\x00\x00", 4000)
    with pytest.raises(ValueError, match="num_channels"):
        h.client.send_audio(b"\x00\x00", 16000, num_channels=0)
    with pytest.raises(ValueError, match="pcm must be bytes"):
        h.client.send_audio("loud", 16000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        h.client.send_audio(b"\x00\x00", 16000, timeout=-1)


def test_send_audio_needs_a_connected_session(make: Make) -> None:
    h = make()
    with pytest.raises(InvalidStateError, match="connect"):
        h.client.send_audio(b"\x00\x00" * 160, 16000)
    h.connect()
    h.client.send_audio(voice(0, 16000), 16000)
    assert h.server.audio_sent == [(voice(0, 16000), 16000, 1)]
    assert h.client.diagnostics()["audio"]["seconds_sent"] == pytest.approx(1.0)
    h.client.disconnect()
    with pytest.raises(InvalidStateError):
        h.client.send_audio(b"\x00\x00", 16000)


def test_send_audio_on_a_transport_without_audio_says_what_to_use(make: Make) -> None:
    h = make()
    h.server.supports_audio = False
    h.connect()
    with pytest.raises(InvalidStateError, match="livekit"):
        h.client.send_audio(b"\x00\x00", 16000)
    assert SendQueueFullError.__mro__[1] is InvalidStateError  # the back-pressure error is catchable as such
    assert isinstance(BotStartedSpeaking(type="bot-started-speaking"), ServerMessage)
