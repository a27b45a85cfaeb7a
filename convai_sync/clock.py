"""Time source for every wait in the session (backoff, timeouts, timers).

The session never calls ``time.sleep``: it asks its :class:`Clock` for ``monotonic()`` and waits
on a ``threading.Event`` through ``clock.wait(event, timeout)``, so a stop request interrupts
any wait and tests can swap in :class:`convai_sync.testing.FakeClock`.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What the session needs from time."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        ...

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Block until ``event`` is set (True) or ``timeout`` seconds pass (False)."""
        ...

    def wait_until(self, event: threading.Event, deadline: float | None) -> bool:
        """Block until ``event`` is set (True) or ``monotonic()`` reaches ``deadline`` (False)."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``Event.wait``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        return event.wait(timeout)

    def wait_until(self, event: threading.Event, deadline: float | None) -> bool:
        if deadline is None:
            return event.wait()
        return event.wait(max(0.0, deadline - time.monotonic()))


class Deadline:
    """A point in time on a clock; ``remaining()`` never goes below zero (None = no deadline)."""

    def __init__(self, clock: Clock, timeout: float | None) -> None:
        self._clock = clock
        self._at = None if timeout is None else clock.monotonic() + timeout

    def remaining(self) -> float | None:
        if self._at is None:
            return None
        return max(0.0, self._at - self._clock.monotonic())

    def expired(self) -> bool:
        r = self.remaining()
        return r is not None and r <= 0.0
