"""The lip-sync timeline's arithmetic: interpolation, the 10-frame fades, underruns, cancels and
interruptions, named channels per format; and the voice players' playback clocks it follows."""

from __future__ import annotations

import pytest

from convai_sync import LipSync, LipSyncClip
from convai_sync.devices import Speaker
from convai_sync.lipsync import ARKIT_NAMES, FADE_FRAMES, FRAME_SIZES, VISEME_NAMES, channel_names
from tests.test_devices import Factory
from tests.test_devices import frame as speaker_frame

pytestmark = pytest.mark.timeout(10)

FPS = 60


def ramp(n: int, width: int = 2) -> list[tuple[float, ...]]:
    return [(float(i),) * width for i in range(n)]


def timeline(n: int, *, finished: bool = False) -> LipSync:
    lipsync = LipSync("visemes", FPS, turn_id=1)
    lipsync.add([(1.0,) * 15] * n)
    if finished:
        lipsync.finish()
    return lipsync


def test_channel_names_per_format() -> None:
    assert len(ARKIT_NAMES) == FRAME_SIZES["arkit"] == 61 and len(set(ARKIT_NAMES)) == 61
    assert ARKIT_NAMES[0] == "eyeBlinkLeft" and ARKIT_NAMES[17] == "jawOpen" and ARKIT_NAMES[-1] == "rightEyeRoll"
    assert VISEME_NAMES == ("sil", "pp", "ff", "th", "dd", "kk", "ch", "ss", "nn", "rr", "aa", "e", "ih", "oh", "ou")
    assert channel_names("mha") is None and channel_names("cc4_extended") is None
    assert FRAME_SIZES["mha"] == 251 and FRAME_SIZES["cc4_extended"] == 170 and FRAME_SIZES["cc5_hd"] == 0


def test_frames_are_interpolated_between_neighbours() -> None:
    clip = LipSyncClip("x", FPS, tuple(ramp(40)))
    assert clip.frame_at(20 / FPS) == (20.0, 20.0)
    assert clip.frame_at(20.5 / FPS) == pytest.approx((20.5, 20.5))
    assert clip.duration == pytest.approx(40 / FPS)


def test_the_clip_fades_in_and_out_over_ten_frames() -> None:
    clip = LipSyncClip("visemes", FPS, ((1.0,) * 15,) * 40)
    assert clip.frame_at(0.0) == (0.0,) * 15
    assert clip.frame_at(5 / FPS)[0] == pytest.approx(0.5)
    assert clip.frame_at(FADE_FRAMES / FPS)[0] == pytest.approx(1.0)
    assert clip.frame_at(35 / FPS)[0] == pytest.approx(0.5)  # 5 frames before the end
    assert clip.frame_at(40 / FPS) == (0.0,) * 15
    assert clip.frame_at(-1.0) == (0.0,) * 15


def test_an_unfinished_timeline_holds_its_last_frame_and_fades_it_on_an_underrun() -> None:
    lipsync = timeline(20)
    assert lipsync.frame_at(19 / FPS)[0] == pytest.approx(1.0)  # no fade-out: more frames may come
    assert lipsync.frame_at(24 / FPS)[0] == pytest.approx(0.5)
    assert lipsync.frame_at(40 / FPS) == (0.0,) * 15
    lipsync.add([(1.0,) * 15] * 20)
    assert lipsync.frame_at(24 / FPS)[0] == pytest.approx(1.0)


def test_not_playing_is_neutral() -> None:
    assert timeline(20).frame_at(None) == (0.0,) * 15


def test_cancel_with_an_index_keeps_the_frames_through_it() -> None:
    lipsync = timeline(30)
    lipsync.cancel(11)
    assert len(lipsync.clip().frames) == 12 and lipsync.finished and lipsync.cancelled
    lipsync.add([(1.0,) * 15] * 5)
    assert len(lipsync.clip().frames) == 12 and lipsync.dropped == 18 + 5


def test_interrupt_fades_out_from_where_the_render_is() -> None:
    lipsync = timeline(60)
    assert lipsync.frame_at(20 / FPS)[0] == pytest.approx(1.0)
    lipsync.interrupt()
    assert len(lipsync.clip().frames) == 20 + FADE_FRAMES + 1
    assert lipsync.frame_at(26 / FPS)[0] == pytest.approx(0.5)
    assert lipsync.frame_at(31 / FPS) == (0.0,) * 15


def test_frame_for_reads_the_players_clock() -> None:
    class Player:
        def __init__(self) -> None:
            self.asked: list[int | None] = []

        def playback_position(self, turn_id: int | None = None) -> float | None:
            self.asked.append(turn_id)
            return 15 / FPS

    player = Player()
    assert timeline(30).frame_for(player)[0] == pytest.approx(1.0)
    assert player.asked == [1]


# ---------------------------------------------------------------------------- playback clocks


def test_the_speaker_reports_how_much_of_each_turn_it_has_played() -> None:
    factory = Factory()
    speaker = Speaker(prebuffer=0.0, block_seconds=0.01, stream_factory=factory)
    assert speaker.playback_position() is None
    speaker.play(speaker_frame(1, samples=480, turn_id=1))  # 30 ms
    stream = factory.streams[0]
    assert speaker.playback_position(1) == 0.0
    stream.pull()
    stream.pull()
    assert speaker.playback_position(1) == pytest.approx(0.02)
    assert speaker.playback_position() == pytest.approx(0.02)
    speaker.play(speaker_frame(2, samples=160, turn_id=2))
    assert speaker.playback_position(2) is None  # not reached yet
    stream.pull()
    stream.pull()
    assert speaker.playback_position(1) == pytest.approx(0.03)  # over: its whole length
    assert speaker.playback_position(2) == pytest.approx(0.01)
    speaker.close()


def test_the_speaker_clock_skips_what_an_interrupt_dropped() -> None:
    factory = Factory()
    speaker = Speaker(prebuffer=0.0, block_seconds=0.01, stream_factory=factory)
    speaker.play(speaker_frame(1, samples=480, turn_id=1))
    factory.streams[0].pull()
    speaker.interrupt(1)
    speaker.play(speaker_frame(2, samples=160, turn_id=2))
    assert speaker.playback_position(2) == 0.0
    assert speaker.playback_position(1) == pytest.approx(0.03)
    speaker.close()
