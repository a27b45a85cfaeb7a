"""LiveKit disconnect reasons as Convai documents them.

Source: Convai Web SDK docs, "Error Handling"
(docs.convai.com/api-docs/plugins-and-integrations/web-plugins/convai-web-sdk/error-handling).

Values are LiveKit's (``livekit/protocol`` ``livekit_models.proto``; 16 ``AGENT_ERROR`` is in the
Python rtc SDK's protobufs). ``should_retry`` follows that page's rule (retry unless
``CLIENT_INITIATED``, ``DUPLICATE_IDENTITY`` or ``JOIN_FAILURE``) and its sample (retry 0, 3, 6, 9);
reasons the page leaves out are PROPOSED here: 8, 14, 15 retried (transient by LiveKit's
description), 10, 16 not. On the WebSocket transport a reason travels as close code
``4000 + reason`` (the simulator's documented extension); :func:`reason_from_close_code` maps it back.
"""

from __future__ import annotations

import enum

from .names import ReadableNames

#: Close codes 4000..4099 carry ``4000 + DisconnectReason`` on the WebSocket transport.
REASON_CLOSE_CODE_BASE = 4000


class DisconnectReason(ReadableNames, enum.IntEnum):
    """Why a session ended (LiveKit ``DisconnectReason``)."""

    UNKNOWN_REASON = 0
    CLIENT_INITIATED = 1
    DUPLICATE_IDENTITY = 2
    SERVER_SHUTDOWN = 3
    PARTICIPANT_REMOVED = 4
    ROOM_DELETED = 5
    STATE_MISMATCH = 6
    JOIN_FAILURE = 7
    MIGRATION = 8
    SIGNAL_CLOSE = 9
    ROOM_CLOSED = 10
    USER_UNAVAILABLE = 11
    USER_REJECTED = 12
    SIP_TRUNK_FAILURE = 13
    CONNECTION_TIMEOUT = 14
    MEDIA_FAILURE = 15
    AGENT_ERROR = 16

    @property
    def message(self) -> str:
        """Human-readable meaning (Convai's Web SDK error table; LiveKit's for values it leaves out)."""
        return _MESSAGES[self]

    @property
    def should_retry(self) -> bool:
        """True when an unexpected drop with this reason is reconnected automatically."""
        return self in _RETRIED

    @property
    def close_code(self) -> int:
        """WebSocket close code carrying this reason (``4000 + value``)."""
        return REASON_CLOSE_CODE_BASE + int(self)


_MESSAGES: dict[DisconnectReason, str] = {
    DisconnectReason.UNKNOWN_REASON: "Network unavailable or connection lost",
    DisconnectReason.CLIENT_INITIATED: "Disconnected by the application",
    DisconnectReason.DUPLICATE_IDENTITY: "Another session with the same identity joined",
    DisconnectReason.SERVER_SHUTDOWN: "Server restarting",
    DisconnectReason.PARTICIPANT_REMOVED: "Removed via the server API",
    DisconnectReason.ROOM_DELETED: "Session closed server-side",
    DisconnectReason.STATE_MISMATCH: "Client and server state diverged",
    DisconnectReason.JOIN_FAILURE: "Failed to join: check the configuration",
    DisconnectReason.MIGRATION: "Server asked the participant to migrate",
    DisconnectReason.SIGNAL_CLOSE: "Signal connection closed unexpectedly",
    DisconnectReason.ROOM_CLOSED: "All participants left the room",
    DisconnectReason.USER_UNAVAILABLE: "SIP callee did not respond",
    DisconnectReason.USER_REJECTED: "SIP callee rejected the call",
    DisconnectReason.SIP_TRUNK_FAILURE: "SIP protocol failure",
    DisconnectReason.CONNECTION_TIMEOUT: "Server timed out the participant session",
    DisconnectReason.MEDIA_FAILURE: "Media stream failure",
    DisconnectReason.AGENT_ERROR: "Agent error",
}

_RETRIED: frozenset[DisconnectReason] = frozenset(
    {
        DisconnectReason.UNKNOWN_REASON,
        DisconnectReason.SERVER_SHUTDOWN,
        DisconnectReason.STATE_MISMATCH,
        DisconnectReason.MIGRATION,
        DisconnectReason.SIGNAL_CLOSE,
        DisconnectReason.CONNECTION_TIMEOUT,
        DisconnectReason.MEDIA_FAILURE,
    }
)


def reason_from_close_code(code: int | None) -> DisconnectReason | None:
    """Return the reason carried by a ``4000 + reason`` close code, else None."""
    if code is None or not REASON_CLOSE_CODE_BASE <= code < REASON_CLOSE_CODE_BASE + 100:
        return None
    try:
        return DisconnectReason(code - REASON_CLOSE_CODE_BASE)
    except ValueError:
        return DisconnectReason.UNKNOWN_REASON
