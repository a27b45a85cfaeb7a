"""The pygame example's building blocks, headless: the voice jitter buffer, the resampler, the paced
voice clip and the main-thread guard (``convai_sync/pygame_voice.py``, ``examples/_pygame_scene.py``,
``examples/_main_thread.py``).

pygame's mixer runs on SDL's ``dummy`` audio driver here (nothing is played); the player's channel is
a fake whose "playing" state the test controls, so buffering decisions are checked exactly.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame  # noqa: E402
from _main_thread import ThreadGuard  # noqa: E402
from _pygame_workers import MicStream  # noqa: E402

from convai_sync import AudioClip, AudioFrame  # noqa: E402
from convai_sync.errors import invalid_state  # noqa: E402
from convai_sync.pygame_voice import StreamResampler, VoicePlayer  # noqa: E402

pytestmark = pytest.mark.timeout(20)

MIXER_RATE = 44100


@pytest.fixture(scope="module")
def mixer() -> Iterator[tuple[int, int, int]]:
    previous = os.environ.get("SDL_AUDIODRIVER")
    os.environ["SDL_AUDIODRIVER"] = "dummy"
    pygame.mixer.init(frequency=MIXER_RATE, size=-16, channels=2, buffer=512)
    try:
        spec = pygame.mixer.get_init()
        assert spec is not None, "pygame.mixer did not initialise on SDL's dummy audio driver"
        yield spec
    finally:
        pygame.mixer.quit()
        if previous is None:
            os.environ.pop("SDL_AUDIODRIVER", None)
        else:
            os.environ["SDL_AUDIODRIVER"] = previous


class FakeChannel:
    """A mixer channel with pygame's semantics, whose playback the test advances with ``finish()``.

    As pygame.mixer.Channel: ``queue()`` on an idle channel plays at once, a channel holds one queued
    sound, ``stop()`` starts the queued sound (its end-of-sound callback plays the queue), and
    ``get_busy()`` is false in the moment between a sound's end and the queued one's start
    (``between()``).
    """

    def __init__(self) -> None:
        self.playing: Any = None
        self.queued: Any = None
        self.started: list[Any] = []
        self.stops = 0
        self.plays = 0
        self._between = False

    def get_busy(self) -> bool:
        return self.playing is not None and not self._between

    def get_queue(self) -> Any:
        return self.queued

    def get_sound(self) -> Any:
        return self.playing

    def play(self, sound: Any) -> None:  # replaces whatever plays, the queued sound included
        self.plays += 1
        self.playing, self.queued, self._between = sound, None, False
        self.started.append(sound)

    def queue(self, sound: Any) -> None:
        assert self.queued is None, "a Channel holds one queued sound; queue() would replace it"
        if self.playing is None:
            self.playing = sound
            self.started.append(sound)
        else:
            self.queued = sound

    def stop(self) -> None:
        self.stops += 1
        self._between = False
        self.playing, self.queued = self.queued, None
        if self.playing is not None:
            self.started.append(self.playing)

    def between(self) -> None:
        """The playing sound has ended; SDL has not started the queued one yet."""
        assert self.queued is not None
        self._between = True

    def strand(self) -> None:
        """pygame's race: the playing sound ended, and its end-of-sound callback, having looked for a
        queued sound before a ``queue()`` landed, cleared the channel's sound; the queued one stays."""
        assert self.queued is not None
        self.playing, self._between = None, False

    def finish(self) -> None:
        """The playing sound ends; the queued one (if any) starts, as SDL_mixer does."""
        self._between = False
        self.playing, self.queued = self.queued, None
        if self.playing is not None:
            self.started.append(self.playing)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frame(seconds: float, turn: int | None = 1, rate: int = 24000, value: int = 1000, channels: int = 1,
          at: float = 0.0) -> AudioFrame:
    """A frame of ``seconds`` that reached the SDK at ``at`` (the players' fake clock's time)."""
    n = round(seconds * rate)
    data = np.full(n * channels, value, dtype="<i2").tobytes()
    return AudioFrame(data=data, sample_rate=rate, num_channels=channels, samples_per_channel=n,
                      timestamp=at, turn_id=turn)


def make_player(**options: Any) -> tuple[VoicePlayer, FakeChannel, Clock]:
    channel, clock = FakeChannel(), Clock()
    player = VoicePlayer(channel, clock=clock, **options)  # type: ignore[arg-type]
    return player, channel, clock


def sound_seconds(sound: pygame.mixer.Sound) -> float:
    return sound.get_length()


# ---------------------------------------------------------------------------- resampler


def test_resampling_frame_by_frame_equals_the_whole_stream_and_keeps_its_duration() -> None:
    rng = np.random.default_rng(7)
    pcm = (rng.standard_normal(24000) * 3000).astype("<i2")
    whole = StreamResampler(MIXER_RATE, 2).convert(pcm.tobytes(), 24000, 1)
    pieces = StreamResampler(MIXER_RATE, 2)
    parts = [pieces.convert(pcm[i:i + 480].tobytes(), 24000, 1) for i in range(0, len(pcm), 480)]
    joined = np.concatenate(parts)
    assert abs(len(joined) - MIXER_RATE) <= 1  # 1 s in, 1 s out (to one sample)
    n = min(len(whole), len(joined))
    assert np.allclose(whole[:n], joined[:n], atol=1e-6)  # no clicks at frame boundaries
    assert np.array_equal(joined[:, 0], joined[:, 1])  # mono -> both stereo channels


def test_stereo_input_to_a_mono_mixer_is_downmixed() -> None:
    left_right = np.array([[1000, 3000]] * 100, dtype="<i2")
    out = StreamResampler(24000, 1).convert(left_right.tobytes(), 24000, 2)
    assert out.shape == (100, 1)
    assert np.allclose(out[:, 0], 2000 / 32768)


# ---------------------------------------------------------------------------- jitter buffer


def test_a_turn_starts_playing_only_after_the_prebuffer(mixer: tuple[int, int, int]) -> None:
    player, channel, _clock = make_player(prebuffer_seconds=0.12, chunk_seconds=0.06)
    player.feed(frame(0.06))
    player.update()
    assert channel.started == []  # 60 ms < the 120 ms prebuffer
    player.feed(frame(0.08))
    player.update()
    assert channel.playing is not None and channel.queued is not None  # one playing + one queued
    assert sound_seconds(channel.playing) == pytest.approx(0.06, abs=1e-3)
    assert player.buffered_seconds == pytest.approx(0.02, abs=1e-3)


def test_a_short_utterance_plays_once_it_has_waited_the_prebuffer(mixer: tuple[int, int, int]) -> None:
    player, channel, clock = make_player(prebuffer_seconds=0.12)
    player.feed(frame(0.04))
    player.update()
    assert channel.started == []
    clock.now += 0.13
    player.update()
    assert len(channel.started) == 1 and sound_seconds(channel.started[0]) == pytest.approx(0.04, abs=1e-3)


def test_sounds_are_in_the_mixers_format(mixer: tuple[int, int, int]) -> None:
    rate, size, channels = mixer
    player, channel, clock = make_player(prebuffer_seconds=0.0, chunk_seconds=0.05)
    player.feed(frame(0.05, rate=16000, value=8000))
    player.update()
    raw = channel.started[0].get_raw()
    assert len(raw) % (channels * 2) == 0  # whole frames of signed 16-bit samples, the mixer's channels
    # At the mixer's rate: 50 ms, less the fraction of an input sample the resampler carries over.
    assert abs(len(raw) // (channels * 2) - round(0.05 * rate)) <= rate // 16000 + 1
    samples = np.frombuffer(raw, dtype="<i2")
    assert abs(int(np.median(samples)) - 8000) <= 2


def test_the_buffer_is_bounded_and_drops_the_oldest_audio(mixer: tuple[int, int, int]) -> None:
    player, channel, _clock = make_player(max_buffer_seconds=0.5, prebuffer_seconds=0.1, chunk_seconds=0.05)
    for i in range(10):  # 1 s of audio, 100 ms per frame, each frame a different level
        player.feed(frame(0.1, value=1000 * (i + 1)))
    assert player.buffered_seconds == pytest.approx(0.5, abs=1e-3)
    assert player.stats.dropped_overflow_seconds == pytest.approx(0.5, abs=1e-3)
    player.update()
    first = np.frombuffer(channel.started[0].get_raw(), dtype="<i2")
    assert abs(int(np.median(first)) - 6000) <= 2  # the newest half second survived (frames 6..10)


def test_interrupt_stops_the_voice_and_drops_the_rest_of_that_turn(mixer: tuple[int, int, int]) -> None:
    player, channel, _clock = make_player(prebuffer_seconds=0.05)
    player.feed(frame(0.3, turn=1))
    player.update()
    assert channel.get_busy()
    assert channel.get_queue() is not None  # a sound queued behind the playing one
    player.interrupt()
    assert not channel.get_busy() and channel.get_queue() is None and player.buffered_seconds == 0
    player.feed(frame(0.2, turn=1))  # a late frame of the interrupted turn
    player.update()
    assert not channel.get_busy()
    assert player.stats.dropped_stale_seconds == pytest.approx(0.3 - 0.12 + 0.2, abs=2e-3)
    player.feed(frame(0.2, turn=2))  # the next reply plays
    player.update()
    assert channel.get_busy()


def test_interrupt_names_the_turn_the_sdk_interrupted(mixer: tuple[int, int, int]) -> None:
    player, channel, _clock = make_player(prebuffer_seconds=0.0)
    player.feed(frame(0.1, turn=3))
    player.interrupt(turn_id=4)  # AudioInterrupted.turn_id: a turn whose audio has not arrived yet
    player.feed(frame(0.1, turn=4))
    player.update()
    assert not channel.get_busy() and player.stats.dropped_stale_seconds == pytest.approx(0.2, abs=1e-3)
    player.feed(frame(0.1, turn=5))
    player.update()
    assert channel.get_busy()


def test_no_sound_is_replaced_between_one_sounds_end_and_the_next_ones_start(mixer: tuple[int, int, int]) -> None:
    """Finding: 30-60 ms of the voice went missing from the mixer's output now and then. When
    ``get_busy()`` was false because SDL had not yet started the queued sound, the player called
    ``Channel.play()``, which replaced it."""
    player, channel, _clock = make_player(prebuffer_seconds=0.0, chunk_seconds=0.05)
    player.feed(frame(0.2))
    player.update()
    queued = channel.get_queue()
    channel.between()
    player.update()
    assert channel.plays == 0 and channel.get_queue() is queued
    while player.busy:
        channel.finish()
        player.update()
    assert sum(sound_seconds(s) for s in channel.started) == pytest.approx(0.2, abs=1e-3)


def test_running_dry_mid_turn_is_an_underrun_but_a_new_turn_is_not(mixer: tuple[int, int, int]) -> None:
    player, channel, clock = make_player(prebuffer_seconds=0.05, chunk_seconds=0.05)
    player.feed(frame(0.1, turn=1))
    player.update()
    channel.finish()
    channel.finish()
    player.update()  # everything played, the channel is idle: drained
    assert not player.busy
    player.feed(frame(0.1, turn=2))  # the next turn: not an underrun
    player.update()
    assert player.stats.underruns == 0 and channel.get_busy()
    channel.finish()
    channel.finish()
    player.update()
    player.feed(frame(0.1, turn=2))  # more of the same turn after running dry: an underrun
    assert player.stats.underruns == 1
    clock.now += 0.06
    player.update()
    assert channel.get_busy()  # and it plays again after re-prebuffering


def test_an_underrun_is_a_late_arrival_only_when_the_audio_reached_the_sdk_after_the_mixer_ran_dry(
        mixer: tuple[int, int, int]) -> None:
    """Late arrival: the SDK had nothing to give when the handed audio ended (the network's doing);
    otherwise the audio was waiting in the SDK and the host fed it too late (the host's)."""
    player, channel, clock = make_player(prebuffer_seconds=0.05, chunk_seconds=0.05)
    player.feed(frame(0.1, at=clock.now))
    player.update()  # 0.1 s handed to the mixer at 100.0: it runs dry at 100.1
    channel.finish()
    channel.finish()
    clock.now = 100.3
    player.update()  # noticed at 100.3 (a slow frame), but the mixer ran dry at 100.1
    player.feed(frame(0.1, at=100.25))  # reached the SDK after 100.1: nothing was there to give
    assert (player.stats.underruns, player.stats.late_arrival_underruns) == (1, 1)
    clock.now = 100.36
    player.update()  # prebuffered again: 0.1 s more from 100.36, dry at 100.46
    channel.finish()
    channel.finish()
    clock.now = 100.6
    player.update()
    player.feed(frame(0.1, at=100.4))  # was waiting in the SDK before the mixer ran dry: the host's
    assert (player.stats.underruns, player.stats.late_arrival_underruns) == (2, 1)
    # A mixer slower than real time: still playing at 100.9, after the 0.1 s handed at 100.6 should have
    # ended; audio that reached the SDK meanwhile was there to feed, so that underrun is the host's.
    clock.now = 100.66
    player.update()  # prebuffered again: 0.1 s handed from 100.66
    channel.finish()
    clock.now = 100.9
    player.update()  # the last sound still plays
    channel.finish()
    clock.now = 101.0
    player.update()
    player.feed(frame(0.1, at=100.85))
    assert (player.stats.underruns, player.stats.late_arrival_underruns) == (3, 1)


def test_every_second_fed_is_handed_to_the_mixer(mixer: tuple[int, int, int]) -> None:
    player, channel, _clock = make_player(prebuffer_seconds=0.1, chunk_seconds=0.06)
    for _ in range(50):  # 1 s in 20 ms frames at 24 kHz
        player.feed(frame(0.02))
        player.update()
        if channel.get_busy() and channel.get_queue() is not None:
            channel.finish()
    while player.busy:
        channel.finish()
        player.update()
    assert player.stats.seconds_played == pytest.approx(1.0, abs=2 / MIXER_RATE)
    assert sum(sound_seconds(s) for s in channel.started) == pytest.approx(1.0, abs=1e-3)
    assert player.stats.underruns == 0


# ---------------------------------------------------------------------------- voice clip and thread guard


class FakeSender:
    def __init__(self, refuse_after: int | None = None) -> None:
        self.pieces: list[tuple[bytes, int, int, float | None]] = []
        self.refuse_after = refuse_after

    def send_audio(self, pcm: bytes, sample_rate: int, num_channels: int = 1, timeout: float | None = None) -> None:
        if self.refuse_after is not None and len(self.pieces) >= self.refuse_after:
            raise invalid_state("cannot send while RECONNECTING")
        self.pieces.append((pcm, sample_rate, num_channels, timeout))


class FakeTime:
    """The mic's clock and stoppable wait: a wait advances the clock at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


def test_the_voice_clip_is_sent_in_real_time_20_ms_pieces_then_a_silence() -> None:
    clip = AudioClip(np.full(16000, 500, dtype="<i2").tobytes(), 16000, 1)  # 1 s
    client, fake = FakeSender(), FakeTime()
    mic = MicStream(client, clip, clock=fake.clock, wait=fake.wait)  # type: ignore[arg-type]
    mic.run()
    assert mic.done and mic.failed is None
    sent = b"".join(p for p, _, _, _ in client.pieces)
    total = 1 + MicStream.TRAILING_SILENCE
    assert len(sent) == 2 * round(16000 * total)
    assert sent[: len(clip.pcm)] == clip.pcm and set(sent[len(clip.pcm):]) == {0}
    assert {len(p) for p, _, _, _ in client.pieces} == {640}  # 20 ms each
    assert {(rate, channels) for _, rate, channels, _ in client.pieces} == {(16000, 1)}
    assert all(timeout is not None and timeout > 0 for *_, timeout in client.pieces)  # a bounded wait
    assert sum(fake.waits) == pytest.approx(total, abs=1e-6)  # paced: one second of audio per second
    assert mic.sent_seconds == pytest.approx(total)


def test_a_refused_piece_stops_the_clip_and_keeps_what_was_sent() -> None:
    clip = AudioClip(np.zeros(16000, dtype="<i2").tobytes(), 16000, 1)
    client, fake = FakeSender(refuse_after=2), FakeTime()
    mic = MicStream(client, clip, clock=fake.clock, wait=fake.wait)  # type: ignore[arg-type]
    mic.run()
    assert mic.done and mic.failed is not None and "RECONNECTING" in mic.failed
    assert len(client.pieces) == 2 and mic.sent_seconds == pytest.approx(0.04)


def test_stopping_the_mic_ends_its_thread_at_once() -> None:
    clip = AudioClip(np.zeros(16000 * 30, dtype="<i2").tobytes(), 16000, 1)  # 30 s: far longer than the test
    client = FakeSender()
    mic = MicStream(client, clip)  # type: ignore[arg-type]
    mic.start()
    mic.stop(5.0)
    assert mic.done and mic.sent_seconds < 5.0


def test_the_thread_guard_reports_a_call_off_the_owner_thread() -> None:
    guard = ThreadGuard()
    guard.check("draw")
    handler = guard.wrap("on_audio", lambda event: event)
    assert handler(5) == 5
    assert guard.violations() == {}
    worker = threading.Thread(target=lambda: guard.check("draw"), name="not-main")
    worker.start()
    worker.join(5)
    assert guard.violations() == {"draw": ["not-main"]}
    assert guard.sites()["on_audio"] == {threading.current_thread().name: 1}


def test_a_queued_sound_the_mixer_stranded_is_started_at_the_next_update(mixer: tuple[int, int, int]) -> None:
    player, channel, _clock = make_player(prebuffer_seconds=0.0, chunk_seconds=0.02)
    player.feed(frame(0.04))
    player.update()  # 20 ms playing, 20 ms queued
    stranded = channel.get_queue()
    channel.strand()
    assert not channel.get_busy() and channel.get_queue() is stranded  # no callback will ever start it
    player.update()
    assert channel.playing is stranded and channel.get_queue() is None
    assert player.stats.stranded_restarts == 1
    channel.finish()
    player.update()
    assert not player.busy and player.stats.seconds_played == pytest.approx(0.04, abs=2 / MIXER_RATE)


def test_the_moment_between_two_sounds_is_left_to_the_mixer_unless_it_lasts(mixer: tuple[int, int, int]) -> None:
    player, channel, clock = make_player(prebuffer_seconds=0.0, chunk_seconds=0.02)
    player.feed(frame(0.04))
    player.update()
    queued = channel.get_queue()
    channel.between()  # the playing sound ended; SDL is about to start the queued one
    for _ in range(5):
        clock.now += 0.016
        player.update()
    assert channel.plays == 0 and channel.get_queue() is queued  # a frame or five: SDL's to finish
    clock.now += 0.2  # still idle with the queue in place: stranded after all
    player.update()
    assert channel.plays == 1 and channel.playing is queued and player.stats.stranded_restarts == 1


def test_without_the_pygame_extra_the_import_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.setitem(sys.modules, "pygame", None)  # as if pygame-ce were not installed
    monkeypatch.delitem(sys.modules, "convai_sync.pygame_voice")
    with pytest.raises(ImportError, match=r"pip install 'convai-sync\[pygame\]'"):
        importlib.import_module("convai_sync.pygame_voice")


#: The mixer's rate differs from the voice's: resampling rounds each piece by up to a sample or two.
RESAMPLED = 3 / 24000


def test_the_playback_clock_follows_the_turn_and_waits_through_a_gap(mixer: tuple[int, int, int]) -> None:
    player, channel, clock = make_player(prebuffer_seconds=0.0, chunk_seconds=0.06)
    assert player.playback_position() is None
    player.feed(frame(0.12, turn=1))
    player.update()
    assert player.playback_position(1) == 0.0
    clock.now += 0.05
    assert player.playback_position(1) == pytest.approx(0.05, abs=RESAMPLED)
    assert player.playback_position(2) is None
    clock.now += 1.0
    assert player.playback_position(1) == pytest.approx(0.12, abs=RESAMPLED)  # never past what the mixer has
    channel.finish()
    channel.finish()  # both sounds played: the channel is idle, waiting for more of the turn
    player.feed(frame(0.06, turn=1))
    player.update()
    assert player.playback_position(1) == pytest.approx(0.12, abs=RESAMPLED)  # the idle gap is not counted
    clock.now += 0.03
    assert player.playback_position() == pytest.approx(0.15, abs=RESAMPLED)
    player.interrupt(1)
    assert player.playback_position(1) is None
