"""The ``/chat`` WebSocket carrier: RTVI JSON text frames in and out, Pipecat binary frames for voice, real close
frames and TCP drops; where a WebSocket frame becomes a message for the core (:func:`serve_chat`). Loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import WSMsgType, web
from websocket import ABNF

from simulator.carriers.toxiclink import ToxicLink, pause_transport, reset_transport
from simulator.carriers.websocket.voice import WebSocketVoice
from simulator.core import faults, messages, wire
from simulator.core.carrier import CLOSE_HANDSHAKE_TIMEOUT, Speaker, send_bounded, within
from simulator.core.sessions import Phase
from simulator.core.state import SimCore

logger = logging.getLogger("simulator.carrier")

#: Largest close reason a WebSocket close frame carries (RFC 6455: 125 bytes minus the code).
MAX_REASON_BYTES = 123
MAX_WS_MESSAGE = 16 * 1024 * 1024
NOT_FOUND_REASON = "Session not found in cache or database"
DUPLICATE_REASON = "Session already has an active connection. Only one WebSocket per session allowed."


class WebSocketCarrier:
    """The ``/chat`` WebSocket: RTVI JSON text frames, real close frames, TCP drops; audio as binary Pipecat
    frames through :attr:`voice` (:class:`simulator.carriers.websocket.voice.WebSocketVoice`), when one is attached.

    Args:
        ws: the prepared aiohttp WebSocket.
        transport: its asyncio transport (``request.transport``), for flow control and drops.
        session_id: for log lines.
        send_timeout: seconds a frame may wait for the client to read (see the module docstring).
    """

    kind = "websocket"

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None, session_id: str,
                 send_timeout: float) -> None:
        self._ws = ws
        self._transport = transport
        self._session_id = session_id
        self._send_timeout = send_timeout
        #: Speaks and hears on this connection (``speak(text, stop)``); None: no audio.
        self.voice: Speaker | None = None
        #: The network faults acting on this connection (``simulator.carriers.toxiclink``); set by
        #: :func:`serve_chat`.
        self.toxics: ToxicLink | None = None

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    async def send_text(self, text: str) -> bool:
        ws = self._ws
        if ws.closed:
            return False
        toxics = self.toxics
        if toxics is not None and toxics.active:
            frame, write_raw = self._frame(text.encode("utf-8"), ABNF.OPCODE_TEXT)
            return await toxics.outbound(frame, write_raw, lambda: self._send_text_now(text))
        return await self._send_text_now(text)

    async def _send_text_now(self, text: str) -> bool:
        ws = self._ws
        try:
            # At most 4 UTF-8 bytes per character, plus the frame header.
            await send_bounded(self._transport, lambda: ws.send_str(text), 4 * len(text) + 16, self._send_timeout)
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("send on session %s failed: %s", self._session_id, exc)
            return False
        return True

    async def send_bytes(self, data: bytes) -> bool:
        """Send one binary message (audio); False when the wire is gone.

        Raises:
            SlowConsumer: the client did not take it within the send deadline.
        """
        ws = self._ws
        if ws.closed:
            return False
        toxics = self.toxics
        if toxics is not None and toxics.active:
            frame, write_raw = self._frame(data, ABNF.OPCODE_BINARY)
            return await toxics.outbound(frame, write_raw, lambda: self._send_bytes_now(data))
        return await self._send_bytes_now(data)

    async def _send_bytes_now(self, data: bytes) -> bool:
        ws = self._ws
        try:
            await send_bounded(self._transport, lambda: ws.send_bytes(data), len(data) + 16, self._send_timeout)
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("send on session %s failed: %s", self._session_id, exc)
            return False
        return True

    async def speak(self, text: str, stop: Callable[[], bool]) -> None:
        """Voice ``text`` through :attr:`voice` (nothing to play without one)."""
        if self.voice is not None:
            await self.voice.speak(text, stop)

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code`` and ``reason``; a handshake that does not finish within the send deadline plus
        :data:`CLOSE_HANDSHAKE_TIMEOUT` (or is cancelled, as at shutdown) drops the connection."""
        ws = self._ws
        if ws.closed:
            return
        if self.toxics is not None and self.toxics.active:
            await self.toxics.before_close()
        message = reason.encode("utf-8")[:MAX_REASON_BYTES]
        finished = False
        try:
            await within(ws.close(code=code, message=message), self._send_timeout + CLOSE_HANDSHAKE_TIMEOUT)
            finished = True
        except asyncio.TimeoutError:
            logger.warning("session %s: closing handshake did not finish in time; dropping the connection",
                           self._session_id)
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("close of session %s failed: %s", self._session_id, exc)
        finally:
            if not finished:  # a timeout, an error or a cancellation: never leave it half-open
                self.abort(reason)

    def _frame(self, payload: bytes, opcode: int) -> tuple[bytes, Callable[[bytes], None] | None]:
        """``payload`` as the WebSocket frame that carries it, and a writer of raw pieces of it (None when
        the connection compresses its frames, so its bytes are not the frame's)."""
        frame = ABNF(1, 0, 0, 0, opcode, 0, payload).format()
        transport = self._transport
        if transport is None or self._ws.compress:
            return frame, None
        return frame, transport.write

    # ------------------------------------------------------------------ simulator.carriers.toxiclink.Wire

    def reset_connection(self) -> None:
        """Reset the TCP connection (RST)."""
        reset_transport(self._transport)

    def drop_connection(self) -> None:
        """Close the TCP connection without a close frame."""
        self.abort("toxic")

    def pause_reading(self, paused: bool) -> None:
        """Stop (True) or restart (False) reading from the client's socket."""
        pause_transport(self._transport, paused)

    def leave(self, action: str) -> None:
        """LiveKit only: nothing to do on the WebSocket."""

    def abort(self, reason: str) -> None:
        """Drop the TCP connection without a close frame (also when a graceful close is pending)."""
        transport = self._transport
        if transport is not None:
            # abort() also discards data a stalled client never read; close() would wait for it forever.
            transport.abort()
        else:
            logger.warning("session %s has no transport to abort", self._session_id)


async def serve_chat(core: SimCore, request: web.Request) -> web.StreamResponse:
    """``GET /chat?session_id=...``: the session's RTVI WebSocket, served until it closes; each text frame goes to
    :func:`simulator.core.messages.handle_text`, each binary frame to the session's :class:`WebSocketVoice`."""
    ws = web.WebSocketResponse(timeout=CLOSE_HANDSHAKE_TIMEOUT, max_msg_size=MAX_WS_MESSAGE)
    await ws.prepare(request)
    session_id = request.query.get("session_id", "")
    session = core.sessions.get(session_id)
    if session is None:
        ended = core.recent.get(session_id)
        expired = ended is not None and ended.close_reason == faults.SESSION_EXPIRED_REASON
        reason = faults.SESSION_EXPIRED_REASON if expired else NOT_FOUND_REASON
        await ws.close(code=1008, message=reason.encode())
        return ws
    if session._phase is not Phase.PENDING:
        logger.info("second WebSocket for session %s refused", session_id)
        await ws.close(code=1008, message=DUPLICATE_REASON.encode())
        return ws
    carrier = WebSocketCarrier(ws, request.transport, session.session_id, core.config.send_timeout)
    voice = WebSocketVoice(core, session, carrier.send_bytes, core.config.websocket_audio)
    carrier.voice = voice
    toxics = carrier.toxics = ToxicLink(core.toxics, session.session_id, carrier.kind, carrier, core.loop)
    core.open_session(session, carrier)
    await session._send(wire.interaction_created(session.character_session_id))
    core.schedule_bot_ready(session)
    core.start_scenario(session)
    try:
        async for msg in ws:
            if toxics.active and msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) and not await toxics.inbound(
                    len(msg.data.encode("utf-8") if isinstance(msg.data, str) else msg.data)):
                continue  # the connection was cut: the loop ends with it
            if msg.type is WSMsgType.TEXT:
                await messages.handle_text(core, session, msg.data)
            elif msg.type is WSMsgType.BINARY:
                core.arm_idle(session)
                await voice.hear(msg.data)  # Pipecat frames: the user's voice, or an RTVI message
            elif msg.type is WSMsgType.ERROR:
                logger.warning("session %s WebSocket error: %s", session_id, ws.exception())
    finally:
        toxics.close()
        core.end(session, None, "client closed")
        task = session._close_task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=CLOSE_HANDSHAKE_TIMEOUT + 0.5)
    return ws
