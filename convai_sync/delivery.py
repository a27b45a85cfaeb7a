"""Delivery policies and the two queued sinks (Convai Unity ``EventDeliveryPolicy``; seed 002).

* ``IMMEDIATE``: the hub calls the handler on the publishing thread (the session thread).
* ``BACKGROUND``: :class:`BackgroundDispatcher` owns one thread, ``convai-dispatch-<n>``, started
  lazily on first use, that runs handlers in publish order.
* ``MAIN_THREAD``: :class:`MainThreadQueue` holds deliveries until the host calls ``pump()``.

Both queues are bounded and never block the publisher: when full, the delivery is dropped and
the ``on_overflow`` callback reports it (the hub logs it, counts it and passes an
``EventQueueOverflow`` to its error handler), so a host that stops pumping loses nothing
silently and can never stall the session thread.
"""

from __future__ import annotations

import collections
import enum
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("convai_sync")

Delivery = tuple[Any, Any]  # (subscription, event)
Deliver = Callable[[Any, Any], None]

_dispatch_ids = itertools.count(1)


class EventDeliveryPolicy(enum.Enum):
    """Where a subscription's handler runs."""

    MAIN_THREAD = "main_thread"
    BACKGROUND = "background"
    IMMEDIATE = "immediate"


class MainThreadQueue:
    """Bounded FIFO drained by :meth:`drain` on the host's thread (``client.pump()``)."""

    def __init__(self, maxsize: int, on_overflow: Callable[[str, Any], None]) -> None:
        self._items: collections.deque[Delivery] = collections.deque()
        self._maxsize = maxsize
        self._on_overflow = on_overflow
        self._local = threading.local()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Delivery) -> None:
        # deque.append/popleft are atomic, so publisher and pumper need no lock.
        if len(self._items) >= self._maxsize:
            self._on_overflow(EventDeliveryPolicy.MAIN_THREAD.value, item[1])
            return
        self._items.append(item)

    def drain(self, deliver: Deliver, max_events: int | None) -> int:
        """Deliver queued items on this thread; a re-entrant call returns 0."""
        if getattr(self._local, "draining", False):
            return 0
        self._local.draining = True
        count = 0
        popleft = self._items.popleft
        try:
            while max_events is None or count < max_events:
                try:
                    sub, event = popleft()
                except IndexError:
                    break
                deliver(sub, event)
                count += 1
        finally:
            self._local.draining = False
        return count

    def clear(self) -> int:
        n = len(self._items)
        self._items.clear()
        return n


_STOP = object()


class BackgroundDispatcher:
    """One named thread delivering BACKGROUND subscriptions in publish order."""

    def __init__(self, maxsize: int, deliver: Deliver, on_overflow: Callable[[str, Any], None]) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._maxsize = maxsize
        self._deliver = deliver
        self._on_overflow = on_overflow
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def put(self, item: Delivery) -> None:
        if self._closed:
            log.warning("event %s published after close(); not delivered", type(item[1]).__name__)
            return
        if self._thread is None:
            self._start()
        if self._queue.qsize() >= self._maxsize:
            self._on_overflow(EventDeliveryPolicy.BACKGROUND.value, item[1])
            return
        self._queue.put(item)

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"convai-dispatch-{next(_dispatch_ids)}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        get = self._queue.get
        deliver = self._deliver
        while True:
            item = get()
            if item is _STOP:
                return
            deliver(item[0], item[1])

    def is_dispatch_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def close(self, timeout: float) -> bool:
        """Stop after queued deliveries; join within ``timeout`` (never self-joins).

        Returns False when the thread was still running at the deadline.
        """
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            return True
        self._queue.put(_STOP)
        if thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("convai-dispatch thread did not stop within %.1f s (a handler is still running)",
                        timeout)
            return False
        return True
