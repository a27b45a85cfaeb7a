"""The seam between a session's message core and the wire that carries its RTVI messages.

One message core (``simulator.messages``, ``simulator.core``) serves two carriers: the ``/chat``
WebSocket (:class:`WebSocketCarrier`, JSON text frames) and a LiveKit room
(``simulator.livekit.carrier.LiveKitCarrier``, reliable data packets plus an audio track). The core
only ever asks a carrier to send one RTVI JSON text, to speak a reply, to end the session with a
WebSocket-style close code and reason (each carrier maps that onto its own wire), or to drop the
connection without a goodbye. Loop thread only.

Send deadlines: a client that stops reading must not stall the simulator, so each carrier bounds what it
waits for. A send waits only while the wire's buffer is over its high-water mark (the client is not
taking data), and then at most ``send_timeout`` seconds: past that, :meth:`Carrier.send_text` raises
:class:`SlowConsumer` and the session drops the client. A goodbye (a close frame, a LiveKit ``leave``) is
bounded the same way and the connection is dropped when it does not go through. A send on one session
never waits for another session.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from websocket import ABNF

from simulator.toxiclink import ToxicLink, reset_transport

if TYPE_CHECKING:
    from aiohttp import web

logger = logging.getLogger("simulator.carrier")

#: Largest close reason a WebSocket close frame carries (RFC 6455: 125 bytes minus the code).
MAX_REASON_BYTES = 123
#: Seconds a server-initiated close waits for the client's close frame before dropping the socket (on top
#: of the send deadline its close frame may take to go out).
CLOSE_HANDSHAKE_TIMEOUT = 1.0

T = TypeVar("T")


class SlowConsumer(Exception):
    """The client did not take a message within the send deadline (it stopped reading)."""


if sys.version_info >= (3, 11):
    async def within(awaitable: Awaitable[T], timeout: float) -> T:
        """``await awaitable``, raising TimeoutError after ``timeout`` seconds (cheaper than wait_for)."""
        async with asyncio.timeout(timeout):
            return await awaitable
else:
    async def within(awaitable: Awaitable[T], timeout: float) -> T:
        """``await awaitable``, raising TimeoutError after ``timeout`` seconds."""
        return await asyncio.wait_for(awaitable, timeout)


def write_cannot_block(transport: asyncio.BaseTransport | None, size: int) -> bool:
    """True when writing ``size`` more bytes to ``transport`` cannot wait on the client, so the write needs no
    deadline (the common case, which a deadline per frame would slow by several microseconds).

    A write waits only while the transport is paused, and asyncio pauses it only when its buffer grows past
    the high-water mark. With nothing buffered (so not paused: it resumed on the way down to empty) and a
    write below the mark, the write cannot take the buffer past it.
    """
    if not isinstance(transport, asyncio.WriteTransport) or transport.get_write_buffer_size():
        return False
    _low, high = transport.get_write_buffer_limits()
    return size < high


async def send_bounded(transport: asyncio.BaseTransport | None, send: Callable[[], Awaitable[None]], size: int,
                       timeout: float) -> None:
    """Run ``send()`` (a write of at most ``size`` bytes to ``transport``) within ``timeout`` seconds.

    Raises:
        SlowConsumer: the write waited longer than ``timeout`` for the client to read.
    """
    if write_cannot_block(transport, size):
        await send()
        return
    try:
        await within(send(), timeout)
    except asyncio.TimeoutError:  # the builtin TimeoutError on 3.11+, not yet on 3.10
        raise SlowConsumer(f"a message waited more than {timeout:g} s for the client to read") from None


class Speaker(Protocol):
    """What voices a reply on a carrier (``simulator.wsaudio.WebSocketVoice`` on the WebSocket)."""

    async def speak(self, text: str, stop: Callable[[], bool]) -> None: ...


class Carrier(Protocol):
    """What a session's wire must do; every method runs on the simulator's loop thread."""

    #: ``"websocket"`` or ``"livekit"``.
    kind: str

    @property
    def close_code(self) -> int | None:
        """The close code the peer closed with, when it closed first (else None)."""

    async def send_text(self, text: str) -> bool:
        """Send one RTVI JSON text; False (logged at debug) when the wire is gone.

        Raises:
            SlowConsumer: the client did not take it within the send deadline.
        """

    async def speak(self, text: str, stop: Callable[[], bool]) -> None:
        """Voice ``text`` and return when its last audio has been sent (at once when there is no audio).

        ``stop()`` is polled while speaking; True ends the speech early (an interruption).
        """

    async def close(self, code: int, reason: str) -> None:
        """End the connection for the server-side reason ``code``/``reason`` (WebSocket close codes).

        Bounded: a goodbye the client does not take in time (or a cancellation) drops the connection.
        """

    def abort(self, reason: str) -> None:
        """Drop the connection without a goodbye (``reason`` names the fault, for the carrier's own mapping)."""


class WebSocketCarrier:
    """The ``/chat`` WebSocket: RTVI JSON text frames, real close frames, TCP drops; audio as binary Pipecat
    frames through :attr:`voice` (:class:`simulator.wsaudio.WebSocketVoice`), when one is attached.

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
        #: The network faults acting on this connection (``simulator.toxiclink``); set by the ``/chat`` route.
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

    # ------------------------------------------------------------------ simulator.toxiclink.Wire

    def reset_connection(self) -> None:
        """Reset the TCP connection (RST)."""
        reset_transport(self._transport)

    def drop_connection(self) -> None:
        """Close the TCP connection without a close frame."""
        self.abort("toxic")

    def pause_reading(self, paused: bool) -> None:
        """Stop (True) or restart (False) reading from the client's socket."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if paused:
            transport.pause_reading()
        else:
            transport.resume_reading()

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
