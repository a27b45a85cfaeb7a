"""Map how a transport ended to a :class:`DisconnectReason`, an optional error and a retry rule.

Pure function of Convai's ``/chat`` WebSocket close codes (1008 with its exact reason strings,
1011; Convai Realtime API docs, chat-websocket), the disconnect reasons and their retry rule
(:mod:`convai_sync.disconnect`), PROPOSED closes for idle timeout, usage limit and
``kill-pipeline`` (1000 with a reason; Convai documents no code), and the simulator's
extensions (close code ``4000 + reason``; ``4100`` with an ``ErrorCode`` as the reason).

A LiveKit end (``TransportClosed.disconnect_reason`` set; ``code`` is LiveKit's
``DisconnectReason`` 0..16 from ``livekit_models.proto``, not a WebSocket code) is classified by
:func:`classify_livekit_close`.
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


#: Reasons that end a Convai session for good even when they arrive while LiveKit is recovering
#: the link: a failed resume with any other reason is a lost link, and the session reconnects.
_FINAL_REASONS: frozenset[DisconnectReason] = frozenset({
    DisconnectReason.CLIENT_INITIATED, DisconnectReason.DUPLICATE_IDENTITY, DisconnectReason.PARTICIPANT_REMOVED,
    DisconnectReason.ROOM_DELETED, DisconnectReason.ROOM_CLOSED, DisconnectReason.AGENT_ERROR})


def classify_close(closed: TransportClosed, session_id: str | None = None) -> CloseOutcome:
    """Classify a :class:`TransportClosed` (see module docstring)."""
    if closed.disconnect_reason is not None:
        return classify_livekit_close(closed, session_id)
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
        # PROPOSED (Convai does not document AGENT_ERROR): not retried, surfaced as a server error.
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


def classify_livekit_close(closed: TransportClosed, session_id: str | None = None) -> CloseOutcome:
    """Classify the end of a LiveKit room (``closed.disconnect_reason`` set).

    * ``initiator="client"``: ``CLIENT_INITIATED``, not retried.
    * ``initiator="server"`` (a leave from the server): the reason itself, retried when
      :attr:`DisconnectReason.should_retry`; ``AGENT_ERROR`` is ``server.fatal_error``, not
      retried (as for the WebSocket's ``4000 + reason`` closes).
    * ``initiator="network"`` (the link failed, or LiveKit's own recovery of it did): a lost link,
      retried unless the reason ends the session for good (``DUPLICATE_IDENTITY``,
      ``PARTICIPANT_REMOVED``, ``ROOM_DELETED``, ``ROOM_CLOSED``, ``AGENT_ERROR``). Its error is
      ``transport.ice_failed`` for ``MEDIA_FAILURE`` (libwebrtc gave up on the peer connection:
      ICE, or the DTLS/SCTP transport on top of it, which the client cannot tell apart) and
      ``transport.signal_disconnected`` otherwise.
    """
    reason = closed.disconnect_reason or DisconnectReason.UNKNOWN_REASON
    text = closed.reason or reason.message
    if closed.initiator == "client":
        return CloseOutcome(DisconnectReason.CLIENT_INITIATED, None, False)
    if reason is DisconnectReason.AGENT_ERROR:
        err = _err(ErrorCode.SERVER_FATAL_ERROR, f"agent error: {text}", session_id)
        return CloseOutcome(reason, err, False)
    if closed.initiator == "server":
        return CloseOutcome(reason, None, reason.should_retry)
    if reason in _FINAL_REASONS:
        return CloseOutcome(reason, None, False)
    if reason is DisconnectReason.MEDIA_FAILURE:
        err = _err(ErrorCode.TRANSPORT_ICE_FAILED, f"LiveKit peer connection failed ({text})", session_id,
                   SessionErrorStage.TRANSPORT, closed.error)
    else:
        err = _err(ErrorCode.TRANSPORT_SIGNAL_DISCONNECTED, f"LiveKit connection lost ({text})", session_id,
                   SessionErrorStage.TRANSPORT, closed.error)
    return CloseOutcome(reason, err, True)
