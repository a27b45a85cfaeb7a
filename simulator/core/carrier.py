"""The seam between a session's message core and the wire that carries its RTVI messages.

One message core (``simulator.core.messages``, ``simulator.core.state``) serves two carriers: the ``/chat``
WebSocket (``simulator.carriers.websocket.carrier.WebSocketCarrier``, JSON text frames) and a LiveKit room
(``simulator.carriers.livekit.carrier.LiveKitCarrier``, reliable data packets plus an audio track). The core
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
from typing import Any, Protocol, TypeVar

from simulator.core.features import Features

logger = logging.getLogger("simulator.carrier")

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
    """What voices a reply on a carrier (``simulator.carriers.websocket.voice.WebSocketVoice`` on the WebSocket)."""

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


class LiveKitSide(Protocol):
    """The LiveKit carrier's per-simulator side as the core and its control surfaces reach it through
    ``SimCore.livekit`` (``simulator.carriers.livekit.service.LiveKitService``, handed over when the server is
    composed; the core never imports it). Loop thread only."""

    def connection_count(self) -> int:
        """Participant connections (signal WebSockets) open right now."""

    def room_count(self) -> int:
        """Rooms held (live sessions' and recently ended ones')."""

    def add_refusal(self, status: int, detail: str | None, times: int) -> None:
        """Answer the next ``times`` joins with HTTP ``status``."""

    def queued_refusals(self) -> list[dict[str, Any]]:
        """The injected join refusals still queued (``status``, ``times`` left)."""

    def reset(self) -> None:
        """Forget queued refusals, ended rooms and every issued token (the sessions were already ended)."""

    def admit(
        self,
        session_id: str,
        host: str,
        api_key: str,
        character_id: str,
        character_session_id: str,
        end_user_id: str | None,
        metadata: Any,
        output: dict[str, Any],
        *,
        tts_enabled: bool,
        send_bot_ready: bool,
        request_trace_id: str,
        features: Features | None = None,
    ) -> dict[str, Any]:
        """Create a LiveKit session; returns the ``/connect`` answer."""

    async def shutdown(self, deadline: float) -> None:
        """Close every participant connection within ``deadline`` seconds."""
