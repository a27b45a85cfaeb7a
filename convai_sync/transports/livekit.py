"""LiveKit transport (extra ``livekit``): audio/video rooms through the ``livekit`` package.

Status: the WebSocket transport is the supported path of this release; LiveKit's Python rtc
API is asyncio-only and needs a private event-loop thread (STYLE.md §4.3), which is not built
yet. Selecting ``transport="livekit"`` fails the connect attempt with a clear
``transport.livekit_error`` naming what to do, rather than importing native code at import time.
"""

from __future__ import annotations

import importlib.util

from ..connect import Endpoint
from ..errors import ErrorCode, SessionError, SessionErrorStage
from ..netio import Canceller
from .base import Transport, TransportListener, TransportOpenError


class LiveKitTransport(Transport):
    """Placeholder that explains itself; see the module docstring."""

    kind = "livekit"

    def open(self, endpoint: Endpoint, listener: TransportListener, *, timeout: float,
             canceller: Canceller | None = None) -> None:
        if importlib.util.find_spec("livekit") is None:
            message = "transport='livekit' needs the extra: pip install 'convai-sync[livekit]'"
        else:
            message = ("transport='livekit' is not implemented in this release; "
                       "use transport='websocket' (the default)")
        raise TransportOpenError(SessionError.of(ErrorCode.TRANSPORT_LIVEKIT_ERROR, message,
                                                 stage=SessionErrorStage.TRANSPORT))

    def send(self, data: str) -> None:
        raise ConnectionError("LiveKit transport is not open")

    def close(self, code: int = 1000, reason: str = "", *, timeout: float = 1.0) -> None:
        return None
