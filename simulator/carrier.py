"""The seam between a session's message core and the wire that carries its RTVI messages.

One message core (``simulator.messages``, ``simulator.core``) serves two carriers: the ``/chat``
WebSocket (:class:`WebSocketCarrier`, JSON text frames) and a LiveKit room
(``simulator.livekit.carrier.LiveKitCarrier``, reliable data packets plus an audio track). The core
only ever asks a carrier to send one RTVI JSON text, to speak a reply, to end the session with a
WebSocket-style close code and reason (each carrier maps that onto its own wire), or to drop the
connection without a goodbye. Loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aiohttp import web

logger = logging.getLogger("simulator.carrier")

#: Largest close reason a WebSocket close frame carries (RFC 6455: 125 bytes minus the code).
MAX_REASON_BYTES = 123


class Carrier(Protocol):
    """What a session's wire must do; every method runs on the simulator's loop thread."""

    #: ``"websocket"`` or ``"livekit"``.
    kind: str

    @property
    def close_code(self) -> int | None:
        """The close code the peer closed with, when it closed first (else None)."""

    async def send_text(self, text: str) -> bool:
        """Send one RTVI JSON text; False (logged at debug) when the wire is gone."""

    async def speak(self, text: str, stop: Callable[[], bool]) -> None:
        """Voice ``text`` and return when its last audio has been sent (at once when there is no audio).

        ``stop()`` is polled while speaking; True ends the speech early (an interruption).
        """

    async def close(self, code: int, reason: str) -> None:
        """End the connection for the server-side reason ``code``/``reason`` (WebSocket close codes)."""

    def abort(self, reason: str) -> None:
        """Drop the connection without a goodbye (``reason`` names the fault, for the carrier's own mapping)."""


class WebSocketCarrier:
    """The ``/chat`` WebSocket: RTVI JSON text frames, real close frames, TCP drops; no audio."""

    kind = "websocket"

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None, session_id: str) -> None:
        self._ws = ws
        self._transport = transport
        self._session_id = session_id

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    async def send_text(self, text: str) -> bool:
        ws = self._ws
        if ws.closed:
            return False
        try:
            await ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("send on session %s failed: %s", self._session_id, exc)
            return False
        return True

    async def speak(self, text: str, stop: Callable[[], bool]) -> None:
        """The WebSocket carries no audio: nothing to play."""

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code`` and ``reason`` (handshake bounded by the WebSocket's timeout)."""
        ws = self._ws
        if ws.closed:
            return
        message = reason.encode("utf-8")[:MAX_REASON_BYTES]
        try:
            await ws.close(code=code, message=message)
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("close of session %s failed: %s", self._session_id, exc)

    def abort(self, reason: str) -> None:
        """Drop the TCP connection without a close frame."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.abort()
        elif transport is None:
            logger.warning("session %s has no transport to abort", self._session_id)
