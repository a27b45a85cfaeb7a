"""Turn-latency statistics for ``diagnostics()``: p50/p95 of each stage over the recent turns.

Thread notes: :meth:`TimingStats.add` runs on the transport's reader thread when a reply completes;
:meth:`TimingStats.snapshot` on any thread. One lock guards the window.
"""

from __future__ import annotations

import collections
import math
import threading
from typing import Any

from .events import TurnTimings

STAGES = ("llm_started", "first_text", "first_audio", "completed")


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile of ``values`` at fraction ``q`` (0..1: 0.5 is the median, 0.95 the
    p95): the smallest value with at least ``q`` of them at or below it, in the values' own unit.

    Raises:
        ValueError: ``values`` is empty.
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class TimingStats:
    """The :class:`TurnTimings` of the last ``window`` completed ``ask()``/``stream()`` turns."""

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self._recent: collections.deque[TurnTimings] = collections.deque(maxlen=window)

    def add(self, timings: TurnTimings) -> None:
        """Record one completed turn's :class:`~convai_sync.events.TurnTimings` (stage times in seconds on
        the client's monotonic clock; this repository's ``convai_sync/events.py``). The oldest turn drops out
        once ``window`` are held. Returns nothing, raises nothing; any thread (the transport's reader thread
        calls it)."""
        with self._lock:
            self._recent.append(timings)

    def snapshot(self) -> dict[str, Any]:
        """``{"turns": n, "<stage>": {"p50": s, "p95": s, "count": k} | None, ...}``: seconds from
        ``sent`` to each stage (``llm_started``, ``first_text``, ``first_audio``, ``completed``)."""
        with self._lock:
            recent = list(self._recent)
        out: dict[str, Any] = {"turns": len(recent)}
        for stage in STAGES:
            values = [v for v in (t.since_sent(stage) for t in recent) if v is not None]
            out[stage] = None if not values else {
                "p50": round(percentile(values, 0.5), 4), "p95": round(percentile(values, 0.95), 4),
                "count": len(values)}
        return out
