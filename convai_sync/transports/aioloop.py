"""A private asyncio event loop on one named thread, for transports whose library is asyncio-only.

Thread ownership: :class:`LoopThread` owns one thread (named by its creator, e.g.
``convai-livekit-<n>``) that runs the loop and everything scheduled on it. Other threads hand work
over with :meth:`LoopThread.submit` (a coroutine; returns a ``concurrent.futures.Future`` to wait
on with a deadline) or :meth:`LoopThread.call_soon` (a plain callback), never by touching loop
objects themselves. The loop stops only when code running on it calls :meth:`LoopThread.stop`
(its owner decides when nothing it started is still in flight); the thread then cancels what is
left, closes the loop and exits. asyncio never leaks out of this module's callers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("convai_sync")

T = TypeVar("T")

#: Seconds the thread gives tasks still pending at stop to finish after they are cancelled.
CANCEL_GRACE = 0.5


class LoopStopped(ConnectionError):
    """The loop thread is not running (never started, or already stopped)."""


class LoopThread:
    """One asyncio loop on one daemon thread named ``name``.

    Not started by the constructor: :meth:`start` creates the loop and the thread.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = False

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self) -> None:
        """Create the loop and start its thread; returns once the loop runs (or raises)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"{self.name} was already started")
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            loop.call_soon(ready.set)
            self._loop = loop
            self._thread = threading.Thread(target=self._run, args=(loop,), name=self.name, daemon=True)
            self._thread.start()
        # A fresh loop thread runs its first callback at once; the bound only guards a wedged process.
        if not ready.wait(10.0):
            raise RuntimeError(f"{self.name} did not start")

    def on_thread(self) -> bool:
        """True when called on the loop thread."""
        return self._thread is threading.current_thread()

    def is_alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop (thread-safe; never blocks).

        Raises:
            LoopStopped: the loop is not running (``coro`` is closed, never run).
        """
        loop = self._loop
        with self._lock:
            if loop is None or self._stopping or loop.is_closed():
                coro.close()
                raise LoopStopped(f"{self.name} is not running")
            try:
                return asyncio.run_coroutine_threadsafe(coro, loop)
            except RuntimeError:  # closed between the check and the call
                coro.close()
                raise LoopStopped(f"{self.name} is not running") from None

    def call_soon(self, fn: Callable[..., object], *args: object) -> bool:
        """Run ``fn(*args)`` on the loop soon (thread-safe); False if the loop is not running."""
        loop = self._loop
        with self._lock:
            if loop is None or self._stopping or loop.is_closed():
                return False
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:
                return False
        return True

    def stop(self) -> None:
        """Stop the loop: called on the loop thread by its owner once nothing is in flight."""
        with self._lock:
            self._stopping = True
            loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread to exit (never joins itself); True if it did."""
        thread = self._thread
        if thread is None:
            return True
        if thread is threading.current_thread():
            return False
        thread.join(max(0.0, timeout))
        return not thread.is_alive()

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            with self._lock:
                self._stopping = True
            try:
                pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=CANCEL_GRACE))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())  # in case a library used it
            except Exception:
                log.exception("%s: cleanup after stop failed", self.name)
            finally:
                with self._lock:
                    loop.close()
