"""Transports: ``websocket`` (default), ``livekit`` (extra) and ``memory`` (tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .base import Transport, TransportClosed, TransportFault, TransportListener, TransportOpenError

if TYPE_CHECKING:
    from ..config import ConvaiConfig

TransportFactory = Callable[[], Transport]


def create(config: ConvaiConfig) -> Transport:
    """Build the transport ``config.transport`` names; ``livekit`` is imported lazily (extra)."""
    if config.transport == "websocket":
        from .websocket import WebSocketTransport

        return WebSocketTransport(max_message_bytes=config.max_message_bytes,
                                  send_queue_bytes=config.send_queue_bytes, close_grace=config.close_grace)
    if config.transport == "livekit":
        from .livekit import LiveKitTransport

        return LiveKitTransport(ice_transport_policy=config.ice_transport_policy,
                                # routed to data only, the voice arrives as audio-data messages, not on a track
                                receive_audio=config.receive_audio and config.audio_routing != "data_only",
                                audio_sample_rate=config.audio_sample_rate,
                                max_message_bytes=config.max_message_bytes,
                                send_queue_bytes=config.send_queue_bytes)
    raise ValueError(f"unknown transport {config.transport!r}")


__all__ = ["Transport", "TransportClosed", "TransportFault", "TransportListener", "TransportOpenError",
           "TransportFactory", "create"]
