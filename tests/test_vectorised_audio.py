"""The vectorised per-sample work (the simulator's lip-sync openings, the LiveKit mic's channel remix) gives
exactly what the straightforward per-sample Python gives (bench/rows_cpu.py, which also times the two) on
seeded random input and on the edges: empty, odd byte counts, windows shorter than a sample, full scale."""

from __future__ import annotations

import random

import pytest

from bench.rows_cpu import reference_openings, reference_remix
from convai_sync.transports.livekit_audio import remix
from simulator.core import lipsync
from simulator.core.lipsync import openings

pytestmark = pytest.mark.timeout(60)

FULL_SCALE = b"\x00\x80" * 4000 + b"\xff\x7f" * 4000  # -32768 then 32767: the largest squares


def test_openings_equal_the_per_sample_reference_on_random_input() -> None:
    rng = random.Random(20261207)
    for _ in range(200):
        pcm = rng.randbytes(rng.randrange(0, 20_000))
        # Rates below the frame rate (empty windows) are the edge test's; here every window holds samples.
        rate = rng.choice([300, 8000, 16000, 24000, 44100, 48000, rng.randrange(300, 50_000)])
        fps = rng.randrange(1, 241)
        assert openings(pcm, rate, fps) == reference_openings(pcm, rate, fps), (len(pcm), rate, fps)


@pytest.mark.parametrize("pcm, rate, fps", [
    (b"", 24000, 60), (b"\x01", 24000, 60), (b"\x01\x02\x03", 24000, 60),  # nothing / an odd byte dropped
    (FULL_SCALE, 24000, 60), (FULL_SCALE, 8000, 1),  # clamped at 1.0; one window of every sample
    (FULL_SCALE, 7, 240),  # fewer samples than frames: empty windows are silence
    (b"\x10\x27" * 1000, 24000, 0), (b"\x10\x27" * 1000, 0, 60),  # no frames
])
def test_openings_edges_equal_the_reference(pcm: bytes, rate: int, fps: int) -> None:
    assert openings(pcm, rate, fps) == reference_openings(pcm, rate, fps)


def test_openings_across_block_boundaries_equal_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    # A small block makes a short voice span many blocks, windows of uneven width among them (44100 / 60).
    monkeypatch.setattr(lipsync, "BLOCK_SAMPLES", 1000)
    pcm = random.Random(7).randbytes(2 * 44100)
    assert openings(pcm, 44100, 60) == reference_openings(pcm, 44100, 60)
    assert len(openings(pcm, 44100, 60)) == 60


def test_remix_equals_the_per_sample_reference_on_random_input() -> None:
    rng = random.Random(11)
    for _ in range(200):
        channels, target = rng.randrange(1, 9), rng.randrange(1, 9)
        pcm = rng.randbytes(2 * channels * rng.randrange(0, 2000))
        assert remix(pcm, channels, target) == reference_remix(pcm, channels, target), (channels, target)
    for channels in (2, 3, 5):  # full-scale means, negative ones truncated toward zero
        pcm = (b"\x00\x80" + b"\xff\x7f" * (channels - 1)) * 10 + b"\x00\x80" * channels * 10
        assert remix(pcm, channels, 1) == reference_remix(pcm, channels, 1)


def test_remix_refuses_partial_frames_like_the_reference() -> None:
    for pcm, channels in ((b"\x01\x02\x03", 1), (b"\x01\x00" * 3, 2)):
        with pytest.raises(ValueError):
            reference_remix(pcm, channels, 3 - channels)
        with pytest.raises(ValueError):
            remix(pcm, channels, 3 - channels)
