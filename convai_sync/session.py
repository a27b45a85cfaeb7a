"""One session's lifecycle: the state machine, connect attempts and retries, reconnects.

Thread ownership (one owner per piece of state):

* ``convai-session-<n>`` (the :class:`~convai_sync.loop.SessionLoop`) owns the session state:
  ``state``, the current transport, timers, attempt bookkeeping, and every ``publish``. It is
  started by the first ``connect()`` (never in the constructor) and stopped by ``close()``. It
  never blocks on the network.
* ``convai-connect-<n>`` / ``convai-http-<n>`` workers (:mod:`~convai_sync.workers`) run the
  blocking HTTP and handshake of one connect attempt, or one ``POST /disconnect``; each is
  aborted through its canceller by the session thread's deadline timer or by ``close()``.
* The transport's reader thread decodes frames and completes acknowledgements and ``ask()``
  replies directly (the :class:`~convai_sync.turns.AckTracker` and
  :class:`~convai_sync.turns.TurnTracker` own their own locks), then hands every event to the
  session thread, which changes state and publishes it. A waiting caller thus wakes one thread
  hand-off after its answer arrives. The character's voice takes the same path through the
  :class:`~convai_sync.voice.VoiceTracker`, which tags each frame with its turn in wire order.
* User threads post commands to the session inbox and wait on futures with deadlines; sends go
  straight to the thread-safe, non-blocking transport.

All waiting goes through the injected :class:`~convai_sync.clock.Clock`: backoff delays,
connect deadlines, duration caps, idle deadlines and keepalive ticks are timers in the loop, so a
stop request interrupts any of them and tests drive them with a ``FakeClock``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from . import events as ev
from .attempts import AttemptResult, AttemptRunner
from .clock import Clock
from .closes import CloseOutcome, classify_close
from .config import ConvaiConfig
from .connect import ConnectService, Endpoint
from .disconnect import DisconnectReason
from .errors import ConvaiError, ErrorCode, SessionError, SessionErrorStage, error_for
from .hub import EventHub
from .lipsync_feed import LipSyncFeed
from .listener import AttemptListener
from .loop import SessionLoop
from .narrative import NarrativeState
from .netio import Canceller
from .state import SessionState, check_transition
from .timers import SessionTimers
from .transports.base import Transport, TransportClosed
from .transports.ice import no_ice_candidate_hint
from .turns import AckTracker, TurnTracker
from .voice import VoiceTracker
from .workers import Worker, Workers

log = logging.getLogger("convai_sync")

S = SessionState

class PipelineSessionError(SessionError):
    """A :class:`SessionError` from the server's processing pipeline (RTVI ``error``).

    Delivered on ``on_pipeline_error`` and, being a ``SessionError``, on ``on_session_error``.
    """


class Session:
    """The session runtime behind :class:`~convai_sync.ConvaiClient` (internal)."""

    def __init__(self, config: ConvaiConfig, hub: EventHub, clock: Clock,
                 transport_factory: Callable[[], Transport],
                 api: ConnectService) -> None:
        self._config = config
        self._hub = hub
        self._api = api
        self.acks = AckTracker()
        self.turns = TurnTracker(clock.monotonic)
        self.narrative = NarrativeState()
        #: Called on the session thread after every state change (e.g. the trigger queue's flush).
        self.state_hooks: list[Callable[[SessionState], None]] = []
        # -- state owned by the session thread (read-only elsewhere) --
        self.state = S.DISCONNECTED
        self.session_id: str | None = None
        self.character_session_id: str | None = config.character_session_id
        self.bot_ready = False
        self.last_error: SessionError | None = None
        self.last_disconnect_reason: DisconnectReason | None = None
        self.transport: Transport | None = None
        self._listener: AttemptListener | None = None
        self._endpoint: Endpoint | None = None
        self._attempt_id = 0
        self._attempt: Worker | None = None
        self._phase = "connect"
        self._attempts = 0  # attempts in the current connect/reconnect phase
        self._slot_waited = 0.0
        self._slot_attempts = 0
        self._drop_reason = DisconnectReason.UNKNOWN_REASON
        self._resuming = False  # reconnect attempt 1 is the transport's own link recovery (LiveKit)
        self._final: tuple[DisconnectReason, SessionError] | None = None  # why the session is in ERROR
        self._pending_fatal: SessionError | None = None
        self._early_events: list[object] = []
        self._early_close: TransportClosed | None = None
        self._waiters: list[Future[None]] = []
        self._disconnect_waiters: list[Future[None]] = []
        self.stats: dict[str, Any] = {
            "connect_attempts": 0, "reconnect_attempts": 0, "reconnects": 0, "retry_delays": [],
            "frames_received": 0, "frames_sent": 0, "frames_dropped": 0, "frames_unsent": 0,
            "protocol_errors": 0, "slot_waits": 0, "internal_errors": 0, "keepalive_timeouts": 0,
            "transport_resumes": 0,
        }
        self._loop = SessionLoop(clock, on_start=hub.mark_publisher_thread,
                                 on_exit=lambda ident: hub.mark_publisher_thread(ident, active=False),
                                 on_error=self._internal_error)
        self.voice = VoiceTracker(hub, self.turns, self._loop.post, self._loop.set_timer,
                                  enabled=config.receive_audio, tts_enabled=config.tts_enabled)
        self.lipsync = LipSyncFeed(config.blendshape_config, self.turns, self.voice.turn_for_frames,
                                   lambda timeline: self._loop.post(lambda: hub.publish(timeline)))
        self.voice.interrupt_hooks.append(self.lipsync.interrupt)
        self._workers = Workers()
        self._runner = AttemptRunner(config, api, transport_factory, self._workers)
        self._releases = 0
        self.timers = SessionTimers(self._loop, hub, config, self.cmd_end, lambda: self.transport, self.stats)

    # ================================================================ thread plumbing

    def ensure_started(self) -> None:
        self._loop.start()

    @property
    def thread(self) -> Any:
        return self._loop.thread

    def on_session_thread(self) -> bool:
        return self._loop.on_thread()

    @property
    def running(self) -> bool:
        """True while the session thread accepts work."""
        return self._loop.running

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the session thread (thread-safe, non-blocking)."""
        self._loop.post(fn)

    def inbox_pending(self) -> int:
        """Events waiting for the session thread (the voice's own bounded inbox not counted)."""
        return self._loop.pending() - self.voice.inbox_pending

    @property
    def audio_routing(self) -> str:
        return self._config.audio_routing

    @property
    def idle_deadline_armed(self) -> bool:
        """Read by senders: only then is ``note_activity`` worth a thread hand-off."""
        return self.timers.idle_deadline_armed

    def stop(self, deadline: float, then: tuple[Callable[[], None], ...] = ()) -> None:
        """Stop the session thread, let workers finish until ``deadline`` (monotonic) and abort
        the rest, then run ``then``. Never joins the calling thread: called on the session thread
        (from an IMMEDIATE handler), all of it runs there after the work already posted."""
        if self.on_session_thread():
            self.post(lambda: self._workers.stop(deadline))
            for fn in then:
                self.post(fn)
            self._loop.stop(0.0)
            return
        self._loop.stop(max(0.0, deadline - time.monotonic()))
        self._workers.stop(deadline)
        for fn in then:
            fn()

    def wait_workers(self, deadline: float) -> bool:
        """Wait (until ``deadline``) for the workers in flight (an aborted connect attempt, a
        ``POST /disconnect``); True if all ended."""
        return self._workers.wait(deadline)

    # ================================================================ state & publishing

    def _set_state(self, new: SessionState, error: SessionError | None = None) -> None:
        old = self.state
        if old is new:
            return
        check_transition(old, new)
        self.state = new
        log.info("session state %s -> %s%s", old.name, new.name,
                 f" ({error.error_code.value})" if error is not None else "")
        self._hub.publish(ev.SessionStateChanged(old_state=old, new_state=new, session_id=self.session_id,
                                                 error=error if new is S.ERROR else None))
        for hook in self.state_hooks:
            hook(new)

    def _publish_error(self, error: SessionError) -> None:
        if error is self.last_error:
            return  # already published (e.g. a fatal error followed by the server's close)
        self.last_error = error
        log.warning("session error %s: %s", error.error_code.value, error.message)
        self._hub.publish(error)

    def _err(self, code: ErrorCode, message: str | None = None, **kw: Any) -> SessionError:
        return SessionError.of(code, message, session_id=self.session_id, **kw)

    def _resolve_waiters(self, error: ConvaiError | None) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if fut.done():
                continue
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

    def _fail_pending(self, error: SessionError) -> None:
        exc = error_for(error)
        self.acks.fail_all(exc)
        self.turns.fail_all(exc)

    def _internal_error(self, exc: BaseException) -> None:
        """An unexpected exception on the session thread: no public call may be left waiting."""
        self.stats["internal_errors"] += 1
        error = self._err(ErrorCode.CONNECTION_FAILED,
                          f"internal error on the SDK thread: {type(exc).__name__}: {exc} (please report it)",
                          exception=exc, is_recoverable=False)
        try:
            self._publish_error(error)
            self._fail_pending(error)
            if self.state in (S.CONNECTING, S.RECONNECTING):
                self._attempt_id += 1
                self._abort_attempt("internal error")
                self._teardown_link(notify_server=True)
                self._fail_connect(error)
            elif self.state is S.DISCONNECTING:
                self._finish_disconnect(DisconnectReason.CLIENT_INITIATED, error, pending=error)
        finally:
            self._resolve_waiters(error_for(error))
            self._resolve_disconnect_waiters()

    # ================================================================ commands

    def cmd_connect(self, fut: Future[None], resume: bool = True) -> None:
        state = self.state
        if state is S.CONNECTED:
            fut.set_result(None)
        elif state in (S.CONNECTING, S.RECONNECTING):
            self._waiters.append(fut)
        elif state is S.DISCONNECTED:
            self._waiters.append(fut)
            if not resume:
                self.character_session_id = None
            self._begin("connect")
        else:
            msg = (f"connect() refused: the session is in ERROR ({self._final_code()}); call disconnect() "
                   "to reset it, then connect()" if state is S.ERROR
                   else f"connect() refused while {state.name}")
            fut.set_exception(error_for(self._err(ErrorCode.SESSION_INVALID_STATE, msg)))

    def _final_code(self) -> str:
        return self._final[1].error_code.value if self._final is not None else "unknown"

    def cmd_reconnect(self, fut: Future[None]) -> None:
        state = self.state
        if state in (S.CONNECTING, S.DISCONNECTING):
            fut.set_exception(error_for(self._err(ErrorCode.SESSION_INVALID_STATE,
                                                  f"reconnect() refused while {state.name}")))
            return
        if state is S.RECONNECTING:
            self._waiters.append(fut)
            return
        if state is S.ERROR:
            self._finish_disconnect(*self._reset_cause())
        if self.state is S.DISCONNECTED:
            self.cmd_connect(fut)
            return
        # CONNECTED: drop the link on purpose and restore it through the reconnect path. Close the
        # transport before failing what is pending: a send racing with this then either registered
        # its ack in time to be failed here, or finds the transport closed and is reported as not
        # sent; it can never wait on into the new link and take another message's ack.
        self._waiters.append(fut)
        self._teardown_link(notify_server=True)
        self._fail_pending(self._err(ErrorCode.SESSION_CANCELLED, "reconnect() requested"))
        self._start_reconnect(DisconnectReason.CLIENT_INITIATED, None, user=True)

    def _reset_cause(self) -> tuple[DisconnectReason, SessionError | None]:
        """The reason and error an ERROR session reports when it is reset to DISCONNECTED."""
        if self._final is None:
            return DisconnectReason.CLIENT_INITIATED, None
        return self._final

    def cmd_disconnect(self, fut: Future[None] | None) -> None:
        state = self.state
        if state is S.DISCONNECTED:
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        if fut is not None:
            self._disconnect_waiters.append(fut)
        if state is S.ERROR:
            self._finish_disconnect(*self._reset_cause())
            return
        if state is S.DISCONNECTING:
            return
        cancelled = state in (S.CONNECTING, S.RECONNECTING)
        self._set_state(S.DISCONNECTING)
        self._attempt_id += 1  # late results of an in-flight attempt are discarded
        self._abort_attempt("disconnect() called")
        self._loop.cancel_timers("attempt")
        error = None
        if cancelled:
            error = self._err(ErrorCode.SESSION_CANCELLED, "connect cancelled by disconnect()")
            self._publish_error(error)
            self._resolve_waiters(error_for(error))
        self._teardown_link(notify_server=True)
        self._finish_disconnect(DisconnectReason.CLIENT_INITIATED, None,
                                pending=error or self._err(ErrorCode.SESSION_CANCELLED,
                                                          "session disconnected by the application"))

    def cmd_end(self, code: ErrorCode, message: str) -> None:
        """End a CONNECTED session on purpose with a client-side cause (duration cap)."""
        if self.state is not S.CONNECTED:
            return
        error = self._err(code, message)
        self._publish_error(error)
        self._set_state(S.DISCONNECTING)
        self._teardown_link(notify_server=True)
        self._finish_disconnect(DisconnectReason.CLIENT_INITIATED, error, pending=error)

    def note_activity(self) -> None:
        """Any client message resets the server's idle timer; mirror it locally."""
        self.timers.note_activity()

    # ================================================================ connect attempts

    def _begin(self, phase: str) -> None:
        self._phase = phase
        self._attempts = 0
        self._slot_waited = 0.0
        self._slot_attempts = 0
        self._pending_fatal = None
        self._final = None
        if phase == "connect":
            self._set_state(S.CONNECTING)
            self.stats["retry_delays"] = []
            self._schedule_attempt(self._config.retry_policy.delay_before(1))

    def _schedule_attempt(self, delay: float) -> None:
        self.stats["retry_delays"].append(delay)
        self._loop.set_timer("attempt", delay, self._start_attempt)

    def _start_attempt(self) -> None:
        if self.state not in (S.CONNECTING, S.RECONNECTING):
            return
        self._attempts += 1
        self._attempt_id += 1
        self._resuming = False
        attempt_id = self._attempt_id
        key = "reconnect_attempts" if self._phase == "reconnect" else "connect_attempts"
        self.stats[key] += 1
        self.bot_ready = False
        self._early_events = []
        self._early_close = None
        timeout = self._config.connection_timeout
        self._loop.set_timer("attempt_deadline", timeout, lambda: self._attempt_timed_out(attempt_id))
        csid = self.character_session_id if (self._phase == "connect" or self._config.reconnect_policy.resume) \
            else None
        listener = AttemptListener(self, attempt_id)
        log.info("%s attempt %d: POST %s/connect", self._phase, self._attempts, self._config.url.rstrip("/"))
        self._attempt = self._workers.start(
            "connect", lambda canceller: self._attempt_worker(attempt_id, csid, timeout, listener, canceller),
            f"connect attempt {self._attempts}")

    def _attempt_worker(self, attempt_id: int, csid: str | None, timeout: float, listener: AttemptListener,
                        canceller: Canceller) -> None:
        """Runs on convai-connect-<n>; hands the result to the session thread."""
        result = self._runner.run(attempt_id, csid, timeout, listener, canceller)
        if not self._loop.post_if_running(lambda: self._attempt_done(result, listener)):
            self._runner.discard_late(result)  # the session is gone: release what this attempt acquired

    def _abort_attempt(self, reason: str) -> None:
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            attempt.abort(reason)

    def _attempt_done(self, result: AttemptResult, listener: AttemptListener) -> None:
        if result.attempt_id != self._attempt_id or self.state not in (S.CONNECTING, S.RECONNECTING):
            listener.active = False
            self._discard(result)
            return
        self._attempt = None
        if result.error is not None:
            if result.endpoint is not None:
                self._release(result.endpoint.session_id)
            self._attempt_failed(result.error)
            return
        assert result.endpoint is not None and result.transport is not None
        self._endpoint = result.endpoint
        self.transport = result.transport
        self._listener = listener
        # audio-data messages travel with the other messages: no tail for them.
        self.voice.attach(0.0 if self._config.audio_routing == "data_only" else result.transport.audio_lag,
                          transport_kind=result.transport.kind)
        self.session_id = result.endpoint.session_id
        if result.endpoint.character_session_id:
            self.character_session_id = result.endpoint.character_session_id
        log.info("joined session %s; waiting for bot-ready", self.session_id)
        events, self._early_events = self._early_events, []
        early_close, self._early_close = self._early_close, None
        transport = result.transport
        for event in events:
            if self.transport is not transport:
                return  # a replayed event ended this attempt (e.g. a fatal error)
            self._on_event(event)
        if early_close is not None and self.transport is transport:
            self.transport_closed(result.attempt_id, transport, early_close)

    def _discard(self, result: AttemptResult) -> None:
        """A late attempt result (cancelled or timed out): release what it acquired."""
        if result.transport is not None:
            result.transport.close(timeout=self._config.close_timeout)
        if result.endpoint is not None:
            self._release(result.endpoint.session_id)

    def _attempt_timed_out(self, attempt_id: int) -> None:
        if attempt_id != self._attempt_id or self.state not in (S.CONNECTING, S.RECONNECTING):
            return
        self._attempt_id += 1  # a late worker result is released by _discard
        limit = f"connection_timeout={self._config.connection_timeout:g} s"
        if self._resuming:
            message = f"The transport's own link recovery (a resume or rejoin) did not finish within {limit}."
        elif self.transport is not None:
            message = f"The session was joined, but the character sent no bot-ready within {limit}."
        else:
            message = (f"The connect call (POST /connect, then joining the session's {self._config.transport} "
                       f"transport) did not finish within {limit}.")
            if self._config.transport == "livekit":
                hint = no_ice_candidate_hint()
                message = f"{message} {hint}" if hint else message
        self._resuming = False
        self._abort_attempt(f"{limit} elapsed")
        error = self._err(ErrorCode.CONNECTION_TIMEOUT, message)
        self._teardown_link(notify_server=True)
        self._attempt_failed(error)

    def _attempt_failed(self, error: SessionError) -> None:
        self._loop.cancel_timer("attempt_deadline")
        self._teardown_link(notify_server=True)
        code = error.error_code
        log.info("%s attempt %d failed: %s: %s", self._phase, self._attempts, code.value, error.message)
        if self._phase == "reconnect":
            self._reconnect_failed(error)
            return
        slot = self._config.slot_wait
        if code is ErrorCode.CONNECTION_CONNECT_CONCURRENCY_LIMIT_REACHED and slot is not None:
            retry_in = slot.next_wait(self._slot_waited)
            if retry_in is not None:
                self.stats["slot_waits"] += 1
                self._slot_attempts += 1
                self._hub.publish(ev.WaitingForSlot(attempt=self._slot_attempts, waited=self._slot_waited,
                                                    retry_in=retry_in, error=error))
                self._slot_waited += retry_in
                self._attempts -= 1  # waiting for a slot does not spend retry attempts
                self._schedule_attempt(retry_in)
                return
            error = self._err(code, f"concurrency limit still reached after waiting "
                                    f"{self._slot_waited:g} s (SlotWaitPolicy.max_wait)",
                              http_status_code=error.http_status_code, is_recoverable=False)
        elif self._config.retry_policy.should_retry(code, self._attempts):
            delay = self._config.retry_policy.delay_before(self._attempts + 1)
            log.info("retrying connect in %g s (attempt %d of %d)", delay, self._attempts + 1,
                     self._config.retry_policy.max_attempts)
            self._schedule_attempt(delay)
            return
        elif self._attempts > 1:
            error = SessionError.of(error.error_code, f"{error.message} (after {self._attempts} attempts)",
                                    session_id=error.session_id, stage=error.stage,
                                    http_status_code=error.http_status_code, exception=error.exception,
                                    is_recoverable=error.is_recoverable)
        self._fail_connect(error)

    def _fail_connect(self, error: SessionError, reason: DisconnectReason = DisconnectReason.CLIENT_INITIATED
                      ) -> None:
        self._loop.cancel_timers("attempt")
        self.timers.stop()
        self._resuming = False
        self._final = (reason, error)
        self._set_state(S.ERROR, error)
        self._publish_error(error)
        self._fail_pending(error)
        self._resolve_waiters(error_for(error))

    # ================================================================ reconnects

    def _start_reconnect(self, reason: DisconnectReason, error: SessionError | None, user: bool = False) -> None:
        self._drop_reason = reason
        self.last_disconnect_reason = reason
        self._set_state(S.RECONNECTING)
        self._phase = "reconnect"
        self._attempts = 0
        self._pending_fatal = None
        self.stats["reconnects"] += 1
        self._next_reconnect(error, first_delay_zero=user)

    def _next_reconnect(self, error: SessionError | None, first_delay_zero: bool = False) -> None:
        policy = self._config.reconnect_policy
        attempt = self._attempts + 1
        delay = 0.0 if first_delay_zero else policy.delay_before(attempt, self._drop_reason)
        log.info("reconnecting in %g s (attempt %d of %d)", delay, attempt, policy.max_attempts)
        self._hub.publish(ev.Reconnecting(attempt=attempt, max_attempts=policy.max_attempts, delay=delay,
                                          reason=self._drop_reason, error=error))
        self._schedule_attempt(delay)

    def _reconnect_failed(self, error: SessionError) -> None:
        policy = self._config.reconnect_policy
        if self._attempts < policy.max_attempts and error.is_recoverable:
            self._next_reconnect(error)
            return
        final = SessionError.of(
            error.error_code,
            f"reconnect failed after {self._attempts} attempt(s) (dropped: {self._drop_reason.name}): "
            f"{error.message}",
            session_id=self.session_id, stage=SessionErrorStage.SESSION_RECOVERY,
            http_status_code=error.http_status_code, exception=error.exception, is_recoverable=False)
        self._fail_connect(final, self._drop_reason)

    # ================================================================ transport events

    def transport_event(self, attempt_id: int, transport: Transport, event: object) -> None:
        if transport is self.transport:
            self._on_event(event)
        elif attempt_id == self._attempt_id and self.transport is None:
            self._early_events.append(event)  # arrived before the attempt result was adopted

    def transport_closed(self, attempt_id: int, transport: Transport, closed: TransportClosed) -> None:
        if transport is not self.transport:
            if attempt_id == self._attempt_id and self.transport is None:
                self._early_close = closed  # closed before the attempt result was adopted: replay it
            return
        self.transport = None
        self._deactivate_listener()
        if transport.unsent:
            self.stats["frames_unsent"] += transport.unsent
        outcome = classify_close(closed, self.session_id)
        if self._pending_fatal is not None:
            outcome = CloseOutcome(outcome.reason, self._pending_fatal, False)
        log.info("transport closed: code=%s reason=%r -> %s (retry=%s)", closed.code, closed.reason,
                 outcome.reason.name, outcome.retry)
        if self._resuming and self.state is S.RECONNECTING:
            self._resume_failed(outcome)
            return
        if self.state in (S.CONNECTING, S.RECONNECTING):
            error = outcome.error or self._err(
                ErrorCode.CONNECTION_NETWORK_ERROR if outcome.retry else ErrorCode.CONNECTION_FAILED,
                f"connection closed before bot-ready ({outcome.reason.message})")
            self._attempt_failed(error)
            return
        if self.state is not S.CONNECTED:
            return
        self._on_drop(outcome)

    # ---------------------------------------------------------------- transport-level recovery (LiveKit)

    def transport_reconnecting(self, attempt_id: int, transport: Transport) -> None:
        """The transport lost its link and is recovering it itself (LiveKit's resume / rejoin).

        That recovery is reconnect attempt 1 of the session's one policy: RECONNECTING at once,
        bounded by ``connection_timeout``, counted against ``ReconnectPolicy.max_attempts``
        (with 0 the room is dropped instead). If it fails, the next attempts make a new
        ``POST /connect``.
        """
        if transport is not self.transport or self.state is not S.CONNECTED:
            return
        policy = self._config.reconnect_policy
        if policy.max_attempts == 0:
            transport.abort("link lost, and ReconnectPolicy.max_attempts is 0")
            return
        self.timers.link_down()
        error = self._err(ErrorCode.TRANSPORT_SIGNAL_DISCONNECTED, "connection interrupted; recovering it")
        self._fail_pending(error)
        self._drop_reason = DisconnectReason.UNKNOWN_REASON
        self._set_state(S.RECONNECTING)
        self._phase = "reconnect"
        self._attempts = 1
        self._resuming = True
        self._pending_fatal = None
        self.stats["reconnects"] += 1
        self.stats["reconnect_attempts"] += 1
        self.stats["transport_resumes"] += 1
        log.info("reconnect attempt 1 of %d: the transport is recovering its link", policy.max_attempts)
        self._hub.publish(ev.Reconnecting(attempt=1, max_attempts=policy.max_attempts, delay=0.0,
                                          reason=self._drop_reason, error=error))
        aid = self._attempt_id
        self._loop.set_timer("attempt_deadline", self._config.connection_timeout, lambda: self._attempt_timed_out(aid))

    def transport_reconnected(self, attempt_id: int, transport: Transport) -> None:
        """The transport recovered its link: the same session (and character) go on."""
        if transport is not self.transport or self.state is not S.RECONNECTING or not self._resuming:
            return
        self._resuming = False
        self._loop.cancel_timer("attempt_deadline")
        log.info("the transport recovered its link; session %s goes on", self.session_id)
        self._became_connected(reconnected=True)

    def _resume_failed(self, outcome: CloseOutcome) -> None:
        self._resuming = False
        self._drop_reason = outcome.reason
        self.last_disconnect_reason = outcome.reason
        if outcome.error is not None:
            self._publish_error(outcome.error)
        if not outcome.retry:
            self._loop.cancel_timer("attempt_deadline")
            self._teardown_link(notify_server=True)
            self._finish_disconnect(outcome.reason, outcome.error, pending=outcome.error or self._err(
                ErrorCode.SESSION_INVALID_STATE, f"session ended: {outcome.reason.message}"))
            return
        self._attempt_failed(outcome.error or self._err(
            ErrorCode.TRANSPORT_SIGNAL_DISCONNECTED, f"link recovery failed: {outcome.reason.message}"))

    def _on_drop(self, outcome: CloseOutcome) -> None:
        self.bot_ready = False
        self.timers.link_down()
        idle = self.timers.pop_idle_deadline()
        if idle is not None and outcome.error is not None \
                and outcome.error.error_code is ErrorCode.SESSION_IDLE_TIMEOUT:
            idle()  # the server closed at the announced deadline: report it before the disconnect
        if outcome.error is not None and outcome.error is not self._pending_fatal:
            self._publish_error(outcome.error)
        policy = self._config.reconnect_policy
        if outcome.retry and policy.max_attempts > 0:
            self._teardown_link(notify_server=True)  # POST /disconnect frees the dropped session's slot
            self._fail_pending(outcome.error or self._err(
                ErrorCode.TRANSPORT_SIGNAL_DISCONNECTED, f"connection dropped: {outcome.reason.message}"))
            self._start_reconnect(outcome.reason, outcome.error)
            return
        self._teardown_link(notify_server=True)
        self._finish_disconnect(outcome.reason, outcome.error,
                                pending=outcome.error or self._err(
                                    ErrorCode.SESSION_INVALID_STATE,
                                    f"session ended: {outcome.reason.message}"))

    def _deactivate_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.active = False  # its late frames no longer complete acks or asks
            self.voice.detach()

    def _teardown_link(self, notify_server: bool) -> None:
        transport, self.transport = self.transport, None
        self._deactivate_listener()
        self.bot_ready = False
        self.timers.link_down()
        if transport is not None:
            transport.close(1000, "client disconnect", timeout=self._config.close_timeout)
            if transport.unsent:
                self.stats["frames_unsent"] += transport.unsent
        if notify_server and self.session_id and self._endpoint is not None:
            self._release(self.session_id)
            self._endpoint = None

    def _release(self, session_id: str) -> None:
        """``POST /disconnect`` on a worker, bounded by ``disconnect_timeout`` (best effort)."""
        timeout = self._config.disconnect_timeout
        self._releases += 1
        timer = f"release-{self._releases}"

        def call(canceller: Canceller) -> None:
            try:
                self._api.disconnect(session_id, timeout=timeout, canceller=canceller)
            finally:  # done: disarm the deadline timer
                self._loop.post_if_running(lambda: self._loop.cancel_timer(timer))
        worker = self._workers.start("http", call, "POST /disconnect")
        self._loop.set_timer(timer, timeout, lambda: worker.abort(f"disconnect_timeout={timeout:g} s elapsed"))

    def _finish_disconnect(self, reason: DisconnectReason, error: SessionError | None,
                           pending: SessionError | None = None) -> None:
        self._loop.cancel_timers("attempt")
        self.timers.stop()
        self._final = None
        self._resuming = False
        self.last_disconnect_reason = reason
        if error is not None:
            self.last_error = error
        self._set_state(S.DISCONNECTED)
        self._fail_pending(pending or self._err(ErrorCode.SESSION_INVALID_STATE, "session disconnected"))
        self._resolve_waiters(error_for(pending) if pending else None)
        self._hub.publish(ev.Disconnected(reason=reason, error=error, session_id=self.session_id))
        self._resolve_disconnect_waiters()

    def _resolve_disconnect_waiters(self) -> None:
        waiters, self._disconnect_waiters = self._disconnect_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # ================================================================ events

    def _on_event(self, event: object) -> None:
        if isinstance(event, ev.ProtocolFault):
            self.stats["protocol_errors"] += 1
            log.warning("bad frame (%s): %s", event.code.value, event.detail)
            self._publish_error(self._err(event.code, event.detail))
            return
        if isinstance(event, ev.BotReady):
            self._hub.publish(event)
            self._on_bot_ready()
            return
        if isinstance(event, ev.PipelineError):
            self._on_pipeline_error(event)
            return
        if isinstance(event, ev.UsageLimitReached):
            error = self._err(ErrorCode.SERVER_USAGE_LIMIT_REACHED,
                              f"{event.message} (quota: {event.quota_type})")
            self._pending_fatal = error
            self._hub.publish(event)
            self._publish_error(error)
            self._fail_pending(error)
            return
        if isinstance(event, ev.UserIdleWarningReceived):
            self.timers.idle_warning(event)
            return
        self._hub.publish(event)
        changed = self.narrative.observe(event)
        if changed is not None:
            self._hub.publish(changed)

    def _on_bot_ready(self) -> None:
        if self.state not in (S.CONNECTING, S.RECONNECTING) or self.bot_ready:
            self.bot_ready = True
            return
        self.bot_ready = True
        self._loop.cancel_timer("attempt_deadline")
        self._became_connected(reconnected=self.state is S.RECONNECTING)

    def _became_connected(self, reconnected: bool) -> None:
        attempts = self._attempts
        self._set_state(S.CONNECTED)
        if reconnected:
            self._hub.publish(ev.Reconnected(session_id=self.session_id or "",
                                             character_session_id=self.character_session_id,
                                             attempts=attempts))
        else:
            self._hub.publish(ev.Connected(session_id=self.session_id or "",
                                           character_session_id=self.character_session_id))
        self.timers.connected(reconnected)
        self._resolve_waiters(None)

    def _on_pipeline_error(self, event: ev.PipelineError) -> None:
        code = ErrorCode.SERVER_FATAL_ERROR if event.fatal else ErrorCode.SERVER_ERROR
        error = PipelineSessionError.of(code, event.error, session_id=self.session_id)
        self._publish_error(error)
        if event.fatal:
            self._pending_fatal = error
            self._fail_pending(error)
            if self.state is S.CONNECTED:
                # The session is terminated server-side; end it now rather than wait for a close.
                self._teardown_link(notify_server=True)
                self._finish_disconnect(DisconnectReason.AGENT_ERROR, error, pending=error)

    # ================================================================ diagnostics

    def snapshot(self) -> dict[str, Any]:
        error = self.last_error
        return {
            "state": self.state.name,
            "session_id": self.session_id,
            "character_session_id": self.character_session_id,
            "is_bot_ready": self.bot_ready,
            "last_error_code": error.error_code.value if error else None,
            "last_error_message": error.message if error else None,
            "last_disconnect_reason": self.last_disconnect_reason.name if self.last_disconnect_reason is not None
            else None,
            "phase": self._phase,
            "attempts_in_phase": self._attempts,
            **{k: (list(v) if isinstance(v, list) else v) for k, v in self.stats.items()},
            "pending_acks": len(self.acks),
            "pending_asks": self.turns.waiting,
            "audio": self.voice.snapshot(),
            "lipsync": dict(self.lipsync.stats),
            "narrative_section_id": self.narrative.section_id,
            "turn_timings": self.turns.timing_stats.snapshot(),
        }
