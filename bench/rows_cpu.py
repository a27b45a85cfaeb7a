"""Per-sample work on the loop threads: the vectorised code beside the per-sample Python it replaced.

Pure CPU in this process (no simulator, no network); single-threaded, run from ``bench/run.py --only cpu``.
Each row's value is the shipped function's CPU time, its baseline the reference implementation's, on the
same input in the same run:

* simulator lip-sync frames (``simulator.core.lipsync.openings``) of the longest reply the default voice
  speaks: the echo of a user text of ``simulator.core.bounds.MAX_TEXT_LENGTH`` characters (2400 s at 24 kHz),
  at 60 fps. It runs on the simulator's event loop, so every other session waits for it.
* the LiveKit microphone's channel remix (``convai_sync.transports.livekit_audio.remix``) of 10 s of
  48 kHz stereo to mono, on the transport's loop thread.

The reference implementations are also what tests/test_vectorised_audio.py compares the shipped code with.
"""

from __future__ import annotations

import array
import math
import sys
import time
from collections.abc import Callable

from bench.common import Row, no_gc


def reference_openings(pcm: bytes, rate: int, fps: int) -> list[float]:
    """``openings`` sample by sample: the straightforward RMS of each ``1 / fps`` window (0..1, 4 places)."""
    from simulator.core.lipsync import FULL_OPEN_RMS

    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder != "little":
        samples.byteswap()
    count = math.ceil(len(samples) * fps / rate) if rate > 0 else 0
    result = []
    for index in range(count):
        start, end = index * rate // fps, min(len(samples), (index + 1) * rate // fps)
        window = samples[start:end]
        rms = math.sqrt(sum(v * v for v in window) / len(window)) if window else 0.0
        result.append(round(min(1.0, rms / FULL_OPEN_RMS), 4))
    return result


def reference_remix(pcm: bytes, channels: int, target: int) -> bytes:
    """``remix`` sample by sample: the mean of the channels (truncated toward zero), copied ``target`` times."""
    if channels == target:
        return pcm
    samples = array.array("h")
    samples.frombytes(pcm)
    if sys.byteorder != "little":
        samples.byteswap()
    if channels == 1:
        mono = samples
    else:
        lanes = [samples[c::channels] for c in range(channels)]
        mono = array.array("h", [int(total / channels) for total in map(sum, zip(*lanes, strict=True))])
    if target == 1:
        out = mono
    else:
        out = array.array("h", bytes(2 * len(mono) * target))
        for c in range(target):
            out[c::target] = mono
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()


def _cpu_seconds(call: Callable[[], object]) -> float:
    with no_gc():
        started = time.process_time()
        call()
        return time.process_time() - started


def cpu_rows(quick: bool) -> list[Row]:
    from convai_sync.transports.livekit_audio import remix
    from simulator.core.bounds import MAX_TEXT_LENGTH
    from simulator.core.lipsync import openings
    from simulator.core.voice import default_synthesizer

    length = MAX_TEXT_LENGTH // 10 if quick else MAX_TEXT_LENGTH
    pcm, rate = default_synthesizer("x" * length)
    seconds = len(pcm) / 2 / rate
    stereo = bytes(range(256)) * (48_000 * 10 * 4 // 256)
    return [
        Row("cpu on the loop threads", f"simulator lip-sync openings, {seconds:.0f} s voice", "s",
            _cpu_seconds(lambda: openings(pcm, rate, 60)), _cpu_seconds(lambda: reference_openings(pcm, rate, 60)),
            note="baseline: per-sample Python"),
        Row("cpu on the loop threads", "LiveKit mic remix, 10 s 48 kHz stereo to mono", "s",
            _cpu_seconds(lambda: remix(stereo, 2, 1)), _cpu_seconds(lambda: reference_remix(stereo, 2, 1)),
            note="baseline: per-sample Python"),
    ]
