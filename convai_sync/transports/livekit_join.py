"""Joining a LiveKit room: importing ``livekit`` lazily, the join options, and join failures as
:class:`~convai_sync.transports.base.TransportOpenError` (codes from
:func:`~convai_sync.transports.livekit_map.join_error_code`)."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ..errors import ErrorCode, SessionError, SessionErrorStage
from .base import TransportOpenError
from .livekit_map import http_status, join_error_code

log = logging.getLogger("convai_sync")

EXTRA_HINT = "pip install 'convai-sync[livekit]'"
#: LiveKit's default per-attempt signal timeout; a shorter open() budget shortens it.
SIGNAL_ATTEMPT_TIMEOUT = 5.0
#: Signal attempts ``room.connect()`` makes before it gives up (``livekit`` 1.2.x: 1 + 3 retries).
SIGNAL_ATTEMPTS = 4

_HTTP_CODES = frozenset({ErrorCode.CONNECTION_INVALID_TOKEN, ErrorCode.CONNECTION_AUTH_FAILED,
                         ErrorCode.CONNECTION_NOT_FOUND, ErrorCode.CONNECTION_RATE_LIMITED,
                         ErrorCode.CONNECTION_BAD_REQUEST, ErrorCode.CONNECTION_SERVER_ERROR})


def open_error(code: ErrorCode, message: str, exc: BaseException | None = None,
               status: int | None = None) -> TransportOpenError:
    """A ``TransportOpenError`` at stage TRANSPORT."""
    return TransportOpenError(SessionError.of(code, message, exception=exc, http_status_code=status,
                                              stage=SessionErrorStage.TRANSPORT))


def load_rtc() -> Any:
    """Import ``livekit.rtc``, or raise :class:`TransportOpenError` (``transport.livekit_error``)
    naming the extra to install."""
    try:
        return importlib.import_module("livekit.rtc")
    except ImportError as exc:
        raise open_error(ErrorCode.TRANSPORT_LIVEKIT_ERROR,
                         f"transport='livekit' needs the livekit package: {EXTRA_HINT} ({exc})") from None


def room_options(rtc: Any, *, relay: bool, receive_audio: bool, timeout: float) -> Any:
    """``rtc.RoomOptions`` for a join that must fit ``timeout`` seconds.

    ``relay``: TURN only (``TRANSPORT_RELAY``), else LiveKit's default (``TRANSPORT_ALL``);
    ``receive_audio``: subscribe to remote tracks. Each signal attempt gets a quarter of the budget
    (at most LiveKit's 5 s), so all of them fit it and an abandoned join settles soon.
    """
    ice = rtc.IceTransportType.TRANSPORT_RELAY if relay else rtc.IceTransportType.TRANSPORT_ALL
    return rtc.RoomOptions(auto_subscribe=receive_audio, rtc_config=rtc.RtcConfiguration(ice_transport_type=ice),
                           connect_timeout=max(0.5, min(timeout / SIGNAL_ATTEMPTS, SIGNAL_ATTEMPT_TIMEOUT)))


def join_failure(exc: BaseException | None, rtc: Any, token: str) -> TransportOpenError:
    """The ``TransportOpenError`` for a failed ``room.connect()`` (``token`` never in the text)."""
    if isinstance(exc, rtc.ConnectError):
        text = str(exc.message).replace(token, "***") if token else str(exc.message)
        code = join_error_code(text)
        status = http_status(text) if code in _HTTP_CODES else None
        log.info("LiveKit join failed: %s -> %s", text, code.value)
        return open_error(code, f"LiveKit join failed: {text}", status=status)
    log.error("LiveKit join failed unexpectedly: %s: %s", type(exc).__name__, exc)
    return open_error(ErrorCode.TRANSPORT_LIVEKIT_ERROR, f"LiveKit join failed: {type(exc).__name__}: {exc}", exc)
