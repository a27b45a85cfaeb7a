"""``ConvaiClient``: the facade an application holds. It owns no thread itself.

Any method may be called from any thread, including from inside an event handler under any
delivery policy. Blocking calls (``connect``, ``ask``, ``wait_for``, ``wait=True`` sends) take a
timeout and raise :class:`InvalidStateError` at once when called on the session thread (an
IMMEDIATE handler), which would have to deliver what they wait for.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from . import events as ev
from . import protocol
from .channels import ConvaiEvents
from .clock import Clock, SystemClock
from .config import ConvaiConfig
from .connect import ConnectApi
from .disconnect import DisconnectReason
from .errors import (
    ConfigurationError,
    ConvaiError,
    ConvaiTimeoutError,
    ErrorCode,
    SessionError,
    UsageLimitError,
    error_for,
    invalid_state,
)
from .hub import EventHub
from .session import PipelineSessionError, Session
from .state import SessionState
from .transports import create as create_transport
from .transports.base import Transport

log = logging.getLogger("convai_sync")
T = TypeVar("T")


def _timeout_error(message: str, session_id: str | None) -> ConvaiTimeoutError:
    return ConvaiTimeoutError(SessionError.of(ErrorCode.CONNECTION_TIMEOUT, message, session_id=session_id))


class ConvaiClient:
    """A blocking, thread-based client for one Convai character session.

    Args:
        config: The :class:`ConvaiConfig`.
        clock: Time source (tests pass ``convai_sync.testing.FakeClock``).
        transport_factory: Builds a :class:`Transport` per attempt (default: ``config.transport``).
        connect_api: The HTTP connect client (tests pass a fake; default talks to ``config.url``).

    Example::

        with ConvaiClient(ConvaiConfig.from_env()) as client:
            client.connect()
            print(client.ask("Hello!").text)
    """

    def __init__(self, config: ConvaiConfig, *, clock: Clock | None = None,
                 transport_factory: Callable[[], Transport] | None = None,
                 connect_api: ConnectApi | None = None) -> None:
        if not isinstance(config, ConvaiConfig):
            raise TypeError("config must be a ConvaiConfig")
        self._config = config
        self._hub = EventHub(config.delivery_policy, config.event_queue_size, config.strict_handlers,
                             config.immediate_handler_budget)
        self._events = ConvaiEvents(self._hub, PipelineSessionError)
        self._api = connect_api or ConnectApi(config)
        factory = transport_factory or (lambda: create_transport(config.transport))
        self._session = Session(config, self._hub, clock or SystemClock(), factory, self._api)
        self._closed = False
        self._close_lock = threading.Lock()
        self._send_lock = threading.Lock()

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> ConvaiConfig:
        return self._config

    @property
    def events(self) -> ConvaiEvents:
        """Typed event channels; ``events.raw`` is the :class:`EventHub`."""
        return self._events

    @property
    def state(self) -> SessionState:
        return self._session.state

    @property
    def session_id(self) -> str | None:
        return self._session.session_id

    @property
    def character_session_id(self) -> str | None:
        """The conversation id; reconnects and later connects resume it until ``reset_session()``."""
        return self._session.character_session_id

    @property
    def is_bot_ready(self) -> bool:
        return self._session.bot_ready

    @property
    def last_error(self) -> SessionError | None:
        return self._session.last_error

    @property
    def last_disconnect_reason(self) -> DisconnectReason | None:
        return self._session.last_disconnect_reason

    # ------------------------------------------------------------------ lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise invalid_state("the client is closed")

    def _check_may_block(self, what: str) -> None:
        if self._session.on_session_thread():
            raise invalid_state(f"{what} called on the session thread (from an IMMEDIATE handler) would "
                                f"wait for itself; use a BACKGROUND or MAIN_THREAD handler")

    def connect(self, timeout: float | None = None) -> None:
        """Block until CONNECTED (transport joined and ``bot-ready`` received).

        Attempts follow ``config.retry_policy`` (and ``config.slot_wait`` while the concurrency
        limit holds), each bounded by ``config.connection_timeout``. Returns at once if already
        CONNECTED.

        Args:
            timeout: Overall seconds to wait; None waits for the policies to finish.

        Raises:
            ConfigurationError: ``config.api_key_missing`` / ``config.character_id_missing``
                (before any network traffic).
            ConcurrencyLimitError: the plan's concurrency limit held through every attempt.
            UsageLimitError: the account's quota is exhausted.
            InvalidStateError: called in ERROR (``disconnect()`` first) or on the session thread.
            ConvaiError: any other final error (its ``error_code`` says which, PROTOCOL.md §2.2).
            ConvaiTimeoutError: ``timeout`` passed first (the connect is cancelled).
        """
        self._check_open()
        self._check_may_block("connect()")
        try:
            self._config.validate_for_connect()
        except ConfigurationError as exc:
            self._session.last_error = exc.error
            self._hub.publish(exc.error)
            raise
        self._run_command(self._session.cmd_connect, timeout, "connect()")

    def reconnect(self, timeout: float | None = None) -> None:
        """Drop and restore the session, resuming ``character_session_id``; blocks like ``connect``.

        Raises:
            InvalidStateError: while CONNECTING or DISCONNECTING (Convai Unity's rule).
        """
        self._check_open()
        self._check_may_block("reconnect()")
        self._config.validate_for_connect()
        self._run_command(self._session.cmd_reconnect, timeout, "reconnect()")

    def _run_command(self, command: Callable[[Future[None]], None], timeout: float | None, what: str) -> None:
        with self._close_lock:  # close() cannot slip in between the check and starting the thread
            self._check_open()
            self._session.ensure_started()
        fut: Future[None] = Future()
        self._session.post(lambda: command(fut))
        try:
            fut.result(timeout)
        except FutureTimeout:
            self._session.post(lambda: self._session.cmd_disconnect(None))
            raise _timeout_error(f"{what} did not complete within {timeout} s", self.session_id) from None
        finally:
            self._hub.raise_pending()

    def disconnect(self) -> None:
        """End the session: close the transport, then ``POST /disconnect`` to free the slot.

        Cancels a connect in progress (``session.cancelled``) and resets ERROR to DISCONNECTED.
        Idempotent; returns within a bounded time. Called from an IMMEDIATE handler it schedules
        the disconnect and returns at once (it cannot wait for its own thread).
        """
        if self._session.thread is None or not self._session.running:
            return
        if self._session.on_session_thread():
            self._session.post(lambda: self._session.cmd_disconnect(None))
            return
        fut: Future[None] = Future()
        self._session.post(lambda: self._session.cmd_disconnect(fut))
        bound = self._config.close_timeout + self._config.http_timeout
        try:
            fut.result(bound)
        except FutureTimeout:
            log.warning("disconnect() did not finish within %.1f s", bound)

    def close(self) -> None:
        """Disconnect and stop every SDK thread (bounded joins). Idempotent.

        Raises:
            Exception: with ``strict_handlers=True``, a handler exception not yet re-raised.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.disconnect()
        timeout = self._config.close_timeout
        if self._session.on_session_thread():
            # Called from an IMMEDIATE handler: the disconnect just posted still has to run and
            # publish; close the hub after it, on this thread's queue, and never join ourselves.
            self._session.post(lambda: self._hub.close(timeout))
            self._session.post(self._api.close)
            self._session.stop(timeout)
            return
        self._session.stop(timeout)
        on_dispatch = self._hub.is_dispatch_thread()
        try:
            self._hub.close(0.0 if on_dispatch else timeout)
        finally:
            self._api.close()

    def __enter__(self) -> ConvaiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sending

    def _ready_transport(self) -> Transport:
        self._check_open()
        session = self._session
        if session.state.can_accept_input() and session._transport is not None:
            return session._transport
        last = session.last_error
        if last is not None and last.error_code is ErrorCode.SERVER_USAGE_LIMIT_REACHED:
            raise UsageLimitError(last)
        raise invalid_state(f"cannot send while {session.state.name}; wait for CONNECTED",
                            session.session_id)

    def _send(self, msg_type: str, frame: tuple[str, str], wait: bool,
              timeout: float | None = None) -> ev.ServerResponse | None:
        transport = self._ready_transport()
        if wait:
            self._check_may_block(f"{msg_type} with wait=True")
        acks = self._session.acks
        with self._send_lock:  # ack FIFO order must be wire order (server-response has no id)
            fut = acks.expect(msg_type, wait)
            try:
                transport.send(frame[1])
            except ConnectionError as exc:
                acks.forget(msg_type, fut)
                raise invalid_state(f"cannot send {msg_type}: {exc}", self.session_id) from exc
        self._session.stats["frames_sent"] += 1
        self._session.post(self._session.note_activity)
        if self._config.auto_reset_idle and msg_type != "reset-idle-timer":
            self._send("reset-idle-timer", protocol.simple("reset-idle-timer"), wait=False)
        if not wait:
            return None
        limit = self._config.ack_timeout if timeout is None else timeout
        try:
            response = fut.result(limit)
        except FutureTimeout:
            acks.abandon(msg_type, fut)
            raise _timeout_error(f"no server-response for {msg_type} within {limit} s", self.session_id) from None
        if response.is_error:
            text = response.message or "request rejected"
            code = (ErrorCode.SERVER_USAGE_LIMIT_REACHED if "usage limit" in text.lower()
                    else ErrorCode.SERVER_ERROR)
            raise error_for(SessionError.of(code, f"{msg_type} rejected: {text}", session_id=self.session_id))
        return response

    def send_text(self, text: str, wait: bool = False, timeout: float | None = None) -> ev.ServerResponse | None:
        """Send ``user_text_message``; returns at once, or with ``wait=True`` the ack.

        Raises:
            ValueError: ``text`` is empty.
            InvalidStateError: not CONNECTED (``session.invalid_state``).
            ConvaiError: with ``wait=True``, an ``error`` ack or no ack within ``ack_timeout``.
        """
        return self._send("user_text_message", protocol.user_text_message(text), wait, timeout)

    def ask(self, text: str, timeout: float | None = 30.0) -> ev.BotReply:
        """Send ``text`` and block until the character's whole reply has arrived.

        The reply is assembled from ``bot-llm-text`` chunks up to ``bot-turn-completed`` (or
        ``llm-no-response``), with the turn's ``bot-emotion`` and ``action-response``.

        Raises:
            InvalidStateError: not CONNECTED, or called on the session thread.
            ConvaiTimeoutError: no complete reply within ``timeout`` seconds.
            ConvaiError: the session ended or failed while waiting.
        """
        frame = protocol.user_text_message(text)
        self._ready_transport()
        self._check_may_block("ask()")
        fut = self._session.turns.expect(frame[0])
        try:
            self._send("user_text_message", frame, wait=False)
        except ConvaiError:
            self._session.turns.forget(fut)
            raise
        try:
            return fut.result(timeout)
        except FutureTimeout:
            self._session.turns.forget(fut)
            raise _timeout_error(f"no complete reply within {timeout} s", self.session_id) from None
        finally:
            self._hub.raise_pending()

    def send_trigger(self, name: str | None = None, message: str | None = None,
                     wait: bool = False) -> ev.ServerResponse | None:
        """Send ``trigger-message`` with exactly one of ``name`` (saved trigger) or ``message``."""
        return self._send("trigger-message", protocol.trigger_message(name, message), wait)

    def interrupt(self, wait: bool = False) -> ev.ServerResponse | None:
        """Send ``interrupt-bot`` (stop the current reply)."""
        return self._send("interrupt-bot", protocol.simple("interrupt-bot"), wait)

    def update_template_keys(self, keys: Mapping[str, str], wait: bool = False) -> ev.ServerResponse | None:
        """Send ``update-template-keys`` (``{name: value}``)."""
        return self._send("update-template-keys", protocol.update_template_keys(keys), wait)

    def update_dynamic_info(self, text: str, wait: bool = False) -> ev.ServerResponse | None:
        """Send ``update-dynamic-info`` (legacy dynamic context)."""
        return self._send("update-dynamic-info", protocol.update_dynamic_info(text), wait)

    def update_context(self, text: str | None, mode: str = "append", run_llm: str = "auto",
                       wait: bool = False) -> ev.ServerResponse | None:
        """Send ``context-update``; ``mode`` is ``append``/``replace``/``reset``, ``run_llm`` is
        ``"true"``/``"false"``/``"auto"``. The ack's extras carry the token budget."""
        return self._send("context-update", protocol.context_update(text, mode, run_llm), wait)

    def toggle_tts(self, enabled: bool, wait: bool = False) -> ev.ServerResponse | None:
        """Send ``tts-toggle``."""
        return self._send("tts-toggle", protocol.tts_toggle(enabled), wait)

    def reset_idle_timer(self, wait: bool = False) -> ev.ServerResponse | None:
        """Send ``reset-idle-timer`` (any message also resets the server's idle timer)."""
        return self._send("reset-idle-timer", protocol.simple("reset-idle-timer"), wait)

    def reset_session(self) -> None:
        """Forget ``character_session_id``: the next connect starts a fresh conversation."""
        self._check_open()
        session = self._session
        if session.thread is None:
            session.character_session_id = None
        else:
            session.post(lambda: setattr(session, "character_session_id", None))

    # ------------------------------------------------------------------ events

    def pump(self, max_events: int | None = None) -> int:
        """Deliver queued MAIN_THREAD events on the calling thread: call it from the host's tick.

        Returns:
            Events delivered (0 when called re-entrantly from a MAIN_THREAD handler).
        """
        return self._hub.pump(max_events)

    def wait_for(self, event_type: type[T], predicate: Callable[[T], bool] | None = None,
                 timeout: float | None = 10.0) -> T:
        """Block until an event of ``event_type`` matching ``predicate`` is published.

        Works under every delivery policy without ``pump()``. Subscribe before triggering the
        event you wait for if it may already have fired (this waits for the *next* one).

        Raises:
            InvalidStateError: on the session thread. TimeoutError: nothing within ``timeout``.
        """
        self._check_may_block("wait_for()")
        return self._hub.wait_for(event_type, predicate, timeout)

    # ------------------------------------------------------------------ diagnostics

    def diagnostics(self) -> dict[str, Any]:
        """A snapshot for logs and bug reports; never contains the API key."""
        threads = [t.name for t in threading.enumerate() if t.name.startswith("convai-")]
        return {
            **self._session.snapshot(),
            "url": self._config.url,
            "transport": self._config.transport,
            "character_id": self._config.character_id,
            "delivery_policy": self._config.delivery_policy.name,
            "events": self._hub.stats(),
            "threads": threads,
            "closed": self._closed,
        }

    def __repr__(self) -> str:
        return (f"ConvaiClient(character_id={self._config.character_id!r}, url={self._config.url!r}, "
                f"state={self.state.name})")
