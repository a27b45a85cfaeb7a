"""``ConvaiConfig``: every setting of a client, frozen and validated.

Invalid values raise :class:`~convai_sync.errors.ConfigurationError` (``config.invalid``) at
construction. An empty ``api_key`` or ``character_id`` is accepted here (so ``from_env()`` can
build a config on a machine without credentials) and fails ``connect()`` with
``config.api_key_missing`` / ``config.character_id_missing`` before any network traffic.
The API key never appears in ``repr``/``str``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .delivery import EventDeliveryPolicy
from .errors import ConfigurationError, ErrorCode, SessionError
from .retry import ReconnectPolicy, RetryPolicy, SlotWaitPolicy

DEFAULT_URL = "https://live.convai.com"
MAX_CONNECTION_TIMEOUT = 120.0
TRANSPORTS = ("websocket", "livekit")


def _invalid(message: str) -> ConfigurationError:
    return ConfigurationError(SessionError.of(ErrorCode.CONFIG_INVALID, message))


@dataclass(frozen=True, repr=False)
class ConvaiConfig:
    """Settings of one :class:`~convai_sync.ConvaiClient` (DESIGN.md §4). All times in seconds.

    Attributes:
        api_key: Convai API key, sent as ``X-API-Key``. Never logged or shown in ``repr``.
        character_id: The character to talk to.
        url: Base URL of the realtime service (``https://live.convai.com``) or a simulator.
        transport: ``"websocket"`` (Convai's ``/chat`` WebSocket) or ``"livekit"`` (extra).
        connection_timeout: Bound on each connect attempt including ``bot-ready`` (<= 120).
        retry_policy: Connect attempts (:class:`RetryPolicy`, default 4 attempts 0/1/2/4 s).
        reconnect_policy: Reconnects after an unexpected drop (default 3 attempts).
        slot_wait: Keep waiting while the concurrency limit holds; None = fail at once.
        delivery_policy: Default :class:`EventDeliveryPolicy` of every subscription.
        end_user_id: Stable end-user id (required by characters with Long-Term Memory).
        end_user_metadata: Extra end-user data sent with ``end_user_id``.
        character_session_id: Resume this conversation; None starts a new one.
        tts_enabled: ``default_tts_enabled`` for the session.
        enable_emotion: Ask for ``bot-emotion`` (sends ``emotion_config``).
        max_session_duration: End the session cleanly after this long; None = no cap.
        session_duration_warnings: Lead times before the cap at which a warning fires.
        reset_duration_on_reconnect: Restart the duration clock after a reconnect.
        ack_timeout: How long a ``wait=True`` send waits for its ``server-response``.
        strict_handlers: Re-raise a handler's exception at the next ``pump``/``wait_for``/``close``.
        auto_reset_idle: Send ``reset-idle-timer`` semantics on every send (any message resets
            the server's idle timer; this also resets the local idle deadline).
        immediate_handler_budget: An IMMEDIATE handler running longer logs a warning.
        event_queue_size: Bound of the MAIN_THREAD and BACKGROUND queues (overflow is reported).
        close_timeout: Seconds ``disconnect()`` and ``close()`` take at most, from the call,
            whatever the server does (default 1).
        http_timeout: Timeout of each socket operation of ``POST /connect`` (the whole attempt,
            handshake and ``bot-ready`` included, is bounded by ``connection_timeout``).
        disconnect_timeout: Bound on a ``POST /disconnect`` made while the client goes on
            (after a drop, before reconnecting); ``close()`` bounds it by ``close_timeout``.
        keepalive_interval: Seconds between WebSocket pings while CONNECTED; None = no keepalive.
        keepalive_timeout: A connection from which nothing (frame or pong) arrived for
            ``keepalive_interval + keepalive_timeout`` seconds is dropped as lost and reconnected.
        max_message_bytes: Largest inbound message accepted (Convai's own limit is 16 MB);
            a larger one is discarded unread and reported as ``protocol.message_invalid``.
        send_queue_bytes: Bound of the bytes waiting while the server is slow to read; beyond
            it a send fails at once with ``SendQueueFullError``.
        close_grace: Seconds a transport close waits for the server's close reply.
    """

    api_key: str = ""
    character_id: str = ""
    url: str = DEFAULT_URL
    transport: str = "websocket"
    connection_timeout: float = 30.0
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    reconnect_policy: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    slot_wait: SlotWaitPolicy | None = None
    delivery_policy: EventDeliveryPolicy = EventDeliveryPolicy.BACKGROUND
    end_user_id: str | None = None
    end_user_metadata: Mapping[str, Any] | None = None
    character_session_id: str | None = None
    tts_enabled: bool = True
    enable_emotion: bool = True
    max_session_duration: float | None = None
    session_duration_warnings: tuple[float, ...] = (60.0, 10.0)
    reset_duration_on_reconnect: bool = False
    ack_timeout: float = 10.0
    strict_handlers: bool = False
    auto_reset_idle: bool = False
    immediate_handler_budget: float = 0.02
    event_queue_size: int = 10_000
    close_timeout: float = 1.0
    http_timeout: float = 15.0
    disconnect_timeout: float = 2.0
    keepalive_interval: float | None = 20.0
    keepalive_timeout: float = 20.0
    max_message_bytes: int = 16 * 1024 * 1024
    send_queue_bytes: int = 1024 * 1024
    close_grace: float = 0.25

    def __post_init__(self) -> None:
        for name in ("connection_timeout", "ack_timeout", "close_timeout", "http_timeout",
                     "immediate_handler_budget", "max_session_duration", "disconnect_timeout",
                     "keepalive_interval", "keepalive_timeout", "close_grace"):
            value = getattr(self, name)
            if value is None and name in ("max_session_duration", "keepalive_interval"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise _invalid(f"{name} must be a finite number of seconds, got {value!r}")
        if isinstance(self.event_queue_size, bool) or not isinstance(self.event_queue_size, int):
            raise _invalid(f"event_queue_size must be an int, got {self.event_queue_size!r}")
        if not isinstance(self.session_duration_warnings, tuple) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w)
                for w in self.session_duration_warnings):
            raise _invalid("session_duration_warnings must be a tuple of finite seconds")
        if not isinstance(self.api_key, str) or not isinstance(self.character_id, str):
            raise _invalid("api_key and character_id must be strings")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise _invalid(f"url must be an http(s) URL, got {self.url!r}")
        if self.transport not in TRANSPORTS:
            raise _invalid(f"transport must be one of {TRANSPORTS}, got {self.transport!r}")
        if not 0 < self.connection_timeout <= MAX_CONNECTION_TIMEOUT:
            raise _invalid(
                f"connection_timeout must be in (0, {MAX_CONNECTION_TIMEOUT:g}] seconds, "
                f"got {self.connection_timeout!r}"
            )
        for name in ("ack_timeout", "close_timeout", "http_timeout", "immediate_handler_budget",
                     "disconnect_timeout", "keepalive_timeout", "close_grace"):
            if getattr(self, name) <= 0:
                raise _invalid(f"{name} must be > 0 seconds")
        if self.keepalive_interval is not None and self.keepalive_interval <= 0:
            raise _invalid("keepalive_interval must be > 0 seconds or None")
        for name in ("max_message_bytes", "send_queue_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
                raise _invalid(f"{name} must be an int >= 1024 bytes, got {value!r}")
        if self.max_session_duration is not None and self.max_session_duration <= 0:
            raise _invalid("max_session_duration must be > 0 seconds or None")
        if any(w <= 0 for w in self.session_duration_warnings):
            raise _invalid("session_duration_warnings must be lead times > 0 seconds")
        if self.event_queue_size < 1:
            raise _invalid("event_queue_size must be >= 1")
        if not isinstance(self.delivery_policy, EventDeliveryPolicy):
            raise _invalid("delivery_policy must be an EventDeliveryPolicy")
        if self.end_user_metadata is not None and not isinstance(self.end_user_metadata, Mapping):
            raise _invalid("end_user_metadata must be a mapping or None")

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "api_key":
                shown.append(f"api_key={'***' if value else ''!r}")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"ConvaiConfig({', '.join(shown)})"

    __str__ = __repr__

    def replace(self, **changes: Any) -> ConvaiConfig:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def validate_for_connect(self) -> None:
        """Raise ``ConfigurationError`` (``config.api_key_missing`` / ``config.character_id_missing``)."""
        if not self.api_key.strip():
            raise ConfigurationError(SessionError.of(
                ErrorCode.CONFIG_API_KEY_MISSING,
                "API key not configured: set ConvaiConfig.api_key or CONVAI_API_KEY"))
        if not self.character_id.strip():
            raise ConfigurationError(SessionError.of(
                ErrorCode.CONFIG_CHARACTER_ID_MISSING,
                "character id not configured: set ConvaiConfig.character_id or CONVAI_CHARACTER_ID"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ConvaiConfig:
        """Build a config from ``CONVAI_API_KEY``, ``CONVAI_CHARACTER_ID`` and ``CONVAI_URL``.

        Args:
            environ: Mapping to read (default ``os.environ``).
            **overrides: Any other field.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "api_key": env.get("CONVAI_API_KEY", ""),
            "character_id": env.get("CONVAI_CHARACTER_ID", ""),
        }
        if env.get("CONVAI_URL"):
            values["url"] = env["CONVAI_URL"]
        values.update(overrides)
        return cls(**values)
