"""How a session's server-side end reaches a LiveKit client, and the injectable signal refusals (pure).

The message core ends sessions with WebSocket-style close codes (``simulator.core.state``); on LiveKit each maps to
what a LiveKit server does (LiveKit ``livekit_models.proto`` ``DisconnectReason``, ``livekit_rtc.proto``
``LeaveRequest``):

* idle timeout, usage limit, ``kill-pipeline``, ``POST /disconnect``, token expiry, a fatal pipeline error:
  the Convai session's room is deleted: ``leave{reason: ROOM_DELETED}``;
* simulator shutdown (1001): ``leave{reason: SERVER_SHUTDOWN}``;
* an injected ``DisconnectReason`` (close code ``4000 + reason``): ``leave{reason}``, the way LiveKit
  delivers each (``DUPLICATE_IDENTITY`` as if a second participant joined with the same identity,
  ``ROOM_DELETED`` as the room closing, ...);
* ``transport.ice_failed``: connectivity is withheld (no more STUN answers, nothing sent);
  ``transport.peer_connection_failed``: the peer connection is closed (DTLS close) with no leave;
  ``transport.livekit_error`` and ``transport.signal_disconnected``: the signal WebSocket is dropped without a
  close frame (``livekit_error`` also closes the peer connection);
* a slow consumer (a client that stopped reading its data channel or its signal WebSocket for longer than the
  send deadline): the signal WebSocket is dropped and the peer connection closed, with no ``leave`` (the
  client is not reading); a later resume is refused with ``SIGNAL_CLOSE``.

Resuming (a join with ``reconnect=true``) is refused deliberately: aiortc cannot restart ICE on a live
connection, so a resume could never complete. While the session is still live the refusal is
``leave{action: RECONNECT}`` (the client then joins afresh and takes the session over); once it has ended it
is ``leave{action: DISCONNECT, reason: <the end's reason>}``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from convai_sync.disconnect import DisconnectReason
from simulator.core.sessions import SLOW_CONSUMER_REASON

#: Close code the simulator uses for transport faults (reason = the ErrorCode value).
TRANSPORT_FAULT_CLOSE_CODE = 4100
SHUTDOWN_CLOSE_CODE = 1001
REASON_CLOSE_BASE = 4000

ICE_FAILED = "transport.ice_failed"
PEER_CONNECTION_FAILED = "transport.peer_connection_failed"
SIGNAL_DISCONNECTED = "transport.signal_disconnected"

#: HTTP statuses ``Simulator.refuse_livekit_join`` can answer on ``/rtc/v1``, with LiveKit-style texts.
SIGNAL_REFUSALS: dict[int, str] = {
    401: "invalid token: simulated refusal",
    403: "permissions denied: simulated refusal",
    404: "room not found: simulated refusal",
    429: "too many requests: simulated refusal",
}


class Ending(enum.Enum):
    """What the LiveKit side does to end (or break) a participant's connection."""

    LEAVE = "leave"  # leave{reason}, then close the signal and the peer connection
    WITHHOLD = "withhold"  # stop answering ICE, silently
    CLOSE_PEER = "close_peer"  # close the peer connection, keep the signal
    DROP_SIGNAL = "drop_signal"  # drop the signal WebSocket without a close frame
    DROP_ALL = "drop_all"  # drop the signal and close the peer connection


@dataclass(frozen=True)
class Plan:
    """An :class:`Ending` and the DisconnectReason the client is (or, on a later resume, will be) given."""

    ending: Ending
    reason: DisconnectReason


def for_close(code: int, reason: str) -> Plan:
    """The LiveKit ending for a server-side close ``code`` / ``reason`` of the message core."""
    if REASON_CLOSE_BASE <= code <= REASON_CLOSE_BASE + max(DisconnectReason):
        return Plan(Ending.LEAVE, DisconnectReason(code - REASON_CLOSE_BASE))
    if code == TRANSPORT_FAULT_CLOSE_CODE:
        if reason == ICE_FAILED:
            return Plan(Ending.WITHHOLD, DisconnectReason.MEDIA_FAILURE)
        if reason == PEER_CONNECTION_FAILED:
            return Plan(Ending.CLOSE_PEER, DisconnectReason.MEDIA_FAILURE)
        return Plan(Ending.DROP_ALL, DisconnectReason.UNKNOWN_REASON)
    if code == SHUTDOWN_CLOSE_CODE:
        return Plan(Ending.LEAVE, DisconnectReason.SERVER_SHUTDOWN)
    return Plan(Ending.LEAVE, DisconnectReason.ROOM_DELETED)


def for_abort(reason: str) -> Plan:
    """The LiveKit ending for a connection drop (``reason`` names the injected fault)."""
    if SIGNAL_DISCONNECTED in reason:
        return Plan(Ending.DROP_SIGNAL, DisconnectReason.STATE_MISMATCH)
    if reason == SLOW_CONSUMER_REASON:
        return Plan(Ending.DROP_ALL, DisconnectReason.SIGNAL_CLOSE)
    return Plan(Ending.LEAVE, DisconnectReason.UNKNOWN_REASON)


def refusal_text(status: int, detail: str | None = None) -> str:
    """The body of an injected ``/rtc/v1`` refusal; ValueError for a status that cannot be injected."""
    if status not in SIGNAL_REFUSALS:
        raise ValueError(f"a LiveKit join refusal must be one of {sorted(SIGNAL_REFUSALS)}, not {status!r}")
    return SIGNAL_REFUSALS[status] if detail is None else str(detail)
