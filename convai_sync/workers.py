"""Short-lived worker threads for blocking network calls, each abortable through its canceller.

The session thread never blocks on the network: ``POST /connect`` with the transport handshake,
and ``POST /disconnect``, run on ``convai-connect-<n>`` / ``convai-http-<n>`` threads started
here. Each worker has a :class:`~convai_sync.netio.Canceller`; whoever owns the deadline (the
session thread's timer, or :meth:`Workers.stop` from ``close()``) aborts it, which wakes the
worker at once.

Thread ownership: :class:`Workers` owns the threads it starts and is the only thing that joins
them; :meth:`Workers.stop` never joins the calling thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable

from .netio import Canceller

log = logging.getLogger("convai_sync")
_ids = itertools.count(1)


class Worker:
    """One running call: its thread, its canceller and a ``done`` event."""

    def __init__(self, name: str, canceller: Canceller) -> None:
        self.name = name
        self.canceller = canceller
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def abort(self, reason: str) -> None:
        self.canceller.abort(reason)


class Workers:
    """Starts, tracks, aborts and joins worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[Worker] = set()

    def start(self, role: str, fn: Callable[[Canceller], None], what: str) -> Worker:
        """Run ``fn(canceller)`` on a new thread named ``convai-<role>-<n>``."""
        worker = Worker(f"convai-{role}-{next(_ids)}", Canceller(what))

        def run() -> None:
            try:
                fn(worker.canceller)
            except Exception:
                log.exception("%s failed", worker.name)
            finally:
                worker.canceller.release()
                with self._lock:
                    self._running.discard(worker)
                worker.done.set()

        thread = threading.Thread(target=run, name=worker.name, daemon=True)
        worker.thread = thread
        with self._lock:
            self._running.add(worker)
        thread.start()
        return worker

    def running(self) -> list[Worker]:
        with self._lock:
            return list(self._running)

    def wait(self, deadline: float, role: str | None = None) -> bool:
        """Wait until the workers (of ``role``) finish or ``deadline`` (monotonic) passes."""
        for worker in self.running():
            if role is not None and not worker.name.startswith(f"convai-{role}-"):
                continue
            if not worker.done.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def stop(self, deadline: float) -> None:
        """Let the workers finish until shortly before ``deadline``, then abort the rest and join
        them by ``deadline`` (an aborted worker wakes at once, but needs a moment to exit)."""
        reserve = min(0.2, max(0.0, deadline - time.monotonic()) * 0.25)
        self.wait(deadline - reserve)
        current = threading.current_thread()
        for worker in self.running():
            worker.abort("the client is closing")
        for worker in self.running():
            thread = worker.thread
            if thread is None or thread is current:
                continue
            thread.join(max(0.05, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s did not exit after being aborted", worker.name)
