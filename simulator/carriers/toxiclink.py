"""Carries the active toxics (``simulator.core.toxics``) out on one connection, at its carrier's boundary.

A carrier makes one :class:`ToxicLink` per connection and passes every message through it: outbound with
:meth:`ToxicLink.outbound` before it writes, inbound with :meth:`ToxicLink.inbound` before the message core
sees it. With no toxic active both return at once (one attribute check). Connection-level toxics act
through the carrier's :class:`Wire` (reset, abort, pause reading, LiveKit's leave). Loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Protocol

from simulator.core.toxics import ActiveToxic, ToxicRegistry, id_of

logger = logging.getLogger("simulator.toxiclink")

UPSTREAM = "upstream"
DOWNSTREAM = "downstream"


class Wire(Protocol):
    """What a toxic may do to a carrier's connection."""

    def reset_connection(self) -> None:
        """Reset the TCP connection (RST)."""

    def drop_connection(self) -> None:
        """Close the connection without a goodbye (no close frame)."""

    def pause_reading(self, paused: bool) -> None:
        """Stop (True) or restart (False) reading from the client."""

    def leave(self, action: str) -> None:
        """LiveKit: send ``leave`` with ``action`` (``"resume"``, ``"reconnect"``, ``"disconnect"``)."""


def reset_transport(transport: asyncio.Transport | None) -> None:
    """Abort ``transport`` with ``SO_LINGER`` 0, so the kernel sends RST instead of FIN."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError as exc:
            logger.debug("SO_LINGER not set: %s", exc)
    transport.abort()


def pause_transport(transport: asyncio.Transport | None, paused: bool) -> None:
    """Stop (True) or restart (False) reading ``transport``; nothing once it is gone or closing."""
    if transport is None or transport.is_closing():
        return
    if paused:
        transport.pause_reading()
    else:
        transport.resume_reading()


class ToxicLink:
    """The toxics acting on one connection of ``session_id`` over ``transport`` (see the module docstring)."""

    def __init__(self, registry: ToxicRegistry, session_id: str, transport: str, wire: Wire,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.session_id = session_id
        self.transport = transport
        self._registry = registry
        self._wire = wire
        self._loop = loop
        self._toxics: list[ActiveToxic] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._released = asyncio.Event()
        self._released.set()
        #: Bytes each ``limit_data`` toxic has let through, per direction, since it took hold.
        self._passed: dict[tuple[str, str], int] = {}
        self._cut = False
        registry.attach(self)

    # ------------------------------------------------------------------ ToxicTarget

    def engage(self, toxic: ActiveToxic) -> None:
        if not toxic.holds(id_of(self)):
            return
        self._toxics.append(toxic)
        kind, timeout = toxic.kind, float(toxic.params.get("timeout", 0.0))
        logger.info("session %s: toxic %s takes hold", self.session_id, toxic.id)
        if kind in ("reset_peer", "abort"):
            self._later(toxic, timeout, lambda: self.cut(reset=kind == "reset_peer"))
        elif kind == "stall":
            self._released.clear()
            if toxic.acts_on(UPSTREAM):
                self._wire.pause_reading(True)
            if timeout > 0:
                self._later(toxic, timeout, lambda: self.cut(reset=False))
        elif kind == "leave":
            self._wire.leave(str(toxic.params["action"]))

    def held_by(self, toxic: ActiveToxic) -> bool:
        return toxic in self._toxics

    def disengage(self, toxic: ActiveToxic) -> None:
        if toxic not in self._toxics:
            return
        self._toxics.remove(toxic)
        timer = self._timers.pop(toxic.id, None)
        if timer is not None:
            timer.cancel()
        if toxic.kind == "stall" and not any(t.kind == "stall" for t in self._toxics):
            self._released.set()
            self._wire.pause_reading(False)

    def _later(self, toxic: ActiveToxic, delay: float, action: Callable[[], None]) -> None:
        if delay <= 0:
            action()
        else:
            self._timers[toxic.id] = self._loop.call_later(delay, action)

    # ------------------------------------------------------------------ the carrier's side

    @property
    def active(self) -> bool:
        """True while any toxic acts on this connection (else messages pass untouched)."""
        return bool(self._toxics)

    def close(self) -> None:
        """The connection ended: release everything waiting and forget the toxics."""
        self._registry.detach(self)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._toxics.clear()
        self._cut = True
        self._released.set()

    def _gone(self) -> bool:
        """True once the connection was cut or ended (a method: it changes across awaits)."""
        return self._cut

    def cut(self, *, reset: bool) -> None:
        """Drop the connection (RST when ``reset``), once."""
        if self._cut:
            return
        self._cut = True
        logger.info("session %s: toxic %s the connection", self.session_id, "resets" if reset else "aborts")
        self._released.set()
        if reset:
            self._wire.reset_connection()
        else:
            self._wire.drop_connection()

    def oversized(self, size: int) -> bool:
        """True when an ``oversized_data`` toxic drops a data packet of ``size`` bytes."""
        return any(t.kind == "oversized_data" and size > int(t.params["limit"]) for t in self._toxics)

    async def _pass(self, direction: str, size: int) -> int | None:
        """Wait out stall, latency and bandwidth for one message of ``size`` bytes; how many of its bytes may
        pass before a ``limit_data`` cut (None: all), or -1 when the connection is cut."""
        while not self._released.is_set():
            if not any(t.kind == "stall" and t.acts_on(direction) for t in self._toxics):
                break
            await self._released.wait()
        if self._gone():
            return -1
        delay = 0.0
        allowed: int | None = None
        limits: list[tuple[str, str]] = []
        for toxic in self._toxics:
            if not toxic.acts_on(direction):
                continue
            if toxic.kind == "latency":
                delay += toxic.jitter()
            elif toxic.kind == "bandwidth":
                delay += size / int(toxic.params["rate"])
            elif toxic.kind == "limit_data":
                key = (toxic.id, direction)
                limits.append(key)
                left = int(toxic.params["bytes"]) - self._passed.get(key, 0)
                allowed = left if allowed is None else min(allowed, left)
        if delay > 0:
            await asyncio.sleep(delay)
        if self._gone():
            return -1
        for key in limits:
            self._passed[key] = self._passed.get(key, 0) + size
        return None if allowed is None or allowed >= size else max(0, allowed)

    def _slicer(self, direction: str) -> ActiveToxic | None:
        return next((t for t in self._toxics if t.kind == "slicer" and t.acts_on(direction)), None)

    async def outbound(self, data: bytes, write_raw: Callable[[bytes], None] | None,
                       write: Callable[[], Awaitable[bool]]) -> bool:
        """Send one message whose bytes on the wire are ``data`` through the toxics.

        ``write()`` sends it whole (the carrier's normal send); ``write_raw(piece)`` writes raw bytes of
        ``data`` (None where the wire has no byte stream to slice, e.g. a data channel: a slicer then only
        delays). Returns what ``write()`` returned, or False when a toxic cut the connection.
        """
        allowed = await self._pass(DOWNSTREAM, len(data))
        if allowed == -1:
            return False
        slicer = self._slicer(DOWNSTREAM)
        if allowed is not None:
            if write_raw is not None and allowed:
                write_raw(data[:allowed])
            self.cut(reset=False)
            return False
        if slicer is None:
            return await write()
        size, delay = int(slicer.params["size"]), float(slicer.params["delay"])
        if write_raw is None:
            await asyncio.sleep(delay * ((len(data) - 1) // size))
            return await write()
        for start in range(0, len(data), size):
            if self._gone():
                return False
            if start:
                await asyncio.sleep(delay)
            write_raw(data[start:start + size])
        return True

    async def inbound(self, size: int) -> bool:
        """Let one client message of ``size`` bytes through; False when a toxic cut the connection (the
        message is then not handled)."""
        allowed = await self._pass(UPSTREAM, size)
        if allowed == -1:
            return False
        if allowed is not None:
            self.cut(reset=False)
            return False
        slicer = self._slicer(UPSTREAM)
        if slicer is not None:  # the pieces arrive one delay apart: the message is whole after the last
            await asyncio.sleep(float(slicer.params["delay"]) * ((size - 1) // int(slicer.params["size"])))
        return not self._gone()

    async def before_close(self) -> None:
        """Wait out a ``slow_close`` toxic before the carrier's close."""
        delays = [float(t.params["delay"]) for t in self._toxics if t.kind == "slow_close"]
        if delays:
            await asyncio.sleep(max(delays))
