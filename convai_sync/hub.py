"""``EventHub``: typed publish/subscribe with per-subscription delivery policy.

Thread rules: subscriber lists are copy-on-write, so ``publish`` takes no lock while handlers
run; no SDK lock is ever held while user code runs; a handler that raises never kills an SDK
thread. Its exception is logged at ERROR with the traceback, counted, passed to the error
handler and published as a :class:`~convai_sync.events.HandlerError`; if the application took
none of those routes and no logging handler would print the record, it goes to
:func:`threading.excepthook` (stderr by default), so a handler bug is never silent and never
printed twice. With ``strict=True`` the first handler exception is re-raised on the caller's
thread at the next :meth:`EventHub.pump`, :meth:`EventHub.wait_for` or :meth:`EventHub.close`.

Subscribing to a type receives its subclasses too (``ServerMessage`` receives every
conversation message).

Audio (:class:`~convai_sync.audio.AudioFrame`) has its own bound in each queue: a host that stops
pumping, or a slow BACKGROUND handler, loses only the **oldest audio frames** (counted per queue in
``stats()["audio_dropped"]``, logged once per burst of drops), never another event, and the
publisher never blocks. :meth:`EventHub.drop_audio` removes queued audio at once (barge-in).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .audio import AudioFrame
from .delivery import BackgroundDispatcher, EventDeliveryPolicy, MainThreadQueue
from .errors import invalid_state, timeout_error
from .events import EventQueueOverflow, HandlerError
from .uncaught import report_uncaught, would_be_logged

log = logging.getLogger("convai_sync")

T = TypeVar("T")
_IMMEDIATE = EventDeliveryPolicy.IMMEDIATE
_BACKGROUND = EventDeliveryPolicy.BACKGROUND
_perf_counter = time.perf_counter
Handler = Callable[[T], Any]
_ids = itertools.count(1)


def _handler_name(handler: Callable[..., Any]) -> str:
    name = getattr(handler, "__qualname__", None) or repr(handler)
    module = getattr(handler, "__module__", None)
    return f"{module}.{name}" if module else str(name)


class Subscription(Generic[T]):
    """A token for one subscription; keep it to unsubscribe (also a context manager).

    Attributes:
        id: Unique id.
        event_type: The payload type subscribed to (subclasses match).
        policy: Where the handler runs.
        active: False once unsubscribed; checked at delivery time, so nothing is delivered after
            :meth:`unsubscribe` returns, except a call already running on another thread.
    """

    __slots__ = ("id", "event_type", "handler", "policy", "active", "once", "_hub")

    def __init__(self, hub: EventHub, event_type: type[T], handler: Handler[T],
                 policy: EventDeliveryPolicy, once: bool) -> None:
        self.id = next(_ids)
        self.event_type = event_type
        self.handler = handler
        self.policy = policy
        self.active = True
        self.once = once
        self._hub = hub

    def unsubscribe(self) -> None:
        """Stop deliveries. Idempotent; safe from any thread, including inside the handler."""
        self._hub.unsubscribe(self)

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        return (f"Subscription(id={self.id}, event_type={self.event_type.__name__}, "
                f"policy={self.policy.name}, active={self.active})")


def _wait_limit(timeout: float | None) -> float | None:
    """Validate a ``wait_for`` timeout; None for "no limit" (``inf`` or beyond what threads take)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, got {type(timeout).__name__}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout!r}")
    return None if timeout >= threading.TIMEOUT_MAX else float(timeout)


class EventHub:
    """Publishes events to subscriptions under their :class:`EventDeliveryPolicy`.

    Args:
        default_policy: Policy of subscriptions that do not name one.
        queue_size: Bound of the MAIN_THREAD and BACKGROUND queues (events other than audio).
        strict: Re-raise handler exceptions on the caller's thread (for tests).
        immediate_budget: Seconds; an IMMEDIATE handler running longer logs a warning.
        audio_queue_size: Bound of the audio frames waiting in each of those queues; beyond it
            the oldest queued audio frame is dropped.
    """

    def __init__(self, default_policy: EventDeliveryPolicy = EventDeliveryPolicy.BACKGROUND,
                 queue_size: int = 10_000, strict: bool = False, immediate_budget: float = 0.02,
                 audio_queue_size: int = 500) -> None:
        self.default_policy = default_policy
        self._strict = strict
        self._budget = immediate_budget
        self._lock = threading.Lock()
        self._subs: tuple[Subscription[Any], ...] = ()
        self._by_type: dict[type, tuple[Subscription[Any], ...]] = {}
        self._main = MainThreadQueue(queue_size, self._overflow, audio_queue_size, self._audio_dropped)
        self._background = BackgroundDispatcher(queue_size, self._deliver, self._overflow, audio_queue_size,
                                                self._audio_dropped)
        self._error_handler: Callable[[HandlerError | EventQueueOverflow], Any] | None = None
        self._pending_error: BaseException | None = None
        self._publisher_threads: set[int] = set()
        self._waiters: set[threading.Event] = set()
        self._closed = False
        self.handler_errors = 0
        self.slow_handlers = 0
        self.overflows: dict[str, int] = {}
        self.audio_dropped: dict[str, int] = {}
        self.published = 0
        self._main_dropped_at_close = 0

    # ---- subscriptions ---------------------------------------------------------------------

    def subscribe(self, event_type: type[T], handler: Handler[T],
                  policy: EventDeliveryPolicy | None = None, *, once: bool = False) -> Subscription[T]:
        """Subscribe ``handler(event)`` to ``event_type`` and its subclasses.

        Args:
            event_type: Payload class, e.g. ``BotText`` or ``ServerMessage``.
            handler: Called with one event object; its return value is ignored.
            policy: Where it runs; default :attr:`default_policy`.
            once: Unsubscribe automatically after the first delivery.

        Returns:
            The :class:`Subscription` token.
        """
        if not isinstance(event_type, type):
            raise TypeError("event_type must be a class, e.g. BotText")
        if not callable(handler):
            raise TypeError("handler must be callable")
        pol = policy if policy is not None else self.default_policy
        if not isinstance(pol, EventDeliveryPolicy):
            raise TypeError("policy must be an EventDeliveryPolicy")
        sub: Subscription[T] = Subscription(self, event_type, handler, pol, once)
        with self._lock:
            self._subs = self._subs + (sub,)
            self._by_type = {}
        return sub

    def once(self, event_type: type[T], handler: Handler[T],
             policy: EventDeliveryPolicy | None = None) -> Subscription[T]:
        """Like :meth:`subscribe`, delivering at most one event."""
        return self.subscribe(event_type, handler, policy, once=True)

    def on(self, event_type: type[T], policy: EventDeliveryPolicy | None = None
           ) -> Callable[[Handler[T]], Handler[T]]:
        """Decorator form: ``@hub.on(BotText)`` subscribes the function and returns it."""
        def register(handler: Handler[T]) -> Handler[T]:
            self.subscribe(event_type, handler, policy)
            return handler
        return register

    def unsubscribe(self, subscription: Subscription[Any]) -> None:
        """Remove a subscription. Idempotent; safe from inside a handler."""
        subscription.active = False
        with self._lock:
            if subscription in self._subs:
                self._subs = tuple(s for s in self._subs if s is not subscription)
                self._by_type = {}

    @property
    def subscription_count(self) -> int:
        """Number of active subscriptions."""
        return len(self._subs)

    def set_error_handler(self, handler: Callable[[HandlerError | EventQueueOverflow], Any] | None) -> None:
        """Receive every :class:`HandlerError` and :class:`EventQueueOverflow` (after logging).

        Args:
            handler: Called with the report on the thread where it happened (the failing
                handler's thread; the publishing thread for an overflow), so it must be quick
                and must not block. None removes it. Setting one counts as taking control of
                handler errors: they are then no longer sent to ``threading.excepthook``. An
                exception it raises is logged (and, with no logging configured, sent to
                ``threading.excepthook``), never propagated.
        """
        self._error_handler = handler

    # ---- publishing ------------------------------------------------------------------------

    def _matching(self, cls: type) -> tuple[Subscription[Any], ...]:
        subs = self._by_type.get(cls)
        if subs is None:
            with self._lock:
                subs = tuple(s for s in self._subs if issubclass(cls, s.event_type))
                self._by_type[cls] = subs
        return subs

    def publish(self, event: object) -> None:
        """Deliver ``event`` to every matching subscription under its policy.

        Never blocks on a queue: a full queue is reported as an overflow instead.
        """
        if self._closed:
            log.warning("event %s published after close(); not delivered", type(event).__name__)
            return
        self.published += 1
        subs = self._by_type.get(type(event))
        if subs is None:
            subs = self._matching(type(event))
        for sub in subs:
            policy = sub.policy
            if policy is _IMMEDIATE:
                # Inlined (hot path): deliver on this thread and time it against the budget.
                if not sub.active:
                    continue
                if sub.once:
                    self.unsubscribe(sub)
                start = _perf_counter()
                try:
                    sub.handler(event)
                except Exception as exc:  # noqa: BLE001 - user code: contain, log, count, report
                    elapsed = _perf_counter() - start
                    self._handler_failed(sub, event, exc)
                else:
                    elapsed = _perf_counter() - start
                if elapsed > self._budget:
                    self._slow(sub, elapsed)
            elif policy is _BACKGROUND:
                self._background.put(sub, event)
            else:
                self._main.put(sub, event)

    def _deliver(self, sub: Subscription[Any], event: object) -> None:
        if not sub.active:
            return
        if sub.once:
            self.unsubscribe(sub)
        try:
            sub.handler(event)
        except Exception as exc:  # noqa: BLE001 - user code: contain, log, count, report
            self._handler_failed(sub, event, exc)

    def _slow(self, sub: Subscription[Any], elapsed: float) -> None:
        self.slow_handlers += 1
        log.warning("IMMEDIATE handler %s took %.1f ms (budget %.1f ms); it runs on the session "
                    "thread, so move slow work to BACKGROUND or MAIN_THREAD",
                    _handler_name(sub.handler), elapsed * 1000, self._budget * 1000)

    def _handler_failed(self, sub: Subscription[Any], event: object, exc: Exception) -> None:
        self.handler_errors += 1
        name = _handler_name(sub.handler)
        log.error("event handler %s raised on %s", name, type(event).__name__, exc_info=exc)
        if self._strict and self._pending_error is None:
            self._pending_error = exc
        report = HandlerError(event=event, handler=name, exception=exc, policy=sub.policy,
                              thread=threading.current_thread().name)
        routed = self._report(report)
        # A HandlerError handler that raises is not published again: that would recurse.
        if not isinstance(event, HandlerError) and not self._closed:
            # Only a subscription to HandlerError itself takes control; a catch-all ``object``
            # subscriber receives the report but is not deemed to have handled it.
            routed = any(issubclass(s.event_type, HandlerError) for s in self._subs) or routed
            self.publish(report)
        if not routed and not self._strict:
            self._unseen(exc)

    @staticmethod
    def _unseen(exc: BaseException) -> None:
        """Send ``exc`` to ``threading.excepthook`` unless the ERROR record just logged shows."""
        if not would_be_logged(log, logging.ERROR):
            report_uncaught(exc)

    def _overflow(self, policy: str, event: object) -> None:
        self.overflows[policy] = self.overflows.get(policy, 0) + 1
        log.warning("%s event queue full: dropped %s (total dropped: %d); pump more often or raise "
                    "ConvaiConfig.event_queue_size", policy, type(event).__name__, self.overflows[policy])
        self._report(EventQueueOverflow(policy=policy, dropped=self.overflows[policy], event=event))

    def _audio_dropped(self, policy: str, burst: int, burst_over: bool) -> None:
        if burst_over:
            log.info("%s audio queue: delivering again after dropping %d audio frame(s)", policy, burst)
            return
        self.audio_dropped[policy] = self.audio_dropped.get(policy, 0) + 1
        if burst == 1:
            log.warning("%s audio queue full: dropping the oldest audio frames until they are delivered "
                        "again (pump more often, or raise ConvaiConfig.audio_queue_frames); total dropped: %d",
                        policy, self.audio_dropped[policy])

    def drop_audio(self, predicate: Callable[[AudioFrame], bool] | None = None) -> int:
        """Remove queued, undelivered audio frames (``predicate(frame)`` true; all when None) from
        the MAIN_THREAD and BACKGROUND queues at once; other events stay. Returns how many.

        ``predicate`` runs with a queue lock held: it must be quick and must not call the hub.
        """
        match = predicate if predicate is not None else (lambda frame: True)
        return self._main.drop_audio(match) + self._background.drop_audio(match)

    def _report(self, item: HandlerError | EventQueueOverflow) -> bool:
        """Pass ``item`` to the error handler; True when one is set (even if it raised)."""
        handler = self._error_handler
        if handler is None:
            return False
        try:
            handler(item)
        except Exception as exc:
            log.error("hub error handler %s raised", _handler_name(handler), exc_info=exc)
            self._unseen(exc)
        return True

    # ---- host-side calls -------------------------------------------------------------------

    def pump(self, max_events: int | None = None) -> int:
        """Deliver queued MAIN_THREAD events on the calling thread (the host's tick hook).

        Args:
            max_events: At most this many; None drains the queue.

        Returns:
            Events delivered; 0 for a re-entrant call from inside a MAIN_THREAD handler.

        Raises:
            Exception: with ``strict=True``, the first handler exception since the last check.
        """
        n = self._main.drain(self._deliver, max_events)
        self.raise_pending()
        return n

    @property
    def pending(self) -> int:
        """MAIN_THREAD deliveries waiting for ``pump()``."""
        return len(self._main)

    def raise_pending(self) -> None:
        """Re-raise (once) a handler exception recorded under ``strict=True``."""
        exc, self._pending_error = self._pending_error, None
        if exc is not None:
            raise exc

    def mark_publisher_thread(self, ident: int, active: bool = True) -> None:
        """Register a thread that publishes (a blocking wait on it would deadlock)."""
        if active:
            self._publisher_threads.add(ident)
        else:
            self._publisher_threads.discard(ident)

    def on_publisher_thread(self) -> bool:
        return threading.get_ident() in self._publisher_threads

    def wait_for(self, event_type: type[T], predicate: Callable[[T], bool] | None = None,
                 timeout: float | None = 10.0) -> T:
        """Block until an event of ``event_type`` (matching ``predicate``) is published.

        Delivery uses an internal IMMEDIATE subscription, so it completes under every policy
        without ``pump()``. Only events published after the call are seen.

        Args:
            event_type: Payload class to wait for (subclasses match).
            predicate: Called on the publishing thread with each candidate; must be quick.
            timeout: Seconds (>= 0) measured from the call; None or ``inf`` waits until the
                event or ``close()``.

        Returns:
            The first matching event.

        Raises:
            ValueError: ``timeout`` is negative or NaN. TypeError: it is not a number.
            InvalidStateError: called on the publishing (session) thread, which would deadlock,
                or the hub closed while waiting.
            ConvaiTimeoutError: nothing matched within ``timeout`` seconds (``connection.timeout``;
                also a ``TimeoutError``).
            Exception: with ``strict=True``, a handler exception not yet re-raised.
        """
        limit = _wait_limit(timeout)
        if self.on_publisher_thread():
            raise invalid_state("wait_for() called on the session thread (from an IMMEDIATE "
                                "handler); it would wait for itself")
        self.raise_pending()
        if self._closed:
            raise invalid_state("wait_for() on a closed client")
        done = threading.Event()
        box: list[T] = []

        def catch(event: T) -> None:
            if done.is_set() or (predicate is not None and not predicate(event)):
                return
            box.append(event)
            done.set()

        sub = self.subscribe(event_type, catch, EventDeliveryPolicy.IMMEDIATE)
        self._waiters.add(done)
        try:
            if not done.wait(limit):
                matching = " matching the predicate" if predicate is not None else ""
                raise timeout_error(f"No {event_type.__name__} event{matching} arrived within {timeout} s.")
        finally:
            self._waiters.discard(done)
            sub.unsubscribe()
        self.raise_pending()
        if not box:
            raise invalid_state(f"the client closed while waiting for {event_type.__name__}")
        return box[0]

    def is_dispatch_thread(self) -> bool:
        return self._background.is_dispatch_thread()

    @property
    def dispatch_thread(self) -> threading.Thread | None:
        return self._background.thread

    def close(self, timeout: float = 5.0) -> None:
        """Stop delivering, within ``timeout`` seconds; wake every ``wait_for`` (they raise
        ``InvalidStateError``).

        Queued audio frames are dropped at once; other queued BACKGROUND deliveries run until
        ``timeout``, and what is left then is dropped; queued MAIN_THREAD deliveries are dropped
        (a later ``pump()`` delivers nothing). After it returns no handler is called (one that
        is already running finishes). Dropped deliveries are counted in
        ``stats()["dropped_at_close"]`` and logged in one line.
        """
        self._closed = True
        for waiter in list(self._waiters):
            waiter.set()
        background = self._background
        self._background.close(timeout)
        main = self._main.close()
        self._main_dropped_at_close += main
        if background.dropped_at_close or main:
            log.info("%d queued event deliveries dropped at close (BACKGROUND: %d, MAIN_THREAD: %d); "
                     "no handler is called after close()", background.dropped_at_close + main,
                     background.dropped_at_close, main)
        self.raise_pending()

    def stats(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "subscriptions": self.subscription_count,
            "handler_errors": self.handler_errors,
            "slow_immediate_handlers": self.slow_handlers,
            "overflows": dict(self.overflows),
            "audio_dropped": dict(self.audio_dropped),
            "main_thread_pending": self.pending,
            "audio_pending": self._main.audio_pending + self._background.audio_pending,
            "dropped_at_close": self._background.dropped_at_close + self._main_dropped_at_close,
        }
