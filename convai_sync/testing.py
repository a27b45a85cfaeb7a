"""Test doubles shipped with the SDK (like httpx's ``MockTransport``).

* :class:`FakeClock`: a virtual clock. The session waits only through its clock, so a test
  calls :meth:`FakeClock.advance` to run backoff delays and timers in zero wall time, and reads
  :attr:`FakeClock.waits` / ``client.diagnostics()["retry_delays"]`` to assert the schedule.
* :class:`~convai_sync.transports.memory.MemoryTransport` / ``MemoryServer``: a transport pair.
* :class:`Recorder`: a thread-safe handler that records events and lets a test wait for them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .transports.memory import MemoryServer, MemoryTransport

T = TypeVar("T")

__all__ = ["FakeClock", "MemoryServer", "MemoryTransport", "Recorder"]


class FakeClock:
    """Virtual monotonic time; waits end only when :meth:`advance` passes their deadline
    (or their event is set)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Condition()
        self._waiters: list[tuple[float, threading.Event]] = []
        self.waits: list[float | None] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        with self._lock:
            deadline = None if timeout is None else self._now + timeout
        return self.wait_until(event, deadline)

    def wait_until(self, event: threading.Event, deadline: float | None) -> bool:
        """Block until ``event`` is set or :meth:`advance` reaches ``deadline`` (absolute)."""
        if event.is_set():
            return True
        with self._lock:
            self.waits.append(None if deadline is None else deadline - self._now)
            if deadline is not None and deadline <= self._now:
                return event.is_set()
            entry = (deadline if deadline is not None else float("inf"), event)
            self._waiters.append(entry)
            self._lock.notify_all()
        try:
            event.wait()  # woken by a real set() or by advance() past the deadline
        finally:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)
        return True

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every wait whose deadline has passed."""
        with self._lock:
            self._now += seconds
            due = [e for (at, e) in self._waiters if at <= self._now]
        for event in due:
            event.set()

    def wait_for_sleeper(self, timeout: float = 5.0) -> None:
        """Block (really) until some thread is waiting on this clock."""
        with self._lock:
            if not self._lock.wait_for(lambda: any(not e.is_set() for _, e in self._waiters), timeout):
                raise TimeoutError("nothing is waiting on the FakeClock")


class Recorder(Generic[T]):
    """A handler that records every event it gets; ``wait(n)`` blocks until it has ``n``.

    ``events`` and ``threads`` (the name of the thread each event arrived on) grow together; a
    ``predicate`` keeps only the events it returns True for. Any thread may call it. Give the type
    of what it records: ``client.events.on_bot_text.subscribe(rec := Recorder[BotText]())``; a bare
    ``Recorder()`` passed straight to ``subscribe`` is ``Recorder[Never]`` to mypy.
    """

    def __init__(self, predicate: Callable[[T], bool] | None = None) -> None:
        self.events: list[T] = []
        self.threads: list[str] = []
        self._predicate = predicate
        self._cond = threading.Condition()

    def __call__(self, event: T) -> None:
        if self._predicate is not None and not self._predicate(event):
            return
        with self._cond:
            self.events.append(event)
            self.threads.append(threading.current_thread().name)
            self._cond.notify_all()

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[T]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.events) >= count, timeout):
                raise TimeoutError(f"Only {len(self.events)} of {count} events arrived within {timeout} s.")
            return list(self.events)

    def __len__(self) -> int:
        with self._cond:
            return len(self.events)

    def of(self, cls: type[Any]) -> list[Any]:
        with self._cond:
            return [e for e in self.events if isinstance(e, cls)]
