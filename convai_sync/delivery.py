"""Delivery policies and the two queued sinks (Convai Unity SDK ``EventDeliveryPolicy``).

* ``IMMEDIATE``: the hub calls the handler on the publishing thread (the session thread).
* ``BACKGROUND``: :class:`BackgroundDispatcher` owns one thread, ``convai-dispatch-<n>``, started
  lazily on first use, that runs handlers in publish order.
* ``MAIN_THREAD``: :class:`MainThreadQueue` holds deliveries until the host calls ``pump()``.

Both queues are bounded and never block the publisher. Each keeps two lanes, merged back into
publish order when delivered (every delivery carries a sequence number):

* the **event lane** (everything but audio), bounded by ``maxsize``: when it is full the *new*
  delivery is dropped and ``on_overflow`` reports it (the hub logs it, counts it and passes an
  ``EventQueueOverflow`` to its error handler);
* the **audio lane** (:class:`~convai_sync.audio.AudioFrame` deliveries), bounded by
  ``audio_maxsize``: when it is full the *oldest* queued audio delivery is dropped to make room
  (stale voice is worth less than fresh voice), and ``on_audio_drop`` reports it. Audio never
  takes room from other events, so no event is ever dropped for audio's sake.

Order: deliveries of one queue run in publish order, audio and other events interleaved exactly
as published; a dropped audio frame simply leaves a gap. :meth:`drop_audio` removes queued audio
at once (barge-in) without touching the other events.
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

from .audio import AudioFrame
from .names import ReadableNames

log = logging.getLogger("convai_sync")

Delivery = tuple[Any, Any]  # (subscription, event)
Deliver = Callable[[Any, Any], None]
#: ``on_audio_drop(policy, dropped_in_burst, burst_over)``: a drop (``burst_over`` False), or the
#: end of a burst of drops (``burst_over`` True: audio is being delivered again).
AudioDropReport = Callable[[str, int, bool], None]

_dispatch_ids = itertools.count(1)


class EventDeliveryPolicy(ReadableNames, enum.Enum):
    """Where a subscription's handler runs."""

    MAIN_THREAD = "main_thread"
    BACKGROUND = "background"
    IMMEDIATE = "immediate"


_Item = tuple[int, Any, Any]  # (sequence, subscription, event)


class _Lanes:
    """The two bounded lanes of one queue.

    The event lane is lock-free (``deque.append``/``popleft`` are atomic): the hot path of a
    text-only session costs what a plain deque costs. The audio lane is small and guarded by a
    lock, because dropping its oldest item and the barge-in filter must not race the consumer.
    Sequence numbers come from ``itertools.count`` (atomic in CPython). One publisher's items
    become visible in publish order, so audio published before an event is visible once that
    event has been popped: :meth:`take` checks the audio lane after popping, and needs no lock
    when no audio is queued. (Deliveries taken by two threads pumping at once have no order
    between them.)
    """

    def __init__(self, policy: str, maxsize: int, audio_maxsize: int,
                 on_overflow: Callable[[str, Any], None], on_audio_drop: AudioDropReport | None) -> None:
        self.policy = policy
        self._maxsize = maxsize
        self._audio_maxsize = audio_maxsize
        self._on_overflow = on_overflow
        self._on_audio_drop = on_audio_drop
        self._events: collections.deque[_Item] = collections.deque()
        self._audio: collections.deque[_Item] = collections.deque()
        self._audio_lock = threading.Lock()
        self._seq = itertools.count()
        self._burst = 0  # audio deliveries dropped since audio was last delivered

    def __len__(self) -> int:
        return len(self._events) + len(self._audio)

    @property
    def audio_pending(self) -> int:
        return len(self._audio)

    def put(self, sub: Any, event: Any) -> bool:
        """Queue one delivery; False when the event lane was full (reported as an overflow)."""
        if isinstance(event, AudioFrame):
            self._put_audio(sub, event)
            return True
        if len(self._events) >= self._maxsize:
            self._on_overflow(self.policy, event)
            return False
        self._events.append((next(self._seq), sub, event))
        return True

    def _put_audio(self, sub: Any, event: AudioFrame) -> None:
        with self._audio_lock:
            dropped = len(self._audio) >= self._audio_maxsize
            if dropped:
                self._audio.popleft()
                self._burst += 1
            burst = self._burst
            self._audio.append((next(self._seq), sub, event))
        if dropped and self._on_audio_drop is not None:
            self._on_audio_drop(self.policy, burst, False)

    def take(self) -> Delivery | None:
        """The oldest queued delivery of both lanes, or None."""
        try:
            item: _Item | None = self._events.popleft()
        except IndexError:
            item = None
        # Checked after the pop: audio published before that event is visible by now.
        if self._audio:
            return self._take_merged(item)
        return None if item is None else (item[1], item[2])

    def _take_merged(self, item: _Item | None) -> Delivery | None:
        burst = 0
        with self._audio_lock:
            audio = self._audio
            if audio and (item is None or audio[0][0] < item[0]):
                if item is not None:
                    self._events.appendleft(item)  # older audio goes first; the event stays at the head
                item = audio.popleft()
                burst, self._burst = self._burst, 0
        if burst and self._on_audio_drop is not None:
            self._on_audio_drop(self.policy, burst, True)
        return None if item is None else (item[1], item[2])

    def drop_audio(self, predicate: Callable[[AudioFrame], bool]) -> int:
        """Remove queued audio deliveries whose frame matches ``predicate``; returns how many."""
        with self._audio_lock:
            audio = self._audio
            kept = [item for item in audio if not predicate(item[2])]
            dropped = len(audio) - len(kept)
            audio.clear()  # in place: the consumers hold a reference to this deque
            audio.extend(kept)
        return dropped

    def clear(self) -> int:
        with self._audio_lock:
            n = len(self)
            self._events.clear()
            self._audio.clear()
        return n


class MainThreadQueue(_Lanes):
    """Bounded two-lane FIFO drained by :meth:`drain` on the host's thread (``client.pump()``)."""

    def __init__(self, maxsize: int, on_overflow: Callable[[str, Any], None], audio_maxsize: int = 500,
                 on_audio_drop: AudioDropReport | None = None) -> None:
        super().__init__(EventDeliveryPolicy.MAIN_THREAD.value, maxsize, audio_maxsize, on_overflow,
                         on_audio_drop)
        self._local = threading.local()
        self._closed = False

    def put(self, sub: Any, event: Any) -> bool:
        if self._closed:
            return False
        return super().put(sub, event)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> int:
        """Deliver nothing more (a later :meth:`drain` returns 0); returns the deliveries dropped."""
        self._closed = True
        return self.clear()

    def drain(self, deliver: Deliver, max_events: int | None) -> int:
        """Deliver queued items on this thread; a re-entrant call, or one after :meth:`close`, returns 0."""
        if self._closed or getattr(self._local, "draining", False):
            return 0
        self._local.draining = True
        count = 0
        popleft, audio, merged = self._events.popleft, self._audio, self._take_merged
        try:
            # take() inlined: this loop is the MAIN_THREAD hot path.
            while max_events is None or count < max_events:
                try:
                    item: _Item | None = popleft()
                except IndexError:
                    item = None
                if audio:
                    pair = merged(item)
                    if pair is None:
                        break
                elif item is None:
                    break
                else:
                    pair = (item[1], item[2])
                if self.closed:  # close() ran on another thread while this one pumped
                    break
                deliver(pair[0], pair[1])
                count += 1
        finally:
            self._local.draining = False
        return count


class BackgroundDispatcher(_Lanes):
    """One named thread delivering BACKGROUND subscriptions in publish order.

    The thread sleeps on a ``SimpleQueue`` of wake-up tokens, put only while it says it is idle
    (it re-checks the lanes after saying so, so no wake-up is lost); a busy dispatcher costs the
    publisher one atomic append per delivery.

    :meth:`close` ends it within its timeout: queued audio is dropped at once, the other queued
    deliveries run until the timeout, and what is left then is dropped; after ``close()`` returns
    no handler starts (one already running finishes; the thread exits right after it). Dropped
    deliveries are counted in :attr:`dropped_at_close`.
    """

    def __init__(self, maxsize: int, deliver: Deliver, on_overflow: Callable[[str, Any], None],
                 audio_maxsize: int = 500, on_audio_drop: AudioDropReport | None = None) -> None:
        super().__init__(EventDeliveryPolicy.BACKGROUND.value, maxsize, audio_maxsize, on_overflow,
                         on_audio_drop)
        self._deliver = deliver
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._idle = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stopping = False
        self._discard = False
        # A delivery starts (``_busy``) and close() stops them (``_discard``) under this lock, so
        # after close() no handler starts; it is never held while a handler runs.
        self._gate = threading.Lock()
        self._busy = False
        #: Deliveries dropped by :meth:`close` (queued audio, and what was left at its deadline).
        self.dropped_at_close = 0

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def put(self, sub: Any, event: Any) -> bool:
        if self._closed:
            log.warning("event %s published after close(); not delivered", type(event).__name__)
            return False
        if self._thread is None:
            self._start()
        queued = super().put(sub, event)
        if self._idle:
            self._wake.put(None)
        return queued

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"convai-dispatch-{next(_dispatch_ids)}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        popleft, audio, merged, deliver = self._events.popleft, self._audio, self._take_merged, self._deliver
        take, wake, gate = self.take, self._wake, self._gate
        while True:
            # take() inlined for the busy case: this loop is the BACKGROUND hot path.
            try:
                item: _Item | None = popleft()
            except IndexError:
                item = None
            pair = merged(item) if audio else (None if item is None else (item[1], item[2]))
            if pair is None:
                self._idle = True
                pair = take()  # anything put before the flag was seen is found here
                if pair is None:
                    if self._stopping:
                        return  # everything queued before close() has been delivered
                    wake.get()
                    self._idle = False
                    continue
                self._idle = False
            with gate:
                if self._discard:  # close() passed its deadline: nothing more is delivered
                    self._count_dropped(1)
                    return
                self._busy = True
            deliver(pair[0], pair[1])
            self._busy = False

    def _count_dropped(self, n: int) -> None:
        with self._audio_lock:
            self.dropped_at_close += n

    def is_dispatch_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def close(self, timeout: float) -> bool:
        """Stop within ``timeout`` seconds (never self-joins): drop queued audio, deliver the other
        queued deliveries until then, drop the rest (see the class docstring).

        Returns False when the thread was still running at the deadline (a handler that had
        not returned; no other handler starts after it).
        """
        with self._lock:
            self._closed = True
            thread = self._thread
        self._count_dropped(self.drop_audio(lambda frame: True))  # stale voice: nobody listens now
        if thread is None:
            self._count_dropped(self.clear())
            return True
        self._stopping = True
        if thread is threading.current_thread():
            timeout = 0.0  # called from a BACKGROUND handler: it cannot wait for itself
        else:
            self._wake.put(None)
            thread.join(timeout)
        with self._gate:
            self._discard = True
            running = self._busy and thread is not threading.current_thread()
        self._wake.put(None)
        self._count_dropped(self.clear())
        if running:
            log.warning("convai-dispatch thread did not stop within %.1f s (a handler is still running; "
                        "no other handler is called after it)", timeout)
            return False
        return True
