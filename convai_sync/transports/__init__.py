"""Transports: ``websocket`` (default), ``livekit`` (extra) and ``memory`` (tests)."""

from __future__ import annotations

from collections.abc import Callable

from .base import Transport, TransportClosed, TransportListener, TransportOpenError

TransportFactory = Callable[[], Transport]


def create(kind: str) -> Transport:
    """Build a transport by name; ``livekit`` is imported lazily (it needs the extra)."""
    if kind == "websocket":
        from .websocket import WebSocketTransport

        return WebSocketTransport()
    if kind == "livekit":
        from .livekit import LiveKitTransport

        return LiveKitTransport()
    raise ValueError(f"unknown transport {kind!r}")


__all__ = ["Transport", "TransportClosed", "TransportListener", "TransportOpenError", "create",
           "TransportFactory"]
