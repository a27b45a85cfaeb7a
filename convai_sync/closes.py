"""Map how a transport ended to a :class:`DisconnectReason`, an optional error and a retry rule.

Pure function of PROTOCOL.md §1.5 (WS close codes 1008/1011 and their exact reason strings),
§2.6 (reasons and retry), §1.12 (PROPOSED idle/usage/kill closes) and the simulator extensions
of DESIGN.md §6 (close code ``4000 + reason``; ``4100`` with an ``ErrorCode`` as the reason).
"""

from __future__ import annotations

from dataclasses import dataclass

from .disconnect import DisconnectReason, reason_from_close_code
from .errors import ErrorCode, SessionError, SessionErrorStage
from .transports.base import TransportClosed

#: Simulator extension: close code carrying a ``transport.*`` ErrorCode as its reason text.
ERROR_CLOSE_CODE = 4100

R = DisconnectReason
_1008: tuple[tuple[str, DisconnectReason, ErrorCode | None], ...] = (
    ("session expired", R.ROOM_DELETED, ErrorCode.SESSION_TOKEN_EXPIRED),
    ("already has an active connection", R.DUPLICATE_IDENTITY, None),
    ("usage limit", R.ROOM_DELETED, ErrorCode.SERVER_USAGE_LIMIT_REACHED),
    ("user authentication failed", R.JOIN_FAILURE, ErrorCode.CONNECTION_AUTH_FAILED),
    ("character not found", R.JOIN_FAILURE, ErrorCode.CONNECTION_CONNECT_CHARACTER_NOT_FOUND),
    # "Do not retry a 1008 with the same session_id; call /connect again": a reconnect does so.
    ("session not found", R.STATE_MISMATCH, None),
    ("session metadata incomplete", R.STATE_MISMATCH, None),
    ("session transport mismatch", R.STATE_MISMATCH, None),
)
del R


@dataclass(frozen=True)
class CloseOutcome:
    """What a close means for the session."""

    reason: DisconnectReason
    error: SessionError | None
    retry: bool


def _err(code: ErrorCode, message: str, session_id: str | None,
         stage: SessionErrorStage | None = None, exc: BaseException | None = None) -> SessionError:
    return SessionError.of(code, message, session_id=session_id, stage=stage, exception=exc)


def classify_close(closed: TransportClosed, session_id: str | None = None) -> CloseOutcome:
    """Classify a :class:`TransportClosed` (see module docstring)."""
    code, text = closed.code, closed.reason or ""
    lowered = text.lower()
    if closed.initiator == "client":
        return CloseOutcome(DisconnectReason.CLIENT_INITIATED, None, False)
    if closed.initiator == "network" or code in (None, 1006):
        err = _err(ErrorCode.TRANSPORT_SIGNAL_DISCONNECTED,
                   "connection lost without a close frame", session_id, exc=closed.error)
        return CloseOutcome(DisconnectReason.UNKNOWN_REASON, err, True)
    reason = reason_from_close_code(code)
    if reason is DisconnectReason.AGENT_ERROR:
        # PROTOCOL.md §2.6 (PROPOSED): not retried, surfaced as a server error.
        err = _err(ErrorCode.SERVER_FATAL_ERROR, f"agent error: {text or reason.message}", session_id)
        return CloseOutcome(reason, err, False)
    if reason is not None:
        return CloseOutcome(reason, None, reason.should_retry)
    if code == ERROR_CLOSE_CODE:
        try:
            ecode = ErrorCode(text.split(":", 1)[0].strip())
        except ValueError:
            ecode = ErrorCode.TRANSPORT_LIVEKIT_ERROR
        err = _err(ecode, f"transport failed: {text}", session_id, SessionErrorStage.TRANSPORT)
        return CloseOutcome(DisconnectReason.UNKNOWN_REASON, err, err.is_recoverable)
    if code == 1001:
        return CloseOutcome(DisconnectReason.SERVER_SHUTDOWN, None, True)
    if code == 1008:
        for marker, r, ecode_or_none in _1008:
            if marker in lowered:
                matched = None if ecode_or_none is None else _err(ecode_or_none, text, session_id)
                return CloseOutcome(r, matched, r.should_retry and matched is None)
        err = _err(ErrorCode.CONNECTION_FAILED, f"closed by policy: {text}", session_id)
        return CloseOutcome(DisconnectReason.JOIN_FAILURE, err, False)
    if code == 1011:
        err = _err(ErrorCode.SERVER_ERROR, f"server error: {text or 'internal error'}", session_id)
        return CloseOutcome(DisconnectReason.UNKNOWN_REASON, err, True)
    if code in (1000, 1005):
        # The server ended the session on purpose: idle timeout, kill-pipeline, room deleted.
        if "idle" in lowered:
            err = _err(ErrorCode.SESSION_IDLE_TIMEOUT, f"closed for inactivity: {text}", session_id)
            return CloseOutcome(DisconnectReason.ROOM_DELETED, err, False)
        return CloseOutcome(DisconnectReason.ROOM_DELETED, None, False)
    return CloseOutcome(DisconnectReason.UNKNOWN_REASON, None, True)
