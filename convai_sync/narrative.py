"""Narrative design: the current section (from ``behavior-tree-response``) and triggers held until
the character is ready (Convai "Narrative design"; Convai's Unity SDK queues ``trigger-message``
until the session is open and sends them in order).

Thread notes: :class:`NarrativeState` is written on the session thread only (``observe``) and read
anywhere. :class:`TriggerQueue` is called from user threads (``send``) and from the session thread
on every state change (``state_changed``); its lock keeps the queue and the flush in one order with
direct sends, and is never held while user code runs (the sends it makes never block).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from . import events as ev
from .errors import ConvaiError, ErrorCode, SendQueueFullError, SessionError, error_for, timeout_error
from .replies import Deadline
from .state import SessionState

log = logging.getLogger("convai_sync")


class NarrativeState:
    """The character's current narrative section (``client.narrative_section_id``)."""

    def __init__(self) -> None:
        self.section_id: str | None = None

    def observe(self, event: object) -> ev.NarrativeSectionChanged | None:
        """Session thread: a ``behavior-tree-response`` with a section id gives the event to publish."""
        if not isinstance(event, ev.BehaviorTreeResponse) or not event.narrative_section_id:
            return None
        previous, self.section_id = self.section_id, event.narrative_section_id
        return ev.NarrativeSectionChanged(section_id=event.narrative_section_id, previous_section_id=previous,
                                          bt_code=event.bt_code, bt_constants=event.bt_constants)


#: Sends a ``trigger-message`` now: ``send(frame, wait)`` returns its ack future (``wait``) or None.
SendNow = Callable[[tuple[str, str], bool], "Future[ev.ServerResponse] | None"]
#: Waits for an ack future at most the given seconds; raises on an error ack or a timeout.
AwaitAck = Callable[["Future[ev.ServerResponse]", "float | None"], ev.ServerResponse]


@dataclass
class _Held:
    frame: tuple[str, str]
    label: str
    wait: bool
    sent: Future[Future[ev.ServerResponse] | None] = field(default_factory=Future)


class TriggerQueue:
    """Holds ``trigger-message``\\ s sent before ``bot-ready`` and sends them in order once the session
    is CONNECTED (see the module docstring).

    Args:
        limit: Triggers held at most (``ConvaiConfig.pending_trigger_limit``).
        send_now: Writes one trigger to the transport (registers its reply and ack in wire order).
        await_ack: Waits for an ack future at most the given seconds (raises on an error ack).
        publish_error: Publishes a :class:`SessionError` (the session thread's ``on_session_error``).
    """

    def __init__(self, limit: int, send_now: SendNow, await_ack: AwaitAck,
                 publish_error: Callable[[SessionError], None]) -> None:
        self._limit = limit
        self._send_now = send_now
        self._await_ack = await_ack
        self._publish_error = publish_error
        self._lock = threading.Lock()
        self._held: collections.deque[_Held] = collections.deque()
        self._ready = False
        self.stats = {"held": 0, "flushed": 0, "dropped": 0}

    @property
    def pending(self) -> int:
        """Triggers waiting for the character to be ready."""
        with self._lock:
            return len(self._held)

    def send(self, frame: tuple[str, str], label: str, state: Callable[[], SessionState], wait: bool,
             timeout: float | None) -> ev.ServerResponse | None:
        """Send now when CONNECTED, else hold it while CONNECTING/RECONNECTING (caller's thread).

        ``state()`` is read under the lock, so a state change's hook (which takes it too) comes
        wholly before or after this call. Returns None (fire-and-forget), or with ``wait`` the ack
        (for a held trigger: once it was sent and acknowledged, all within ``timeout`` seconds).

        Raises:
            SendQueueFullError: ``limit`` triggers are already held.
            ConvaiTimeoutError: ``wait`` and no ack within ``timeout``.
            ConvaiError: the session ended before the held trigger was sent, or the send failed.
        """
        deadline = Deadline(timeout)
        with self._lock:
            # Behind held triggers even when CONNECTED: the flush is about to run on the session thread.
            now = state()
            if not self._held and (self._ready or now not in (SessionState.CONNECTING, SessionState.RECONNECTING)):
                held = None
                ack = self._send_now(frame, wait)
            else:
                if len(self._held) >= self._limit:
                    raise SendQueueFullError(SessionError.of(
                        ErrorCode.SESSION_INVALID_STATE,
                        f"trigger {label} not queued: {self._limit} triggers already wait for the character to be "
                        "ready (ConvaiConfig.pending_trigger_limit)"))
                held = _Held(frame, label, wait)
                self._held.append(held)
                self.stats["held"] += 1
                log.info("trigger %s held until the character is ready (%d waiting)", label, len(self._held))
        if held is not None:
            if not wait:
                return None
            try:
                ack = held.sent.result(deadline.remaining())
            except FutureTimeout:
                raise timeout_error(f"trigger {label} was not sent within {timeout} s (the character was not "
                                    "ready)") from None
        if ack is None:
            return None
        return self._await_ack(ack, deadline.remaining())

    def state_changed(self, new: SessionState) -> None:
        """Session thread, on every state change: flush when CONNECTED, drop when the session ends."""
        if new is SessionState.CONNECTED:
            self._flush()
        elif new in (SessionState.DISCONNECTED, SessionState.ERROR, SessionState.DISCONNECTING):
            self._drop(new)
        else:
            with self._lock:
                self._ready = False

    def _flush(self) -> None:
        with self._lock:
            while self._held:
                held = self._held.popleft()
                try:
                    ack = self._send_now(held.frame, held.wait)
                except ConvaiError as exc:
                    log.warning("held trigger %s not sent: %s", held.label, exc)
                    held.sent.set_exception(exc)
                    continue
                self.stats["flushed"] += 1
                held.sent.set_result(ack)
            self._ready = True

    def _drop(self, new: SessionState) -> None:
        with self._lock:
            self._ready = False
            dropped = list(self._held)
            self._held.clear()
            self.stats["dropped"] += len(dropped)
        if not dropped:
            return
        labels = ", ".join(h.label for h in dropped)
        error = SessionError.of(ErrorCode.SESSION_INVALID_STATE,
                                f"{len(dropped)} trigger(s) not sent ({labels}): the session ended ({new.name}) "
                                "before the character was ready")
        log.warning("%s", error.message)
        for held in dropped:
            held.sent.set_exception(error_for(error))
        self._publish_error(error)
