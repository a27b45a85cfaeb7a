"""What each documented ErrorCode / DisconnectReason looks like on the wire when the simulator injects it.

The table follows Convai's documented connect-API statuses and detail texts (and PROPOSED texts
where Convai documents none); disconnect reasons travel on the WebSocket as close codes
``4000 + reason``. Codes only a client can produce raise ValueError
with a hint on how to trigger them instead. Pure data and lookups; no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from convai_sync.disconnect import DisconnectReason
from convai_sync.errors import CATALOG, ErrorCode, SessionErrorStage
from simulator.core.tokens import Refusal

#: Simulator extension: WebRTC-only transport failures travel as this close code, reason = code string.
TRANSPORT_FAULT_CLOSE_CODE = 4100

SESSION_EXPIRED_REASON = "Session expired. Please reconnect via /connect"
#: Convai's 400 for a Long-Term-Memory character without ``end_user_id`` (realtime API docs, "Identifiers").
MISSING_END_USER_ID = ("Missing end_user_id. end_user_id is required when the character has Long Term Memory "
                       "enabled. Provide end_user_id or disable Long Term Memory.")
#: The refusal of a new end user past the key's cap for an LTM character (Convai docs: "LTM speaker limit reached").
LTM_SPEAKER_LIMIT = "LTM speaker limit reached"
USAGE_LIMIT_REASON = "Usage limit exceeded"
DEFAULT_FATAL_TEXT = "Pipeline error: simulated fatal error"
DEFAULT_ERROR_TEXT = "Pipeline error: simulated recoverable error"
DEFAULT_USAGE_MESSAGE = "Usage limit reached for your plan. The session will end."
NOT_JSON_FRAME = "this frame is not JSON {"

VALIDATION_DETAIL: list[dict[str, Any]] = [
    {
        "type": "value_error",
        "loc": ["body", "transport"],
        "msg": "Value error, Invalid transport: sse",
        "input": "sse",
        "ctx": {"error": "Invalid transport: sse"},
    }
]


class ConnectKind(enum.Enum):
    """How a connect-API fault is produced."""

    HTTP_ERROR = "http_error"  # answer with status + body
    ABORT = "abort"  # drop the TCP connection without an HTTP response
    NO_BOT_READY = "no_bot_ready"  # 200, but the session never sends bot-ready
    INVALID_ROOM = "invalid_room"  # 200 with a body lacking session_id / room_url


@dataclass(frozen=True)
class ConnectFault:
    """A fault answered on the next ``/connect`` calls."""

    code: ErrorCode
    kind: ConnectKind
    status: int = 200
    body: Mapping[str, Any] = field(default_factory=dict)


class LiveKind(enum.Enum):
    """How a fault acts on a live session."""

    CLOSE = "close"  # close frame with code + reason
    ABORT = "abort"  # TCP drop, no close frame
    PIPELINE_ERROR = "pipeline_error"  # RTVI error fatal:false; the session continues
    FATAL_ERROR = "fatal_error"  # RTVI error fatal:true, then close 1011
    USAGE_LIMIT = "usage_limit"  # usage-limit-reached, then close 1008
    RAW_FRAME = "raw_frame"  # a malformed text frame; the session continues


@dataclass(frozen=True)
class LiveFault:
    """A fault acting on live sessions."""

    label: str
    kind: LiveKind
    close_code: int = 1000
    reason: str = ""
    text: str = ""
    quota_type: str = "interaction"

    @property
    def repeats(self) -> bool:
        """True when ``times`` sends the frame that many times (the session survives it)."""
        return self.kind in (LiveKind.PIPELINE_ERROR, LiveKind.RAW_FRAME)


def _http(status: int, detail: Any, error_code: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": detail}
    if error_code is not None:
        body["error_code"] = error_code
    return body


E = ErrorCode
#: status, detail, server error_code for every HTTP connect-API row.
_HTTP_ROWS: dict[ErrorCode, tuple[int, Any, str | None]] = {
    E.CONNECTION_CONNECT_INVALID_API_KEY: (401, "Invalid API key", "invalid_api_key"),
    E.CONNECTION_INVALID_TOKEN: (401, "Invalid or expired API-AUTH-TOKEN", "invalid_api_key"),
    E.CONNECTION_AUTH_FAILED: (403, "Authentication failed", "realtime_access_denied"),
    E.CONNECTION_CONNECT_INVALID_SESSION_ID: (400, "Invalid session ID format", "bad_request"),
    E.CONNECTION_CONNECT_CHARACTER_NOT_FOUND: (
        404, "Character not found or doesn't belong to user", "character_not_found"),
    E.CONNECTION_NOT_FOUND: (404, "Character session not found", "session_not_found"),
    E.CONNECTION_CONNECT_REALTIME_NOT_ALLOWED: (
        403, "Realtime access is not available on your plan", "realtime_access_denied"),
    E.CONNECTION_CONNECT_MULTI_CHARACTER_NOT_ALLOWED: (
        403, "multi_character_v0_disabled: this account has no multi-character access", None),
    E.CONNECTION_CONNECT_MULTI_CHARACTER_ROSTER_LIMIT: (
        403, "multi_character_roster_limit_exceeded: the roster exceeds your plan's limit", None),
    E.CONNECTION_CONNECT_CONCURRENCY_LIMIT_REACHED: (
        429, "Concurrency limit reached for your plan", "concurrency_limit"),
    E.CONNECTION_CONNECT_SPEAKER_LIMIT_REACHED: (429, "Speaker limit reached", "speaker_limit"),
    E.CONNECTION_RATE_LIMITED: (429, "Rate limit exceeded", None),
    E.CONNECTION_CONNECT_BOT_START_FAILED: (500, "Failed to start bot", "internal_error"),
    E.CONNECTION_CONNECT_UNHANDLED_SERVER_EXCEPTION: (500, "Internal server error", "internal_error"),
    E.CONNECTION_CONNECT_VALIDATION_ERROR: (422, VALIDATION_DETAIL, "bad_request"),
    E.CONNECTION_SERVICE_UNAVAILABLE: (503, "Service temporarily unavailable", "database_unavailable"),
    E.CONNECTION_SERVER_ERROR: (502, "Bad gateway", None),
    E.CONNECTION_BAD_REQUEST: (400, MISSING_END_USER_ID, "missing_end_user_id"),
}

_SPECIAL_CONNECT: dict[ErrorCode, ConnectKind] = {
    E.CONNECTION_TIMEOUT: ConnectKind.NO_BOT_READY,
    E.CONNECTION_NETWORK_ERROR: ConnectKind.ABORT,
    E.CONNECTION_FAILED: ConnectKind.INVALID_ROOM,
}

_CLIENT_SIDE_HINTS: dict[ErrorCode, str] = {
    E.CONFIG_API_KEY_MISSING: "connect with an empty api_key",
    E.CONFIG_CHARACTER_ID_MISSING: "connect with an empty character_id",
    E.CONFIG_AUTH_TOKEN_PROVIDER_MISSING: "use auth-token mode without a provider",
    E.CONFIG_AUTH_TOKEN_ENDPOINT_INVALID: "configure a non-HTTPS, non-loopback token endpoint",
    E.CONFIG_AUTH_TOKEN_MODE_REQUIRED: "request an explicit token connect in another auth mode",
    E.CONFIG_INVALID: "pass an invalid ConvaiConfig value",
    E.CONNECTION_AUTH_TOKEN_FETCH_FAILED: "make the client's auth-token provider fail",
    E.AUDIO_MIC_UNAVAILABLE: "start a session with no microphone available",
    E.AUDIO_MIC_PERMISSION_DENIED: "deny microphone permission on the client",
    E.AUDIO_MIC_PUBLISH_FAILED: "make the client's microphone publish fail",
    E.SESSION_INVALID_STATE: "call a session method in the wrong state (e.g. send before connect)",
    E.SESSION_CANCELLED: "call disconnect() while connect() is in progress",
    E.SESSION_DURATION_LIMIT_REACHED: "set ConvaiConfig(max_session_duration=...)",
    E.SESSION_IDLE_TIMEOUT: "send_idle_warning(...) and keep the connection open past the deadline",
}
#: The same hints for callers of the HTTP control API, where they name a Python method.
_CLIENT_SIDE_HTTP_HINTS: dict[ErrorCode, str] = {
    E.SESSION_IDLE_TIMEOUT: ('POST /_sim/idle-warning {"session_id": ..., "remaining_seconds": ...} and keep '
                             "the connection open past the deadline"),
}
#: What ``inject`` and ``POST /_sim/inject`` accept as a code, for error messages.
ACCEPTED_FORMS = ("an ErrorCode value (\"connection.timeout\"), an ErrorCode name (\"CONNECTION_TIMEOUT\"), "
                  "a DisconnectReason name (\"SERVER_SHUTDOWN\") or number (3, or \"3\")")

_TRANSPORT_CLOSE: frozenset[ErrorCode] = frozenset(
    {E.TRANSPORT_ICE_FAILED, E.TRANSPORT_PEER_CONNECTION_FAILED, E.TRANSPORT_LIVEKIT_ERROR}
)
del E


def is_connect_code(code: ErrorCode) -> bool:
    """True for codes answered on ``/connect`` (catalog stage CONNECT_API, server-producible)."""
    return code in _HTTP_ROWS or code in _SPECIAL_CONNECT


def coerce(value: object) -> ErrorCode | DisconnectReason:
    """Accept every form of :data:`ACCEPTED_FORMS` (and the enum members themselves); else ValueError."""
    if isinstance(value, (ErrorCode, DisconnectReason)):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return _reason_by_number(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return ErrorCode(text)
        except ValueError:
            pass
        if text.isdigit():
            return _reason_by_number(int(text))
        name = text.upper()
        if name in ErrorCode.__members__:
            return ErrorCode[name]
        if name in DisconnectReason.__members__:
            return DisconnectReason[name]
        raise ValueError(f"unknown error code or disconnect reason {value!r}: give {ACCEPTED_FORMS}")
    raise ValueError(f"a code must be {ACCEPTED_FORMS}, not {value!r}")


def _reason_by_number(number: int) -> DisconnectReason:
    try:
        return DisconnectReason(number)
    except ValueError:
        known = f"{min(DisconnectReason).value}..{max(DisconnectReason).value}"
        raise ValueError(f"no DisconnectReason has the number {number} (they are {known})") from None


def _take(details: dict[str, Any], allowed: set[str], what: str) -> None:
    extra = set(details) - allowed
    if extra:
        raise ValueError(f"{what} does not take details {sorted(extra)}; allowed: {sorted(allowed)}")


def connect_fault(code: ErrorCode, details: dict[str, Any]) -> ConnectFault:
    """The fault for a connect-API code; details ``status`` / ``detail`` override the HTTP answer.

    ``connection.invalid_token`` also takes ``reason``: ``"expired"``, ``"consumed"``, ``"revoked"`` or
    ``"unknown"``, answering the 401 the simulator gives such a token (``simulator.core.tokens.Refusal``).
    """
    special = _SPECIAL_CONNECT.get(code)
    if special is not None:
        _take(details, set(), code.value)
        return ConnectFault(code, special)
    if code is ErrorCode.CONNECTION_INVALID_TOKEN and "reason" in details:
        details = dict(details)
        reason = details.pop("reason")
        refusals = {r.name.lower(): r.value for r in Refusal}
        if reason not in refusals:
            raise ValueError(f"{code.value}: 'reason' must be one of {', '.join(refusals)}, got {reason!r}")
        details.setdefault("detail", refusals[reason])
    _take(details, {"status", "detail"}, code.value)
    status, detail, server_code = _HTTP_ROWS[code]
    status = details.get("status", status)
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError(f"{code.value}: 'status' must be an HTTP error status (an int 400..599), got {status!r}")
    body = _http(status, details.get("detail", detail), server_code)
    return ConnectFault(code, ConnectKind.HTTP_ERROR, status, body)


def live_fault(target: ErrorCode | DisconnectReason, details: dict[str, Any]) -> LiveFault:
    """The fault for a code or reason acting on live sessions; ValueError when not one."""
    if isinstance(target, DisconnectReason):
        _take(details, {"reason"}, target.name)
        if target is DisconnectReason.UNKNOWN_REASON:
            return LiveFault(target.name, LiveKind.ABORT)
        return LiveFault(
            target.name, LiveKind.CLOSE, target.close_code, str(details.get("reason", target.message))
        )
    label = target.value
    if target in _TRANSPORT_CLOSE:
        _take(details, set(), label)
        return LiveFault(label, LiveKind.CLOSE, TRANSPORT_FAULT_CLOSE_CODE, label)
    if target is ErrorCode.TRANSPORT_SIGNAL_DISCONNECTED:
        _take(details, set(), label)
        return LiveFault(label, LiveKind.ABORT)
    if target is ErrorCode.SERVER_FATAL_ERROR:
        _take(details, {"error"}, label)
        text = str(details.get("error", DEFAULT_FATAL_TEXT))
        return LiveFault(label, LiveKind.FATAL_ERROR, 1011, text, text)
    if target is ErrorCode.SERVER_ERROR:
        _take(details, {"error"}, label)
        return LiveFault(label, LiveKind.PIPELINE_ERROR, text=str(details.get("error", DEFAULT_ERROR_TEXT)))
    if target is ErrorCode.SERVER_USAGE_LIMIT_REACHED:
        _take(details, {"quota_type", "message"}, label)
        return LiveFault(
            label,
            LiveKind.USAGE_LIMIT,
            1008,
            USAGE_LIMIT_REASON,
            str(details.get("message", DEFAULT_USAGE_MESSAGE)),
            str(details.get("quota_type", "interaction")),
        )
    if target is ErrorCode.SESSION_TOKEN_EXPIRED:
        _take(details, set(), label)
        return LiveFault(label, LiveKind.CLOSE, 1008, SESSION_EXPIRED_REASON)
    if target is ErrorCode.PROTOCOL_PARSE_FAILED:
        _take(details, set(), label)
        return LiveFault(label, LiveKind.RAW_FRAME, text=NOT_JSON_FRAME)
    if target is ErrorCode.PROTOCOL_MESSAGE_INVALID:
        _take(details, set(), label)
        return LiveFault(label, LiveKind.RAW_FRAME, text='{"label":"rtvi-ai","data":{}}')
    raise ValueError(f"{label} is not injectable on a live session")


def resolve(value: object, details: dict[str, Any], *, over_http: bool = False) -> ConnectFault | LiveFault:
    """Map an ``inject()`` argument to its fault; ValueError for unknown or client-side values.

    ``over_http``: the caller uses the control API, so a hint names HTTP routes, not Python methods.
    """
    target = coerce(value)
    if isinstance(target, ErrorCode):
        hint = _CLIENT_SIDE_HINTS.get(target)
        if over_http:
            hint = _CLIENT_SIDE_HTTP_HINTS.get(target, hint)
        if hint is not None:
            raise ValueError(
                f"{target.value} is produced client-side, not by the server; to trigger it, {hint}"
            )
        if is_connect_code(target):
            if CATALOG[target].stage is not SessionErrorStage.CONNECT_API:
                raise ValueError(f"{target.value} is not a connect-API code")
            return connect_fault(target, details)
    return live_fault(target, details)


def injectable_codes() -> tuple[ErrorCode, ...]:
    """Every ErrorCode the simulator can inject (everything not client-side)."""
    return tuple(c for c in ErrorCode if c not in _CLIENT_SIDE_HINTS)
