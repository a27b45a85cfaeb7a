"""The host's frame loop and pygame set-up, shared by ``pygame_character.py`` and ``bench/frame_budget.py``.

One frame: read input -> ``client.pump()`` (queued MAIN_THREAD handlers run here) -> game logic ->
draw -> the caller's per-frame hook (the scripted tour) -> ``display.flip()`` -> pace to the frame
rate with ``pygame.time.Clock.tick``. Nothing in the loop waits on the SDK: ``pump()`` only runs
what is already queued, and every send is non-blocking.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def configure_sdl(headless: bool, audio_file: Path | None) -> None:
    """Set SDL's drivers before pygame initialises: headless means no window and no sound card.

    ``SDL_VIDEODRIVER=dummy`` renders into memory (screenshots still work);
    ``SDL_AUDIODRIVER=disk`` makes the mixer write what it plays, in its own format and in real
    time, to ``SDL_DISKAUDIOFILE`` (SDL 2 "disk" audio driver).
    """
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    if headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
        os.environ["SDL_AUDIODRIVER"] = "disk"
    if audio_file is not None:
        os.environ["SDL_DISKAUDIOFILE"] = str(audio_file)


def init_pygame(size: tuple[int, int], caption: str) -> Any:
    """Initialise pygame and the mixer (44.1 kHz, signed 16-bit, stereo, as most games run it).

    Returns the display surface. The mixer is optional: without an audio device the scene runs
    with subtitles only (``pygame.mixer.get_init()`` is then None).
    """
    import pygame

    pygame.mixer.pre_init(frequency=44100, size=-16, channels=2, buffer=512)
    pygame.init()
    if pygame.mixer.get_init() is None:
        try:
            pygame.mixer.init()
        except pygame.error as exc:
            import logging

            logging.getLogger("examples.pygame_loop").warning("no audio device (%s): subtitles only", exc)
    screen = pygame.display.set_mode(size)
    pygame.display.set_caption(caption)
    return screen


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of ``values`` (milliseconds in, milliseconds out), rounded to µs."""
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0, "n": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 3), "p99": round(p99, 3), "max": round(ordered[-1], 3),
            "n": len(ordered)}


@dataclass
class FrameStats:
    """Per-frame timings in milliseconds: ``pump`` (the SDK's ``pump()`` call, handlers included),
    ``work`` (everything in the frame but the pacing wait) and ``interval`` (start to start)."""

    pump: list[float] = field(default_factory=list)
    work: list[float] = field(default_factory=list)
    interval: list[float] = field(default_factory=list)
    events: int = 0

    def summary(self) -> dict[str, Any]:
        return {"frames": len(self.work), "events_pumped": self.events, "pump_ms": percentiles(self.pump),
                "work_ms": percentiles(self.work), "interval_ms": percentiles(self.interval)}


def run_loop(screen: Any, *, fps: float, handle: Callable[[Any], None], tick: Callable[[], None],
             draw: Callable[[Any], None], running: Callable[[], bool],
             pump: Callable[[], int] | None = None, after_draw: Callable[[Any], None] | None = None,
             max_seconds: float | None = None, stats: FrameStats | None = None,
             check: Callable[[str], None] | None = None) -> FrameStats:
    """Run frames until ``running()`` is false or ``max_seconds`` pass; returns the timings.

    Args:
        handle: Called with each pygame input event.
        tick: Game logic for the frame (after ``pump``).
        draw: Draws the frame onto ``screen``.
        pump: ``client.pump`` (None: the same loop without the SDK).
        after_draw: Called with ``screen`` after drawing, before the flip (screenshots, the tour).
        check: Called with ``"run_loop"`` once per frame (the host's main-thread guard).
    """
    import pygame

    stats = stats or FrameStats()
    clock = pygame.time.Clock()
    started = last = time.perf_counter()
    while running():
        frame_start = time.perf_counter()
        if max_seconds is not None and frame_start - started >= max_seconds:
            break
        stats.interval.append((frame_start - last) * 1000.0)
        last = frame_start
        if check is not None:
            check("run_loop")  # this frame's pygame calls: event.get, display.flip, Clock.tick
        for event in pygame.event.get():
            handle(event)
        if pump is not None:
            before = time.perf_counter()
            stats.events += pump()
            stats.pump.append((time.perf_counter() - before) * 1000.0)
        tick()
        draw(screen)
        if after_draw is not None:
            after_draw(screen)
        pygame.display.flip()
        stats.work.append((time.perf_counter() - frame_start) * 1000.0)
        clock.tick(fps)
    stats.interval = stats.interval[1:]  # the first "interval" is the loop's start-up
    return stats
