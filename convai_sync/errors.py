"""Error catalog, error value and exception tree.

Every documented Convai error code lives in one table, :data:`CATALOG`, which the rest of the SDK reads:
category, recoverability, whether it is auto-retried, its :class:`SessionErrorStage` and its HTTP
status where one is documented. ``vision.*`` codes are left out: Python has no camera stack.

Sources: Convai Unity SDK docs, "Connection and API issues" (docs.convai.com,
convai-unity-sdk/troubleshooting/connection-and-api-issues) and the Unity SDK's
``SessionErrorCodes``; Convai Web SDK docs, "Error Handling" (docs.convai.com/api-docs/
plugins-and-integrations/web-plugins/convai-web-sdk/error-handling).

Exception tree::

    ConvaiError(Exception)              .error: SessionError, .error_code: ErrorCode
     +-- ConfigurationError             config.*  (raised before any network traffic)
     +-- ConcurrencyLimitError          connection.connect_concurrency_limit_reached
     +-- UsageLimitError                server.usage_limit_reached
     +-- InvalidStateError              session.invalid_state (wrong state, or a blocking call
     |    |                             on the thread that would have to deliver its result)
     |    +-- SendQueueFullError        the server stopped reading; the message was not sent
     +-- ConvaiTimeoutError(.., TimeoutError)  a blocking call ran out of time (connection.timeout)

A note on ``connection.connect_speaker_limit_reached``: the Unity troubleshooting table marks it
recoverable, but the same page's retry list and the Unity SDK's source (``SessionErrorCodes.IsRecoverable``)
treat it as not recoverable and not retried; this catalog follows the source.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

from .names import ReadableNames


class SessionErrorStage(ReadableNames, enum.IntEnum):
    """Broad lifecycle stage where an error originated (Convai Unity ``SessionErrorStage``)."""

    UNKNOWN = 0
    CONFIGURATION = 1
    CONNECT_API = 2
    TRANSPORT = 3
    SESSION_RECOVERY = 4
    RUNTIME = 5


class ErrorCode(str, enum.Enum):
    """Every documented Convai session error code, as a ``str`` enum (sources: the module docstring).

    ``ErrorCode.CONNECTION_TIMEOUT == "connection.timeout"`` holds, so codes compare equal to the
    hierarchical strings Convai documents. Per-code facts live in :data:`CATALOG`; use the
    properties below rather than testing codes one by one. Unlike the other public enums (which
    print as ``Type.NAME``), a code prints as Convai's own name for it, ``connection.timeout``.
    """

    CONFIG_API_KEY_MISSING = "config.api_key_missing"
    CONFIG_CHARACTER_ID_MISSING = "config.character_id_missing"
    CONFIG_AUTH_TOKEN_PROVIDER_MISSING = "config.auth_token_provider_missing"
    CONFIG_AUTH_TOKEN_ENDPOINT_INVALID = "config.auth_token_endpoint_invalid"
    CONFIG_AUTH_TOKEN_MODE_REQUIRED = "config.auth_token_mode_required"
    # Not in Convai's table: every other invalid ConvaiConfig value (client-side code).
    CONFIG_INVALID = "config.invalid"

    CONNECTION_CONNECT_INVALID_API_KEY = "connection.connect_invalid_api_key"
    CONNECTION_AUTH_FAILED = "connection.auth_failed"
    CONNECTION_INVALID_TOKEN = "connection.invalid_token"
    CONNECTION_AUTH_TOKEN_FETCH_FAILED = "connection.auth_token_fetch_failed"
    CONNECTION_CONNECT_INVALID_SESSION_ID = "connection.connect_invalid_session_id"
    CONNECTION_CONNECT_CHARACTER_NOT_FOUND = "connection.connect_character_not_found"
    CONNECTION_CONNECT_REALTIME_NOT_ALLOWED = "connection.connect_realtime_not_allowed"
    CONNECTION_CONNECT_MULTI_CHARACTER_NOT_ALLOWED = "connection.connect_multi_character_not_allowed"
    CONNECTION_CONNECT_MULTI_CHARACTER_ROSTER_LIMIT = "connection.connect_multi_character_roster_limit"
    CONNECTION_CONNECT_CONCURRENCY_LIMIT_REACHED = "connection.connect_concurrency_limit_reached"
    CONNECTION_CONNECT_SPEAKER_LIMIT_REACHED = "connection.connect_speaker_limit_reached"
    CONNECTION_CONNECT_BOT_START_FAILED = "connection.connect_bot_start_failed"
    CONNECTION_CONNECT_UNHANDLED_SERVER_EXCEPTION = "connection.connect_unhandled_server_exception"
    CONNECTION_CONNECT_VALIDATION_ERROR = "connection.connect_validation_error"
    CONNECTION_TIMEOUT = "connection.timeout"
    CONNECTION_NETWORK_ERROR = "connection.network_error"
    CONNECTION_RATE_LIMITED = "connection.rate_limited"
    CONNECTION_SERVICE_UNAVAILABLE = "connection.service_unavailable"
    CONNECTION_SERVER_ERROR = "connection.server_error"
    CONNECTION_NOT_FOUND = "connection.not_found"
    CONNECTION_BAD_REQUEST = "connection.bad_request"
    CONNECTION_FAILED = "connection.failed"

    TRANSPORT_ICE_FAILED = "transport.ice_failed"
    TRANSPORT_PEER_CONNECTION_FAILED = "transport.peer_connection_failed"
    TRANSPORT_LIVEKIT_ERROR = "transport.livekit_error"
    TRANSPORT_SIGNAL_DISCONNECTED = "transport.signal_disconnected"

    AUDIO_MIC_UNAVAILABLE = "audio.mic_unavailable"
    AUDIO_MIC_PERMISSION_DENIED = "audio.mic_permission_denied"
    AUDIO_MIC_PUBLISH_FAILED = "audio.mic_publish_failed"

    SERVER_USAGE_LIMIT_REACHED = "server.usage_limit_reached"
    SERVER_FATAL_ERROR = "server.fatal_error"
    SERVER_ERROR = "server.error"

    SESSION_TOKEN_EXPIRED = "session.token_expired"
    SESSION_INVALID_STATE = "session.invalid_state"
    SESSION_CANCELLED = "session.cancelled"
    # Client-side code (not in Convai's table): the configured max_session_duration ended it.
    SESSION_DURATION_LIMIT_REACHED = "session.duration_limit_reached"
    # Client-side code: the local idle deadline passed (Unity's OnUserIdleTimeoutElapsed).
    SESSION_IDLE_TIMEOUT = "session.idle_timeout"

    PROTOCOL_MESSAGE_INVALID = "protocol.message_invalid"
    PROTOCOL_PARSE_FAILED = "protocol.parse_failed"

    def __str__(self) -> str:
        return self.value

    @property
    def info(self) -> CodeInfo:
        """This code's row in :data:`CATALOG`."""
        return CATALOG[self]

    @property
    def category(self) -> str:
        """First dotted segment, e.g. ``"connection"``."""
        return self.value.split(".", 1)[0]

    @property
    def is_recoverable(self) -> bool:
        """True when Convai's Unity SDK treats the code as recoverable (``SessionErrorCodes.IsRecoverable``)."""
        return CATALOG[self].recoverable

    @property
    def is_retried(self) -> bool:
        """True when the code is on the Unity troubleshooting page's list of codes that trigger automatic retries."""
        return CATALOG[self].retried

    @property
    def stage(self) -> SessionErrorStage:
        """Default :class:`SessionErrorStage` for the code."""
        return CATALOG[self].stage

    @property
    def http_status(self) -> int | None:
        """Documented HTTP status (``0`` = no response), or None."""
        return CATALOG[self].http_status

    @property
    def description(self) -> str:
        """Human-readable meaning, as Convai's error tables describe the code."""
        return CATALOG[self].meaning


class CodeInfo(NamedTuple):
    """One row of the catalog: meaning, recoverable, auto-retried, stage, documented HTTP status."""

    meaning: str
    recoverable: bool
    retried: bool
    stage: SessionErrorStage
    http_status: int | None = None


_C = SessionErrorStage.CONFIGURATION
_A = SessionErrorStage.CONNECT_API
_T = SessionErrorStage.TRANSPORT
_R = SessionErrorStage.RUNTIME
_S = SessionErrorStage.SESSION_RECOVERY
E = ErrorCode

#: The one table the SDK reads for per-code facts.
CATALOG: dict[ErrorCode, CodeInfo] = {
    E.CONFIG_API_KEY_MISSING: CodeInfo("API key is empty", False, False, _C),
    E.CONFIG_CHARACTER_ID_MISSING: CodeInfo("character id is empty", False, False, _C),
    E.CONFIG_AUTH_TOKEN_PROVIDER_MISSING: CodeInfo(
        "auth-token mode without a provider or endpoint", False, False, _C),
    E.CONFIG_AUTH_TOKEN_ENDPOINT_INVALID: CodeInfo(
        "token endpoint is not HTTPS or loopback HTTP", False, False, _C),
    E.CONFIG_AUTH_TOKEN_MODE_REQUIRED: CodeInfo(
        "explicit token connect while another auth mode is active", False, False, _C),
    E.CONFIG_INVALID: CodeInfo("a configuration value is invalid", False, False, _C),
    E.CONNECTION_CONNECT_INVALID_API_KEY: CodeInfo("API key rejected", False, False, _A, 401),
    E.CONNECTION_AUTH_FAILED: CodeInfo("authentication failed", False, False, _A, 403),
    E.CONNECTION_INVALID_TOKEN: CodeInfo("connection token invalid", False, False, _A, 401),
    E.CONNECTION_AUTH_TOKEN_FETCH_FAILED: CodeInfo(
        "short-lived token fetch failed", True, False, _A),
    E.CONNECTION_CONNECT_INVALID_SESSION_ID: CodeInfo(
        "invalid session id / UUID", False, False, _A, 400),
    E.CONNECTION_CONNECT_CHARACTER_NOT_FOUND: CodeInfo(
        "character (or character session) missing or inaccessible", False, False, _A, 404),
    E.CONNECTION_CONNECT_REALTIME_NOT_ALLOWED: CodeInfo(
        "realtime not on plan (or session owned by another account)", False, False, _A, 403),
    E.CONNECTION_CONNECT_MULTI_CHARACTER_NOT_ALLOWED: CodeInfo(
        "more than one character without multi-character access", False, False, _A, 403),
    E.CONNECTION_CONNECT_MULTI_CHARACTER_ROSTER_LIMIT: CodeInfo(
        "character roster over the plan limit", False, False, _A, 403),
    E.CONNECTION_CONNECT_CONCURRENCY_LIMIT_REACHED: CodeInfo(
        "the plan's simultaneous-session limit is reached", True, True, _A, 429),
    E.CONNECTION_CONNECT_SPEAKER_LIMIT_REACHED: CodeInfo(
        "end-user speaker limit reached", False, False, _A, 429),
    E.CONNECTION_CONNECT_BOT_START_FAILED: CodeInfo(
        "character pipeline failed to start", True, True, _A, 500),
    E.CONNECTION_CONNECT_UNHANDLED_SERVER_EXCEPTION: CodeInfo(
        "unhandled server exception during connect", True, True, _A, 500),
    E.CONNECTION_CONNECT_VALIDATION_ERROR: CodeInfo(
        "connect request failed validation", False, False, _A, 422),
    E.CONNECTION_TIMEOUT: CodeInfo("connect exceeded the connection timeout", True, True, _A),
    E.CONNECTION_NETWORK_ERROR: CodeInfo("DNS, socket or unreachable host", True, True, _A, 0),
    E.CONNECTION_RATE_LIMITED: CodeInfo("too many connects", True, True, _A, 429),
    E.CONNECTION_SERVICE_UNAVAILABLE: CodeInfo("service temporarily unavailable", True, True, _A, 503),
    E.CONNECTION_SERVER_ERROR: CodeInfo("server error (5xx)", True, True, _A, 500),
    E.CONNECTION_NOT_FOUND: CodeInfo("resource not found", False, False, _A, 404),
    E.CONNECTION_BAD_REQUEST: CodeInfo("invalid parameters (4xx)", False, False, _A, 400),
    E.CONNECTION_FAILED: CodeInfo("connection failed (e.g. invalid room details)", False, False, _A),
    E.TRANSPORT_ICE_FAILED: CodeInfo("ICE negotiation failed", True, True, _T),
    E.TRANSPORT_PEER_CONNECTION_FAILED: CodeInfo("peer connection failed", False, False, _T),
    E.TRANSPORT_LIVEKIT_ERROR: CodeInfo("LiveKit SDK error", False, False, _T),
    E.TRANSPORT_SIGNAL_DISCONNECTED: CodeInfo("signal connection dropped", True, True, _T),
    E.AUDIO_MIC_UNAVAILABLE: CodeInfo("microphone unavailable", False, False, _R),
    E.AUDIO_MIC_PERMISSION_DENIED: CodeInfo("microphone permission denied", False, False, _R),
    E.AUDIO_MIC_PUBLISH_FAILED: CodeInfo("failed to publish the microphone track", False, False, _R),
    E.SERVER_USAGE_LIMIT_REACHED: CodeInfo(
        "usage quota exceeded; the pipeline is terminated", False, False, _R),
    E.SERVER_FATAL_ERROR: CodeInfo("fatal pipeline error; session terminated", False, False, _R),
    E.SERVER_ERROR: CodeInfo("non-fatal pipeline error", True, True, _R),
    E.SESSION_TOKEN_EXPIRED: CodeInfo("session token expired", False, False, _S),
    E.SESSION_INVALID_STATE: CodeInfo("operation in an invalid state", False, False, _R),
    E.SESSION_CANCELLED: CodeInfo("cancelled by the application", False, False, _R),
    E.SESSION_DURATION_LIMIT_REACHED: CodeInfo(
        "the configured max_session_duration was reached", False, False, _R),
    E.SESSION_IDLE_TIMEOUT: CodeInfo(
        "the idle deadline announced by user-idle-warning passed", False, False, _R),
    E.PROTOCOL_MESSAGE_INVALID: CodeInfo("invalid RTVI message", False, False, _R),
    E.PROTOCOL_PARSE_FAILED: CodeInfo("could not parse an RTVI message", False, False, _R),
}
del E

#: Client-side codes this SDK adds to Convai's table (never produced by the server).
CLIENT_SIDE_CODES: frozenset[ErrorCode] = frozenset(
    {ErrorCode.CONFIG_INVALID, ErrorCode.SESSION_DURATION_LIMIT_REACHED, ErrorCode.SESSION_IDLE_TIMEOUT}
)



def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class SessionError:
    """A session-level error (Convai Unity SDK ``SessionError``).

    Attributes:
        error_code: The :class:`ErrorCode`.
        message: Human-readable description (never contains the API key).
        session_id: Session id at the time of the error, or None before one exists.
        timestamp: Aware UTC datetime of the error.
        is_recoverable: True when the SDK may recover automatically (retry/reconnect).
        exception: The underlying exception, if any.
        stage: Lifecycle stage where the error originated.
        http_status_code: HTTP status for connect-API errors, else None.
    """

    error_code: ErrorCode
    message: str
    session_id: str | None = None
    timestamp: datetime = field(default_factory=_utcnow)
    is_recoverable: bool = False
    exception: BaseException | None = field(default=None, compare=False)
    stage: SessionErrorStage = SessionErrorStage.UNKNOWN
    http_status_code: int | None = None

    @classmethod
    def of(
        cls,
        code: ErrorCode,
        message: str | None = None,
        *,
        session_id: str | None = None,
        exception: BaseException | None = None,
        stage: SessionErrorStage | None = None,
        http_status_code: int | None = None,
        is_recoverable: bool | None = None,
    ) -> SessionError:
        """Build an error whose recoverability and stage default to the catalog's row."""
        row = CATALOG[code]
        return cls(
            error_code=code,
            message=message if message is not None else row.meaning,
            session_id=session_id,
            is_recoverable=row.recoverable if is_recoverable is None else is_recoverable,
            exception=exception,
            stage=row.stage if stage is None else stage,
            http_status_code=http_status_code,
        )

    @property
    def category(self) -> str:
        """First segment of the code, e.g. ``"connection"``."""
        return self.error_code.category

    @property
    def is_connection_error(self) -> bool:
        return self.category == "connection"

    @property
    def is_session_error(self) -> bool:
        return self.category == "session"

    @property
    def is_transport_error(self) -> bool:
        return self.category == "transport"

    @property
    def is_protocol_error(self) -> bool:
        return self.category == "protocol"

    @property
    def is_server_error(self) -> bool:
        return self.category == "server"

    @property
    def has_http_status_code(self) -> bool:
        """True when ``http_status_code`` is set and non-zero (Unity relay semantics)."""
        return bool(self.http_status_code)


class ConvaiError(Exception):
    """Base of every error the SDK raises; carries a :class:`SessionError` as ``.error``."""

    def __init__(self, error: SessionError) -> None:
        super().__init__(f"[{error.error_code.value}] {error.message}")
        self.error = error

    @property
    def error_code(self) -> ErrorCode:
        return self.error.error_code


class ConfigurationError(ConvaiError, ValueError):
    """Invalid configuration (``config.*``); raised before any network traffic."""


class ConcurrencyLimitError(ConvaiError):
    """The plan's concurrency limit is reached (``connection.connect_concurrency_limit_reached``)."""


class UsageLimitError(ConvaiError):
    """The account's usage quota is exhausted (``server.usage_limit_reached``)."""


class InvalidStateError(ConvaiError):
    """The call is not valid in the current state, or would deadlock (``session.invalid_state``)."""


class SendQueueFullError(InvalidStateError):
    """The send queue is full because the server stopped reading; the message was not sent.

    A subclass of :class:`InvalidStateError` (``session.invalid_state``): like sending while not
    CONNECTED, the session cannot take input right now. The keepalive drops a link that stays
    silent, and the reconnect policy then restores it.
    """


class ConvaiTimeoutError(ConvaiError, TimeoutError):
    """A blocking call (``connect``, ``ask``, ``wait_for``, a ``wait=True`` send) ran out of time.

    Its ``error_code`` is ``connection.timeout``. Also a built-in ``TimeoutError``, so
    ``except TimeoutError`` catches it too.
    """


def timeout_error(message: str, session_id: str | None = None,
                  stage: SessionErrorStage = SessionErrorStage.RUNTIME) -> ConvaiTimeoutError:
    """Shorthand for a :class:`ConvaiTimeoutError` with ``connection.timeout`` and ``message``."""
    return ConvaiTimeoutError(SessionError.of(ErrorCode.CONNECTION_TIMEOUT, message, session_id=session_id,
                                              stage=stage))


def error_for(error: SessionError) -> ConvaiError:
    """Return the most specific :class:`ConvaiError` subclass instance for ``error``."""
    code = error.error_code
    if code.category == "config":
        return ConfigurationError(error)
    if code is ErrorCode.CONNECTION_CONNECT_CONCURRENCY_LIMIT_REACHED:
        return ConcurrencyLimitError(error)
    if code is ErrorCode.SERVER_USAGE_LIMIT_REACHED:
        return UsageLimitError(error)
    if code is ErrorCode.SESSION_INVALID_STATE:
        return InvalidStateError(error)
    exc = ConvaiError(error)
    if error.exception is not None:
        exc.__cause__ = error.exception  # e.g. what a token_provider raised
    return exc


def invalid_state(message: str, session_id: str | None = None) -> InvalidStateError:
    """Shorthand for an :class:`InvalidStateError` with ``session.invalid_state``."""
    return InvalidStateError(SessionError.of(ErrorCode.SESSION_INVALID_STATE, message, session_id=session_id))
