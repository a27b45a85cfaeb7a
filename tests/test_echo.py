"""convai_sync.echo and the devices' echo reference: framing, ordering, when processing is on, and
the echo it removes (a stepped simulated room, tests/support/echo_room.py; no sound card)."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from convai_sync import AudioFrame
from convai_sync.devices import Microphone, Speaker
from convai_sync.echo import EchoCanceller
from simulator.core.speech import SPEECH_PEAK, voice_seconds
from tests.helpers_memory import WAIT, assert_no_convai_threads
from tests.support import echo_room
from tests.support.echo_room import Room, from_pcm, to_pcm

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _no_convai_threads_survive() -> Iterator[None]:
    yield
    assert_no_convai_threads()


class Blocks:
    """A microphone sink that keeps what it gets."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []
        self.cond = threading.Condition()

    def __call__(self, pcm: bytes, rate: int, channels: int) -> None:
        with self.cond:
            self.blocks.append(pcm)
            self.cond.notify_all()

    def wait(self, n: int) -> list[bytes]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.blocks) >= n, WAIT), f"{len(self.blocks)} of {n} blocks"
            return list(self.blocks)


def canceller_of(mic: Microphone) -> EchoCanceller | None:
    """``mic.echo_canceller`` now (read through a call: mypy keeps an asserted property narrowed)."""
    return mic.echo_canceller


def voice_frames(rate: int = 24000) -> list[AudioFrame]:
    pcm = echo_room.speechlike(voice_seconds(echo_room.REPLY), rate, seed=1, pitch=140.0)
    size = rate // 50 * 2
    chunks = [pcm[i:i + size] for i in range(0, len(pcm), size)]
    return [AudioFrame(data=c, sample_rate=rate, num_channels=1, samples_per_channel=len(c) // 2, timestamp=0.0,
                       turn_id=1) for c in chunks]


def test_whole_10_ms_frames_go_out_and_a_remainder_waits() -> None:
    canceller = EchoCanceller()
    assert len(canceller.process(bytes(2 * 400), 16000, 1)) == 2 * 320  # 25 ms in, 20 ms out
    assert len(canceller.process(bytes(2 * 240), 16000, 1)) == 2 * 320  # the 5 ms left + 15 ms
    assert canceller.stats["near_frames"] == 4
    with pytest.raises(ValueError, match="multiple of 100 Hz"):
        canceller.process(bytes(2 * 441), 44_101, 1)


def test_the_far_end_played_after_a_capture_waits_for_a_later_one() -> None:
    canceller = EchoCanceller()
    canceller.far_end(bytes(2 * 480), 24000, 1)  # 20 ms
    mark = canceller.mark()
    canceller.far_end(bytes(2 * 480), 24000, 1)  # played after the capture below
    canceller.process(bytes(2 * 320), 16000, 1, mark)
    assert canceller.stats["far_frames"] == 2
    canceller.process(bytes(2 * 320), 16000, 1)
    assert canceller.stats["far_frames"] == 4


def test_the_far_end_waiting_is_bounded() -> None:
    canceller = EchoCanceller()
    for _ in range(60):  # 1.2 s of 20 ms blocks while nothing is captured
        canceller.far_end(bytes(2 * 480), 24000, 1)
    assert canceller.stats["dropped_far_bytes"] == 10 * 2 * 480  # beyond a second, the oldest went


def test_processing_is_on_when_a_speaker_is_open_whichever_opened_first() -> None:
    room = Room()
    mic = Microphone(16000, stream_factory=room.input)
    sink = Blocks()
    mic.start(sink)
    try:
        assert mic.echo_canceller is None  # no speaker yet: the audio goes out as captured
        room.step()
        [block] = sink.wait(1)
        assert block == to_pcm(room.recording.captured[0])
        speaker = Speaker(prebuffer=0.0, stream_factory=room.output)
        canceller = canceller_of(mic)
        assert canceller is not None
        speaker.play(voice_frames()[0])
        room.step()
        sink.wait(2)
        assert canceller.stats["far_frames"] == 2 and canceller.stats["near_frames"] == 2
        speaker.close()  # no longer heard
        room.step()
        sink.wait(3)
        assert canceller.stats["far_frames"] == 2
    finally:
        mic.stop()


def test_processing_stays_off_when_refused_and_stops_with_the_microphone() -> None:
    room = Room()
    speaker = Speaker(prebuffer=0.0, stream_factory=room.output)
    off = Microphone(16000, stream_factory=room.input, echo_cancellation=False)
    off.start(Blocks())
    on = Microphone(16000, stream_factory=room.input)
    on.start(Blocks())
    try:
        assert off.echo_canceller is None and on.echo_canceller is not None
        assert len(speaker._references) == 1
        on.stop()
        assert speaker._references == []
    finally:
        off.stop()
        on.stop()
        speaker.close()


def test_without_livekit_the_default_logs_a_notice_and_explicit_processing_is_refused(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "livekit", None)
    with pytest.raises(ImportError, match=r"convai-sync\[livekit\]"):
        Microphone(16000, echo_cancellation=True)
    room = Room()
    speaker = Speaker(stream_factory=room.output)
    mic = Microphone(16000, stream_factory=room.input)
    with caplog.at_level(logging.WARNING, logger="convai_sync"):
        mic.start(Blocks())
    try:
        assert mic.echo_canceller is None
        assert "echo cancellation is off" in caplog.text and "convai-sync[livekit]" in caplog.text
    finally:
        mic.stop()
        speaker.close()


def test_a_rate_webrtc_cannot_frame_is_refused_when_processing_is_asked_for() -> None:
    with pytest.raises(ValueError, match="multiple of 100 Hz"):
        Microphone(22_050, echo_cancellation=True)


@pytest.mark.parametrize("rate", [24000, 48000])
def test_the_echo_is_reduced_by_15_db_and_stays_below_the_simulators_speech_threshold(rate: int) -> None:
    room = Room()
    speaker = Speaker(prebuffer=0.06, stream_factory=room.output)
    mic = Microphone(16000, stream_factory=room.input)
    sink = Blocks()
    mic.start(sink)
    frames = voice_frames(rate)
    try:
        for step in range(len(frames) + 40):  # the voice, then its echo's tail
            if step < len(frames):
                speaker.play(frames[step])
            room.step()
            sink.wait(step + 1)  # processed in step with the room, as in real time
    finally:
        mic.stop()
        speaker.close()
    rec = room.recording
    processed = [from_pcm(b) for b in sink.blocks]
    assert echo_room.erle_db(rec.captured, processed, rec.echo, rec.user) >= 15
    echo_only = [p for p, e in zip(processed, rec.echo, strict=True) if np.abs(e).max() > 0]
    assert max(np.abs(e).max() for e in rec.echo) > 2 * SPEECH_PEAK  # unprocessed, the simulator hears it
    assert max(np.abs(p).max() for p in echo_only) < SPEECH_PEAK  # processed, it does not
