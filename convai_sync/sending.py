"""How a message leaves the client: state checks, ack registration in wire order, the send,
and the bounded wait for its acknowledgement (``wait=True``).

Thread notes: :class:`Sender` runs on the caller's thread. The transport is thread-safe and never
blocks on the network; ``_lock`` only keeps the acknowledgement queue in wire order (Convai's
``server-response`` has no correlation id: acks match sends per ``event_type`` in order) and is
never held while waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from . import events as ev
from . import protocol
from .audio import check_format
from .config import ConvaiConfig
from .errors import (
    ErrorCode,
    SendQueueFullError,
    SessionError,
    UsageLimitError,
    error_for,
    invalid_state,
    timeout_error,
)
from .replies import Deadline, check_timeout
from .session import Session
from .state import SessionState
from .transports.base import MicrophoneUnheard, Transport
from .transports.outbox import OutboxFull
from .turns import Turn


class Sender:
    """Sends for one :class:`~convai_sync.ConvaiClient` (see the module docstring)."""

    def __init__(self, config: ConvaiConfig, session: Session, check_open: Callable[[], None],
                 check_may_block: Callable[[str], None]) -> None:
        self._config = config
        self._session = session
        self._check_open = check_open
        self._check_may_block = check_may_block
        self._lock = threading.Lock()

    def ready_transport(self) -> Transport:
        """The transport to send on.

        Raises:
            InvalidStateError: not CONNECTED (the message says what to do).
            UsageLimitError: the session ended because the quota ran out.
        """
        self._check_open()
        session = self._session
        state = session.state
        transport = session.transport
        if state.can_accept_input() and transport is not None:
            return transport
        last = session.last_error
        if last is not None and last.error_code is ErrorCode.SERVER_USAGE_LIMIT_REACHED:
            raise UsageLimitError(last)
        if state is SessionState.DISCONNECTED:
            hint = "call connect() first" if session.session_id is None else "call connect() to start a new session"
        elif state is SessionState.ERROR:
            code = last.error_code.value if last is not None else "unknown"
            hint = f"the session failed ({code}); call disconnect() to reset it, then connect()"
        elif state is SessionState.CONNECTED:
            hint = "the character is not ready yet"
        else:
            hint = "wait for CONNECTED (connect() blocks until then; on_reconnected fires after a drop)"
        raise invalid_state(f"cannot send while {state.name}: {hint}", session.session_id)

    def send(self, msg_type: str, frame: tuple[str, str], wait: bool, timeout: float | None,
             register: Callable[[], None] | None = None, unregister: Callable[[], None] | None = None
             ) -> ev.ServerResponse | None:
        """Send one encoded message; with ``wait`` return its acknowledgement (see ``send_text``).

        ``register``/``unregister`` run under the lock around the send (wire order), e.g. to
        record a reply-causing message in the turn tracker.
        """
        limit = check_timeout("timeout", timeout)
        deadline = Deadline(self._config.ack_timeout if limit is None else limit)
        self.ready_transport()
        if wait:
            self._check_may_block(f"{msg_type} with wait=True")
        fut = self.write(msg_type, frame, wait, register, unregister)
        if fut is None:
            return None
        return self.await_ack(msg_type, fut, deadline, limit)

    def write(self, msg_type: str, frame: tuple[str, str], wait: bool,
              register: Callable[[], None] | None = None, unregister: Callable[[], None] | None = None
              ) -> Future[ev.ServerResponse] | None:
        """Write one encoded message now (never blocks); with ``wait`` the future its ack completes.

        Raises:
            InvalidStateError: not CONNECTED, or the link refused the frame.
            SendQueueFullError: the send queue is full.
        """
        transport = self.ready_transport()
        session = self._session
        acks = session.acks
        with self._lock:
            fut = acks.expect(msg_type, wait)
            if register is not None:
                register()
            try:
                transport.send(frame[1])
            except ConnectionError as exc:
                acks.forget(msg_type, fut)
                if unregister is not None:
                    unregister()
                if isinstance(exc, OutboxFull):
                    raise SendQueueFullError(SessionError.of(
                        ErrorCode.SESSION_INVALID_STATE, f"{msg_type} not sent: {exc}",
                        session_id=session.session_id)) from None
                raise invalid_state(f"{msg_type} not sent: {exc}", session.session_id) from exc
        session.stats["frames_sent"] += 1
        if session.idle_deadline_armed:  # else no thread hand-off per send
            session.post(session.note_activity)
        if self._config.auto_reset_idle and msg_type != "reset-idle-timer":
            self.write("reset-idle-timer", protocol.simple("reset-idle-timer"), False)
        return fut if wait else None

    def await_ack(self, msg_type: str, fut: Future[ev.ServerResponse], deadline: Deadline,
                  limit: float | None) -> ev.ServerResponse:
        """Wait for ``fut`` (the ack of ``msg_type``) until ``deadline``; an error ack raises."""
        session = self._session
        try:
            response = fut.result(deadline.remaining())
        except FutureTimeout:
            session.acks.abandon(msg_type, fut)
            raise timeout_error(f"The server sent no server-response acknowledging {msg_type} within "
                                f"{self._config.ack_timeout if limit is None else limit} s.",
                                session.session_id) from None
        if response.is_error:
            text = response.message or "request rejected"
            code = (ErrorCode.SERVER_USAGE_LIMIT_REACHED if "usage limit" in text.lower()
                    else ErrorCode.SERVER_ERROR)
            raise error_for(SessionError.of(code, f"{msg_type} rejected: {text}", session_id=session.session_id))
        return response

    def send_text(self, text: str, wait: bool, timeout: float | None) -> ev.ServerResponse | None:
        """``user_text_message`` whose reply goes to the event channels only."""
        mid, data = protocol.user_text_message(text)
        turns = self._session.turns

        def register() -> None:
            turns.sent_text(mid, text, wait=False)
        return self.send("user_text_message", (mid, data), wait, timeout, register=register,
                         unregister=lambda: turns.unsent(None, "text"))

    def begin_turn(self, text: str, what: str, timeout: float | None) -> tuple[Turn, Deadline]:
        """Send ``text`` for ``ask()``/``stream()``: the :class:`Turn` its reply fills, and the
        call's deadline (taken before the send, so it covers it)."""
        deadline = Deadline(check_timeout("timeout", timeout))
        mid, data = protocol.user_text_message(text)
        self.ready_transport()
        self._check_may_block(what)
        turns = self._session.turns
        box: list[Turn] = []

        def register() -> None:
            turn = turns.sent_text(mid, text, wait=True)
            assert turn is not None
            box.append(turn)
        self.send("user_text_message", (mid, data), False, None, register=register,
                  unregister=lambda: turns.unsent(box[0] if box else None, "text"))
        return box[0], deadline

    def send_audio(self, buffer: object, sample_rate: int, num_channels: int, timeout: float | None) -> None:
        """The user's voice (see ``ConvaiClient.send_audio``)."""
        pcm = check_format(buffer, sample_rate, num_channels)  # bytes, measured in bytes
        limit = check_timeout("timeout", timeout)
        deadline = Deadline(self._config.ack_timeout if limit is None else limit)
        transport = self.ready_transport()
        session = self._session
        if not transport.supports_audio:
            raise invalid_state(f"the {transport.kind} transport carries no audio: use ConvaiConfig(transport="
                                "'websocket') (with the [audio] extra) or transport='livekit'", session.session_id)
        if not pcm:
            return
        try:
            transport.send_audio(pcm, sample_rate, num_channels, timeout=deadline.remaining())
        except OutboxFull as exc:
            raise SendQueueFullError(SessionError.of(ErrorCode.SESSION_INVALID_STATE, f"audio not sent: {exc}",
                                                     session_id=session.session_id)) from None
        except MicrophoneUnheard as exc:
            raise error_for(SessionError.of(ErrorCode.AUDIO_MIC_PUBLISH_FAILED, f"audio not sent: {exc}",
                                            session_id=session.session_id)) from None
        except ConnectionError as exc:
            raise invalid_state(f"audio not sent: {exc}", session.session_id) from exc
        session.voice.sent(len(pcm), sample_rate, num_channels)
