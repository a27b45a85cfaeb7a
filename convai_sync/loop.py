"""The session thread: an inbox of callables plus named timers, waiting only through a clock.

Thread ownership: a :class:`SessionLoop` owns one thread, ``convai-session-<n>``, started by
:meth:`SessionLoop.start` (never in a constructor) and stopped by :meth:`SessionLoop.stop`.
Everything posted runs on that thread, in order; timers fire on it too. The loop sleeps in
``clock.wait_until(wake, next_deadline)`` with an absolute deadline, so a post or a stop
interrupts any wait and a ``FakeClock`` can drive every timer in tests.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
from collections.abc import Callable

from .clock import Clock

log = logging.getLogger("convai_sync")
_ids = itertools.count(1)


class SessionLoop:
    """Runs posted work and timers on one named thread."""

    def __init__(self, clock: Clock, on_start: Callable[[int], None] | None = None,
                 on_exit: Callable[[int], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.clock = clock
        self._on_start = on_start
        self._on_exit = on_exit
        self._on_error = on_error
        self._inbox: collections.deque[Callable[[], None]] = collections.deque()
        self._wake = threading.Event()
        self._timers: dict[str, tuple[float, Callable[[], None]]] = {}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._running = False

    # ---- thread ----

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self) -> None:
        """Start the thread once (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            self._running = True
            self._thread = threading.Thread(target=self._run, name=f"convai-session-{next(_ids)}", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._running

    def on_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop thread (thread-safe, non-blocking)."""
        self._inbox.append(fn)
        # Setting an Event takes its lock and notifies: skip it while a wake-up is pending. The
        # loop clears the flag before it drains the inbox, so an item appended before the flag
        # was seen set is drained by that pass (the flag was set after the clear otherwise).
        if not self._wake.is_set():
            self._wake.set()

    def pending(self) -> int:
        """Work items waiting in the inbox."""
        return len(self._inbox)

    def post_if_running(self, fn: Callable[[], None]) -> bool:
        """Post unless the loop has stopped; False means ``fn`` will never run."""
        with self._lock:
            if not self._running:
                return False
            self.post(fn)
            return True

    def stop(self, timeout: float) -> None:
        """Stop after the work already posted; join within ``timeout`` (never self-joins)."""
        def halt() -> None:
            with self._lock:
                self._running = False
        self.post(halt)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s did not stop within %.1f s", thread.name, timeout)

    def _run(self) -> None:
        ident = threading.get_ident()
        if self._on_start is not None:
            self._on_start(ident)
        try:
            while self._running:
                self.clock.wait_until(self._wake, self._next_deadline())
                self._wake.clear()
                while self._inbox:
                    self._call(self._inbox.popleft())
                self._fire_due()
        finally:
            if self._on_exit is not None:
                self._on_exit(ident)

    def _call(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            log.exception("internal error on the session thread")
            if self._on_error is not None:
                try:
                    self._on_error(exc)  # fail the public calls that would otherwise wait forever
                except Exception:
                    log.exception("internal error while handling an internal error")

    # ---- timers (loop thread only) ----

    def set_timer(self, name: str, delay: float, fn: Callable[[], None]) -> None:
        """(Re)arm timer ``name`` to run ``fn`` after ``delay`` clock seconds."""
        self._timers[name] = (self.clock.monotonic() + max(0.0, delay), fn)

    def cancel_timer(self, *names: str) -> None:
        for name in names:
            self._timers.pop(name, None)

    def cancel_timers(self, prefix: str) -> None:
        for name in [n for n in self._timers if n.startswith(prefix)]:
            del self._timers[name]

    def pop_timer(self, name: str) -> Callable[[], None] | None:
        """Disarm timer ``name`` and return its callback (None if not armed)."""
        entry = self._timers.pop(name, None)
        return None if entry is None else entry[1]

    def _next_deadline(self) -> float | None:
        # Absolute, so a clock advanced between computing and waiting loses nothing.
        if self._inbox:
            return self.clock.monotonic()
        if not self._timers:
            return None
        return min(at for at, _ in self._timers.values())

    def _fire_due(self) -> None:
        now = self.clock.monotonic()
        for _, name in sorted((at, name) for name, (at, _) in self._timers.items() if at <= now):
            entry = self._timers.pop(name, None)
            if entry is not None:
                self._call(entry[1])
