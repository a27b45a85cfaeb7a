"""``ConvaiClient``: the facade an application holds. It owns no thread itself.

Any method may be called from any thread, including from inside an event handler under any
delivery policy. Every blocking call (``connect``, ``reconnect``, ``ask``, ``stream``,
``wait_for``, ``wait=True`` sends, ``disconnect``, ``close``) has a deadline measured from the
call that covers all of its work, and raises :class:`InvalidStateError` at once when called on
the session thread (from an IMMEDIATE handler), which it would otherwise stall.

Sends never block on the network: a frame is written at once when the socket has room, else
queued (bounded, ``ConvaiConfig.send_queue_bytes``); when the queue is full because the server
has stopped reading, the send fails at once with :class:`SendQueueFullError` and the frame is
not sent.

While the session is RECONNECTING (or the link has just dropped and the session has not yet
noticed), a send raises :class:`InvalidStateError` at once and the message is not sent: nothing
is queued for after the reconnect, so the application decides whether to send it again once
``on_reconnected`` fires. The one exception is :meth:`ConvaiClient.send_trigger`: a narrative
trigger sent while CONNECTING or RECONNECTING is held and sent once the character is ready, as
Convai's Unity SDK does. A ``wait=True`` send whose link drops before its acknowledgement
arrives raises the drop's ``ConvaiError`` (e.g. ``transport.signal_disconnected``) as soon as the
session sees the drop; the message may or may not have reached the server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from . import events as ev
from . import protocol
from .channels import ConvaiEvents
from .character import ActionConfig
from .clock import Clock, SystemClock
from .config import ConvaiConfig
from .connect import ConnectApi, ConnectService
from .disconnect import DisconnectReason
from .errors import (
    ConfigurationError,
    ConvaiError,
    SessionError,
    invalid_state,
    timeout_error,
)
from .errors import ConvaiTimeoutError as ConvaiTimeoutError  # re-exported: it was defined here
from .hub import EventHub
from .lipsync import LipSync
from .narrative import TriggerQueue
from .redact import scrub
from .replies import Deadline, ReplyStream, check_timeout
from .sending import Sender
from .session import PipelineSessionError, Session
from .state import SessionState
from .transports import create as create_transport
from .transports.base import Transport

if TYPE_CHECKING:  # PEP 688's buffer type (collections.abc.Buffer from Python 3.12); types only
    from typing_extensions import Buffer

log = logging.getLogger("convai_sync")
T = TypeVar("T")

ContextMode = Literal["append", "replace", "reset"]
RunLLM = Literal["true", "false", "auto"]


class ConvaiClient:
    """A blocking, thread-based client for one Convai character session.

    Args:
        config: The :class:`ConvaiConfig`.
        clock: Time source for the session's timers (tests pass ``convai_sync.testing.FakeClock``).
        transport_factory: Builds a :class:`Transport` per attempt (default: ``config.transport``).
        connect_api: The HTTP connect client, any :class:`convai_sync.connect.ConnectService`
            (tests pass a fake; default: a ``ConnectApi`` talking to ``config.url``).

    Example::

        with ConvaiClient(ConvaiConfig.from_env()) as client:
            client.connect()
            print(client.ask("Hello!").text)
    """

    def __init__(self, config: ConvaiConfig, *, clock: Clock | None = None,
                 transport_factory: Callable[[], Transport] | None = None,
                 connect_api: ConnectService | None = None) -> None:
        if not isinstance(config, ConvaiConfig):
            raise TypeError("config must be a ConvaiConfig")
        self._config = config
        self._hub = EventHub(config.delivery_policy, config.event_queue_size, config.strict_handlers,
                             config.immediate_handler_budget, audio_queue_size=config.audio_queue_frames)
        self._events = ConvaiEvents(self._hub, PipelineSessionError)
        self._api = connect_api or ConnectApi(config)
        factory = transport_factory or (lambda: create_transport(config))
        self._session = Session(config, self._hub, clock or SystemClock(), factory, self._api)
        self._closed = False
        self._close_lock = threading.Lock()
        self._sender = Sender(config, self._session, self._check_open, self._check_may_block)
        self._triggers = TriggerQueue(
            config.pending_trigger_limit, self._write_trigger,
            lambda fut, left: self._sender.await_ack("trigger-message", fut, Deadline(left), left),
            self._hub.publish)
        self._session.state_hooks.append(self._triggers.state_changed)

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> ConvaiConfig:
        """The (frozen) configuration this client was built with."""
        return self._config

    @property
    def events(self) -> ConvaiEvents:
        """Typed event channels; ``events.raw`` is the :class:`EventHub`."""
        return self._events

    @property
    def state(self) -> SessionState:
        """The session's :class:`SessionState` now (a snapshot; it changes on the session thread)."""
        return self._session.state

    @property
    def session_id(self) -> str | None:
        """The id ``POST /connect`` returned for the current (or last) session; None before one."""
        return self._session.session_id

    @property
    def character_session_id(self) -> str | None:
        """The conversation id; reconnects and later connects resume it until ``reset_session()``."""
        return self._session.character_session_id

    @property
    def is_bot_ready(self) -> bool:
        """True once the character's ``bot-ready`` arrived on the current transport."""
        return self._session.bot_ready

    @property
    def narrative_section_id(self) -> str | None:
        """The character's narrative section from the last ``behavior-tree-response`` (None before one);
        kept across reconnects and after the session ends."""
        return self._session.narrative.section_id

    @property
    def lipsync(self) -> LipSync | None:
        """The latest turn's live lip-sync timeline (None before the first frames arrive; needs
        ``ConvaiConfig.blendshape_config``). Each new turn's timeline is also published on
        ``events.on_lipsync``."""
        return self._session.lipsync.latest

    @property
    def last_error(self) -> SessionError | None:
        """The most recent :class:`SessionError` published (None if none yet)."""
        return self._session.last_error

    @property
    def last_disconnect_reason(self) -> DisconnectReason | None:
        """Why the session last dropped or ended (None before the first drop or disconnect)."""
        return self._session.last_disconnect_reason

    # ------------------------------------------------------------------ lifecycle

    def _check_open(self) -> None:
        if self._closed:
            raise invalid_state("the client is closed; create a new ConvaiClient")

    def _check_may_block(self, what: str) -> None:
        if self._session.on_session_thread():
            raise invalid_state(f"{what} called on the session thread (from an IMMEDIATE handler) would "
                                f"stall every event; use a BACKGROUND or MAIN_THREAD handler")

    def connect(self, timeout: float | None = None) -> None:
        """Block until CONNECTED (transport joined and ``bot-ready`` received).

        Attempts follow ``config.retry_policy`` (and ``config.slot_wait`` while the concurrency
        limit holds), each bounded by ``config.connection_timeout``. Returns at once if already
        CONNECTED.

        Args:
            timeout: Overall seconds to wait, from the call; None waits for the policies to finish.

        Raises:
            ConfigurationError: ``config.api_key_missing`` / ``config.character_id_missing``
                (before any network traffic).
            ConcurrencyLimitError: the plan's concurrency limit held through every attempt.
            UsageLimitError: the account's quota is exhausted.
            InvalidStateError: called in ERROR (``disconnect()`` first) or on the session thread.
            ConvaiTimeoutError: ``timeout`` passed first (the connect is cancelled).
            ConvaiError: any other final error; its ``error_code`` says which
                (``connection.network_error`` for an unreachable URL, with the host and cause).
            ValueError: ``timeout`` is negative or NaN.
        """
        timeout = check_timeout("timeout", timeout)
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
        timeout = check_timeout("timeout", timeout)
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
            raise timeout_error(f"{what} did not complete within {timeout} s.", self.session_id) from None
        finally:
            self._hub.raise_pending()

    def disconnect(self) -> None:
        """End the session: close the transport, then ``POST /disconnect`` to free the slot.

        Cancels a connect in progress (``session.cancelled``) and resets ERROR to DISCONNECTED.
        Idempotent. Returns within ``config.close_timeout`` seconds whatever the server does: the
        ``POST /disconnect`` is best effort (the server frees the slot when it reads the request,
        even if its answer comes too late to wait for). Called from an IMMEDIATE handler it
        schedules the disconnect and returns at once (it cannot wait for its own thread).
        """
        self._disconnect(Deadline(self._config.close_timeout))

    def _disconnect(self, deadline: Deadline) -> None:
        session = self._session
        if session.thread is None or not session.running:
            return
        if session.on_session_thread():
            session.post(lambda: session.cmd_disconnect(None))
            return
        fut: Future[None] = Future()
        session.post(lambda: session.cmd_disconnect(fut))
        try:
            fut.result(deadline.remaining())
        except FutureTimeout:
            log.warning("disconnect() did not finish within %.2f s", self._config.close_timeout)
            return
        assert deadline.at is not None
        # Stop waiting for a slow POST /disconnect a little early: a wait that ends at the
        # deadline returns after it (thread wake-up), and close() still has to stop threads.
        session.wait_workers(deadline.at - min(0.05, 0.1 * self._config.close_timeout))

    def close(self) -> None:
        """Disconnect and stop every SDK thread, within ``config.close_timeout`` seconds from the
        call whatever the server does. Idempotent.

        Raises:
            Exception: with ``strict_handlers=True``, a handler exception not yet re-raised.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        deadline = Deadline(self._config.close_timeout)
        assert deadline.at is not None
        self._disconnect(deadline)
        # From an IMMEDIATE handler (the session thread) all of this runs on that thread after
        # the disconnect just posted has published; the hub closes after the final events.
        on_dispatch = self._hub.is_dispatch_thread()
        hub, api = self._hub, self._api

        def finish() -> None:
            try:
                hub.close(0.0 if on_dispatch else (deadline.remaining() or 0.0))
            finally:
                api.close()
        self._session.stop(deadline.at, then=(finish,))

    def __enter__(self) -> ConvaiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sending

    @overload
    def send_text(self, text: str, wait: Literal[False] = False, timeout: float | None = None) -> None: ...
    @overload
    def send_text(self, text: str, wait: Literal[True], timeout: float | None = None) -> ev.ServerResponse: ...
    @overload
    def send_text(self, text: str, wait: bool, timeout: float | None = None) -> ev.ServerResponse | None: ...

    def send_text(self, text: str, wait: bool = False, timeout: float | None = None) -> ev.ServerResponse | None:
        """Send ``user_text_message``. Returns at once (the frame is written or queued), or with
        ``wait=True`` the server's acknowledgement.

        The character's reply reaches the event channels (``on_bot_text``, ``on_message``) only;
        use :meth:`ask` or :meth:`stream` to get the reply back.

        Args:
            text: What the user says (non-empty).
            wait: Block until the ``server-response``.
            timeout: With ``wait=True``, seconds from the call (default ``config.ack_timeout``).

        Raises:
            ValueError: ``text`` is empty; ``timeout`` negative.
            InvalidStateError: not CONNECTED (``session.invalid_state``), e.g. RECONNECTING: the
                message was not sent and is not queued; SendQueueFullError when the server has
                stopped reading.
            ConvaiTimeoutError: with ``wait=True``, no ack before the deadline.
            ConvaiError: with ``wait=True``, an ``error`` ack (``server.error``, or
                ``server.usage_limit_reached`` as :class:`UsageLimitError`), or the link dropped
                before the ack (the drop's code, e.g. ``transport.signal_disconnected``).
        """
        return self._sender.send_text(text, wait, timeout)

    def ask(self, text: str, timeout: float | None = 30.0) -> ev.BotReply:
        """Send ``text`` and block until the character's whole reply to it has arrived.

        The reply is assembled from ``bot-llm-text`` chunks up to ``bot-turn-completed`` (or
        ``llm-no-response``), with the turn's ``bot-emotion`` and ``action-response``. When the
        session receives the character's voice (``ConvaiConfig.receive_audio``, TTS on) and the
        reply was spoken (``bot-started-speaking``), ``ask()`` also waits for the end of that voice
        (``bot-stopped-speaking``, plus the transport's short tail for audio that lags the
        messages: 0 on the WebSocket, at most 0.5 s on LiveKit), still within ``timeout``, and
        ``BotReply.audio`` holds it as an :class:`AudioClip` (PCM16; what arrived before an
        interruption, for an interrupted reply). Otherwise ``BotReply.audio`` is None and it
        returns at ``bot-turn-completed``. It is the
        reply to this text and no other: Convai echoes the message's id in
        ``final-user-transcription`` and the reply that follows is bound to it; where the server
        sends no echo, replies are matched to the messages that cause them (texts, including
        ``send_text`` and abandoned asks, and triggers) in the order they were sent. Replies to
        other messages reach the event channels only. It wakes as soon as the reply is complete
        (the transport's thread completes it); the turn's events are published to handlers
        independently, so an ``IMMEDIATE`` handler may still be receiving the turn's last events
        when ``ask()`` returns.

        Args:
            text: What the user says (non-empty).
            timeout: Seconds from the call for the whole exchange (send and reply); None (or
                ``inf``, or anything of ``threading.TIMEOUT_MAX`` or more) waits until the session
                ends.

        Raises:
            InvalidStateError: not CONNECTED, or called on the session thread.
            ConvaiTimeoutError: no complete reply (text, and voice when expected) within
                ``timeout`` seconds (a late reply then reaches the event channels only).
            ConvaiError: the session ended or failed while waiting, or the server rejected the
                message (its error acknowledgement).
        """
        turn, deadline = self._sender.begin_turn(text, "ask()", timeout)
        try:
            return turn.reply(deadline.at)
        except TimeoutError as exc:
            self._session.turns.abandon(turn)
            raise timeout_error(f"{exc} (timeout={timeout} s).", self.session_id) from None
        finally:
            self._hub.raise_pending()

    def stream(self, text: str, timeout: float | None = 30.0) -> ReplyStream:
        """Send ``text`` and return an iterator of the reply's :class:`BotText` chunks as they
        arrive, on the calling thread; it ends at the end of the turn (``bot-turn-completed``).

        The message is sent at once (before the first ``next()``). The reply is bound to this
        text exactly as for :meth:`ask`; ``iterator.reply`` holds the whole :class:`BotReply` once
        the iteration has ended, and ``iterator.close()`` stops waiting early: the iteration then
        ends (``next()`` raises ``StopIteration``, also one waiting on another thread) and
        ``iterator.reply`` stays None.

        Args:
            text: What the user says (non-empty).
            timeout: Seconds from the call for the whole reply; None (or ``inf``, or anything of
                ``threading.TIMEOUT_MAX`` or more) waits until the reply ends or the session does.

        Raises:
            InvalidStateError: not CONNECTED, or called on the session thread (at once).
            ConvaiTimeoutError: (from ``next()``) the reply did not end within ``timeout``.
            ConvaiError: (from ``next()``) the session ended or failed while streaming.
        """
        turn, deadline = self._sender.begin_turn(text, "stream()", timeout)
        return ReplyStream(turn, deadline, timeout, self._session.turns, self._hub.raise_pending,
                            lambda: self.session_id)

    @overload
    def send_trigger(self, name: str | None = None, message: str | None = None,
                     wait: Literal[False] = False, timeout: float | None = None) -> None: ...
    @overload
    def send_trigger(self, name: str | None = None, message: str | None = None, *,
                     wait: Literal[True], timeout: float | None = None) -> ev.ServerResponse: ...
    @overload
    def send_trigger(self, name: str | None = None, message: str | None = None, *,
                     wait: bool, timeout: float | None = None) -> ev.ServerResponse | None: ...

    def send_trigger(self, name: str | None = None, message: str | None = None,
                     wait: bool = False, timeout: float | None = None) -> ev.ServerResponse | None:
        """Send ``trigger-message`` with exactly one of ``name`` (a saved narrative trigger) or
        ``message`` (an inline event; ``<speak>…</speak>`` is scripted speech). Its reply reaches
        the event channels only, never an ``ask()``; a trigger that moves the story to another
        section brings ``on_narrative_section_changed``.

        Sent before the character is ready (while CONNECTING or RECONNECTING, before
        ``bot-ready``), the trigger is held and sent, in order with the other held ones, once the
        session is CONNECTED, as Convai's Unity SDK does; at most
        ``ConvaiConfig.pending_trigger_limit`` are held. When the session ends instead, the held
        triggers are dropped: a :class:`SessionError` (``session.invalid_state``) naming them is
        published on ``on_session_error`` and logged, and a held ``wait=True`` call raises it.

        ``wait``/``timeout``/errors otherwise as :meth:`send_text` (with ``wait`` a held trigger's
        ``timeout`` covers the wait for the character too); ``ValueError`` unless exactly one of
        ``name``/``message`` is given; :class:`SendQueueFullError` when the hold is full."""
        frame = protocol.trigger_message(name, message)
        self._check_open()
        limit = check_timeout("timeout", timeout)
        if wait:
            self._check_may_block("trigger-message with wait=True")
        label = repr(name) if name is not None else "(inline message)"
        return self._triggers.send(frame, label, lambda: self._session.state, wait,
                                   self._config.ack_timeout if limit is None else limit)

    def _write_trigger(self, frame: tuple[str, str], wait: bool) -> Future[ev.ServerResponse] | None:
        turns = self._session.turns
        return self._sender.write("trigger-message", frame, wait, register=turns.sent_trigger,
                                  unregister=lambda: turns.unsent(None, "trigger"))

    @overload
    def update_action_config(self, action_config: ActionConfig, wait: Literal[False] = False,
                             timeout: float | None = None) -> None: ...
    @overload
    def update_action_config(self, action_config: ActionConfig, wait: Literal[True],
                             timeout: float | None = None) -> ev.ServerResponse: ...
    @overload
    def update_action_config(self, action_config: ActionConfig, wait: bool,
                             timeout: float | None = None) -> ev.ServerResponse | None: ...

    def update_action_config(self, action_config: ActionConfig, wait: bool = False,
                             timeout: float | None = None) -> ev.ServerResponse | None:
        r"""Replace the session's actions, objects, characters and attention object mid-session: a
        ``context-update`` carrying ``action_config`` (and ``current_attention_object``, ``""`` when
        None, which clears it) with ``run_llm: "false"`` (no reply), as Convai's "Character actions"
        documentation describes. Later ``action-response``\ s follow the new config.

        Args:
            action_config: The new :class:`~convai_sync.ActionConfig` (already validated).
            wait, timeout: As :meth:`send_text`.

        Raises:
            TypeError: ``action_config`` is not an ``ActionConfig``. Otherwise as :meth:`send_text`.
        """
        if not isinstance(action_config, ActionConfig):
            raise TypeError(f"action_config must be an ActionConfig, got {type(action_config).__name__}")
        return self._sender.send("context-update", protocol.action_config_update(action_config.to_wire()),
                                 wait, timeout)

    @overload
    def interrupt(self, wait: Literal[False] = False, timeout: float | None = None) -> None: ...
    @overload
    def interrupt(self, wait: Literal[True], timeout: float | None = None) -> ev.ServerResponse: ...
    @overload
    def interrupt(self, wait: bool, timeout: float | None = None) -> ev.ServerResponse | None: ...

    def interrupt(self, wait: bool = False, timeout: float | None = None) -> ev.ServerResponse | None:
        """Stop the character (barge-in): drop its undelivered voice at once, then send
        ``interrupt-bot`` so the server stops the reply.

        The voice is dropped first, in every state, on the calling thread: the frames waiting in
        the MAIN_THREAD and BACKGROUND queues and in the session's inbox, and the interrupted
        turn's later frames; ``on_audio_interrupted`` then fires (a player drops its own buffer).
        ``wait``/``timeout``/errors of the send as :meth:`send_text`.
        """
        self._check_open()
        self._session.voice.interrupt("client")
        return self._sender.send("interrupt-bot", protocol.simple("interrupt-bot"), wait, timeout)

    @overload
    def update_template_keys(self, keys: Mapping[str, str], wait: Literal[False] = False,
                             timeout: float | None = None) -> None: ...
    @overload
    def update_template_keys(self, keys: Mapping[str, str], wait: Literal[True],
                             timeout: float | None = None) -> ev.ServerResponse: ...
    @overload
    def update_template_keys(self, keys: Mapping[str, str], wait: bool,
                             timeout: float | None = None) -> ev.ServerResponse | None: ...

    def update_template_keys(self, keys: Mapping[str, str], wait: bool = False,
                             timeout: float | None = None) -> ev.ServerResponse | None:
        """Send ``update-template-keys`` (a non-empty ``{name: value}`` of strings).
        ``wait``/``timeout``/errors as :meth:`send_text`."""
        return self._sender.send("update-template-keys", protocol.update_template_keys(keys), wait, timeout)

    @overload
    def update_dynamic_info(self, text: str, wait: Literal[False] = False,
                            timeout: float | None = None) -> None: ...
    @overload
    def update_dynamic_info(self, text: str, wait: Literal[True],
                            timeout: float | None = None) -> ev.ServerResponse: ...
    @overload
    def update_dynamic_info(self, text: str, wait: bool, timeout: float | None = None) -> ev.ServerResponse | None: ...

    def update_dynamic_info(self, text: str, wait: bool = False,
                            timeout: float | None = None) -> ev.ServerResponse | None:
        """Send ``update-dynamic-info`` (the legacy dynamic context). ``wait``/``timeout``/errors
        as :meth:`send_text`."""
        return self._sender.send("update-dynamic-info", protocol.update_dynamic_info(text), wait, timeout)

    @overload
    def update_context(self, text: str | None, mode: ContextMode = "append", run_llm: RunLLM = "auto",
                       wait: Literal[False] = False, timeout: float | None = None) -> None: ...
    @overload
    def update_context(self, text: str | None, mode: ContextMode = "append", run_llm: RunLLM = "auto", *,
                       wait: Literal[True], timeout: float | None = None) -> ev.ServerResponse: ...
    @overload
    def update_context(self, text: str | None, mode: ContextMode = "append", run_llm: RunLLM = "auto", *,
                       wait: bool, timeout: float | None = None) -> ev.ServerResponse | None: ...

    def update_context(self, text: str | None, mode: ContextMode = "append", run_llm: RunLLM = "auto",
                       wait: bool = False, timeout: float | None = None) -> ev.ServerResponse | None:
        """Send ``context-update``.

        Args:
            text: The context text (required unless ``mode="reset"``).
            mode: ``"append"`` (default), ``"replace"`` or ``"reset"``.
            run_llm: ``"true"`` (the character replies; the reply reaches the event channels
                only), ``"false"`` or ``"auto"`` (strings, as Convai's API takes them).
            wait: As :meth:`send_text`; the ack's ``extras`` carry the token budget
                (``token_count``, ``remaining_tokens``, ``max_tokens``).
            timeout: As :meth:`send_text`.

        Raises:
            ValueError: bad ``mode``/``run_llm``, or no text unless resetting. Otherwise as
                :meth:`send_text`.
        """
        turns = self._session.turns
        replies = run_llm == "true"
        return self._sender.send("context-update", protocol.context_update(text, mode, run_llm), wait, timeout,
                          register=turns.sent_trigger if replies else None,
                          unregister=(lambda: turns.unsent(None, "trigger")) if replies else None)

    @overload
    def toggle_tts(self, enabled: bool, wait: Literal[False] = False, timeout: float | None = None) -> None: ...
    @overload
    def toggle_tts(self, enabled: bool, wait: Literal[True], timeout: float | None = None) -> ev.ServerResponse: ...
    @overload
    def toggle_tts(self, enabled: bool, wait: bool, timeout: float | None = None) -> ev.ServerResponse | None: ...

    def toggle_tts(self, enabled: bool, wait: bool = False, timeout: float | None = None) -> ev.ServerResponse | None:
        """Send ``tts-toggle`` (turn the character's voice on or off; ``ask()`` then stops or starts
        waiting for the voice). ``wait``/``timeout``/errors as :meth:`send_text`."""
        response = self._sender.send("tts-toggle", protocol.tts_toggle(enabled), wait, timeout)
        self._session.voice.tts_enabled = bool(enabled)
        return response

    def send_audio(self, pcm: Buffer, sample_rate: int, num_channels: int = 1, timeout: float | None = None) -> None:
        """Send the user's voice: PCM16 of any length, which the transport frames (20 ms frames).

        The character hears it as speech (the server's VAD and speech-to-text, then a reply, as
        for a spoken utterance). Returns once all of it is written or queued; blocks only while
        the send queue is full (the server reads more slowly than the audio comes), never longer
        than ``timeout``. On the WebSocket the audio travels as Pipecat protobuf ``Frame.audio``
        binary frames (PROPOSED: Convai does not document audio on ``/chat``; Convai's Web SDK
        WebSocket transport uses Pipecat's ``ProtobufFrameSerializer``).

        Args:
            pcm: PCM16 little-endian samples, interleaved by channel: any C-contiguous buffer
                (``bytes``, ``bytearray``, a ``memoryview``/``array``/NumPy array of any item
                type), taken by its byte length.
            sample_rate: Hz, 8000..192000 (16000 or 48000 are usual).
            num_channels: 1..8 (mono is what speech-to-text expects). On LiveKit the microphone
                track keeps the first call's format: audio in another format is converted to it
                (channels mixed down or copied, the rate resampled), so a format change loses no
                audio and needs no renegotiation.
            timeout: Seconds from the call for the back-pressure wait; None means
                ``config.ack_timeout``; 0 never waits.

        Raises:
            ValueError: not a buffer, a non-contiguous one, not whole PCM16 frames, a bad
                ``sample_rate``/``num_channels``, or a negative ``timeout``.
            InvalidStateError: not CONNECTED, or the transport carries no audio (the message says
                which to use); :class:`SendQueueFullError` on every transport when the audio was
                not all accepted within ``timeout`` (the WebSocket's send queue stayed full; the
                LiveKit microphone takes audio at real time beyond about 1 s of buffer): the audio
                accepted before then is sent, the rest is not.
            ConvaiError: ``audio.mic_publish_failed`` on LiveKit when the server did not subscribe
                to the microphone track within 3 s (nothing was sent; a later call tries again).
            ImportError: the WebSocket transport needs the ``protobuf`` package:
                ``pip install 'convai-sync[audio]'``.
        """
        self._sender.send_audio(pcm, sample_rate, num_channels, timeout)

    @overload
    def reset_idle_timer(self, wait: Literal[False] = False, timeout: float | None = None) -> None: ...
    @overload
    def reset_idle_timer(self, wait: Literal[True], timeout: float | None = None) -> ev.ServerResponse: ...
    @overload
    def reset_idle_timer(self, wait: bool, timeout: float | None = None) -> ev.ServerResponse | None: ...

    def reset_idle_timer(self, wait: bool = False, timeout: float | None = None) -> ev.ServerResponse | None:
        """Send ``reset-idle-timer`` (any message also resets the server's idle timer) and clear
        the local idle deadline. ``wait``/``timeout``/errors as :meth:`send_text`."""
        return self._sender.send("reset-idle-timer", protocol.simple("reset-idle-timer"), wait, timeout)

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
            InvalidStateError: on the session thread, or the client closed while waiting.
            ConvaiTimeoutError: nothing matched within ``timeout`` seconds (also a TimeoutError).
            ValueError: ``timeout`` negative.
        """
        limit = check_timeout("timeout", timeout)
        self._check_may_block("wait_for()")
        try:
            return self._hub.wait_for(event_type, predicate, limit)
        except ConvaiError:
            raise
        except TimeoutError as exc:
            raise timeout_error(str(exc), self.session_id) from None

    # ------------------------------------------------------------------ diagnostics

    def diagnostics(self) -> dict[str, Any]:
        """A snapshot for logs and bug reports (plain JSON-able values; never the API key)."""
        threads = [t.name for t in threading.enumerate() if t.name.startswith("convai-")]
        key = self._config.api_key
        return {
            **self._session.snapshot(),
            "url": scrub(self._config.url, key),
            "transport": self._config.transport,
            "character_id": scrub(self._config.character_id, key),
            "delivery_policy": self._config.delivery_policy.name,
            "events": self._hub.stats(),
            "threads": threads,
            "closed": self._closed,
        }

    def __repr__(self) -> str:
        return scrub(f"ConvaiClient(character_id={self._config.character_id!r}, url={self._config.url!r}, "
                     f"state={self.state.name})", self._config.api_key)
