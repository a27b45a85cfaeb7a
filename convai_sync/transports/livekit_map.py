"""Pure mappings for the LiveKit transport: join failures to ``ErrorCode``, participant kinds to
``ParticipantType``. Imports nothing from ``livekit`` (unit-testable without the native library).

Join failures arrive as the text of ``livekit.rtc.ConnectError`` (``livekit`` 1.2.x, whose Rust
core formats them, ``livekit/rust-sdks`` ``livekit-api/src/signal_client``), for example::

    engine: signal failure: handshake error: 401 Unauthorized
    engine: signal failure: client error: 401 Unauthorized - invalid token: token is expired
    engine: signal failure: handshake error: 429 Too Many Requests
    engine: connection error: wait_pc_connection timed out

HTTP refusals of the signal connection (``/rtc/v1``) map to Convai's fallback connection codes:
401 ``connection.invalid_token``, 403 ``connection.auth_failed``, 404 ``connection.not_found``,
429 ``connection.rate_limited``. These four mappings are PROPOSED: Convai's Unity SDK
(``SessionErrorCodes``) defines the codes as fallbacks with no documented trigger, and no public
source says which LiveKit failure produces them.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ErrorCode
from ..events import ParticipantJoined, ParticipantLeft, ParticipantType

#: LiveKit ``TrackType`` AUDIO (``livekit_models.proto``; ``livekit.rtc.TrackKind.KIND_AUDIO``).
TRACK_AUDIO = 1
#: LiveKit ``ParticipantInfo.Kind`` values (``livekit/protocol`` ``livekit_models.proto``).
KIND_STANDARD = 0
KIND_INGRESS = 1
KIND_EGRESS = 2
KIND_SIP = 3
KIND_AGENT = 4

_STATUS = re.compile(r"\b([1-5]\d\d) [A-Z][A-Za-z ]*")

#: PROPOSED (see the module docstring): signal HTTP refusals -> Convai fallback codes.
_HTTP_CODES: dict[int, ErrorCode] = {
    401: ErrorCode.CONNECTION_INVALID_TOKEN,
    403: ErrorCode.CONNECTION_AUTH_FAILED,
    404: ErrorCode.CONNECTION_NOT_FOUND,
    429: ErrorCode.CONNECTION_RATE_LIMITED,
}

_ICE_MARKERS = ("wait_pc_connection", "ice ", "ice_", "ice connection", "ice candidate")
_PEER_MARKERS = ("peer connection", "peerconnection", "pc_state", "negotiat", "sdp", "rtc error", "dtls")


def http_status(text: str) -> int | None:
    """The HTTP status a join failure's text names (``"… 401 Unauthorized …"``), or None."""
    found = _STATUS.search(text)
    return int(found.group(1)) if found else None


def join_error_code(text: str) -> ErrorCode:
    """The ``ErrorCode`` for a failed ``room.connect()`` from its ``ConnectError`` text.

    * a signal HTTP refusal: 401/403/404/429 as in the module docstring; other 4xx
      ``connection.bad_request``; 5xx ``connection.server_error``;
    * the peer connection never connected (``wait_pc_connection timed out``, ICE):
      ``transport.ice_failed`` (retried);
    * the peer connection itself failed (SDP/negotiation/DTLS errors):
      ``transport.peer_connection_failed`` (not retried);
    * any other signal failure (refused, reset, timed out): ``transport.signal_disconnected``
      (retried);
    * anything else: ``transport.livekit_error`` (not retried).
    """
    lowered = text.lower()
    status = http_status(text)
    if status is not None:
        if status in _HTTP_CODES:
            return _HTTP_CODES[status]
        if 400 <= status < 500:
            return ErrorCode.CONNECTION_BAD_REQUEST
        if status >= 500:
            return ErrorCode.CONNECTION_SERVER_ERROR
    if any(marker in lowered for marker in _ICE_MARKERS):
        return ErrorCode.TRANSPORT_ICE_FAILED
    if any(marker in lowered for marker in _PEER_MARKERS):
        return ErrorCode.TRANSPORT_PEER_CONNECTION_FAILED
    if "signal" in lowered or "websocket" in lowered or "connection refused" in lowered:
        return ErrorCode.TRANSPORT_SIGNAL_DISCONNECTED
    return ErrorCode.TRANSPORT_LIVEKIT_ERROR


def participant_type(kind: int, *, is_local: bool) -> ParticipantType:
    """Convai's ``ParticipantType`` for a LiveKit participant: the local participant is
    ``LOCAL_PLAYER``; a remote ``AGENT`` (the character) ``CHARACTER``; a remote ``STANDARD``
    participant ``REMOTE_PLAYER``; ingress, egress, SIP and newer kinds ``UNKNOWN``."""
    if is_local:
        return ParticipantType.LOCAL_PLAYER
    if kind == KIND_AGENT:
        return ParticipantType.CHARACTER
    if kind == KIND_STANDARD:
        return ParticipantType.REMOTE_PLAYER
    return ParticipantType.UNKNOWN


def participant_event(cls: type[ParticipantJoined] | type[ParticipantLeft], participant: Any, *,
                      is_local: bool) -> ParticipantJoined | ParticipantLeft:
    """A ``ParticipantJoined``/``ParticipantLeft`` for a ``livekit.rtc`` participant (``sid``,
    ``identity``, ``name``, ``kind``, ``track_publications``): muted when its audio is."""
    muted = any(bool(pub.muted) for pub in participant.track_publications.values() if int(pub.kind) == TRACK_AUDIO)
    return cls(participant_id=participant.sid, identity=participant.identity,
               display_name=participant.name or participant.identity,
               participant_type=participant_type(int(getattr(participant, "kind", KIND_STANDARD)), is_local=is_local),
               is_local=is_local, is_muted=muted)
