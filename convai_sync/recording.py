"""Records a session's messages by wrapping each connect attempt's transport (``record_to``).

:class:`RecordingTransport` forwards every call to the real transport and hands each RTVI message, sent or
received, to a :class:`~convai_sync.recorder.SessionRecorder` (see there for the format), so recording
works the same on every transport, against the real service as against the simulator. Without
``record_to`` no wrapper is made and nothing here runs. Thread notes: as the wrapped transport's (messages
in on its reader thread, out on the sender's thread).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .connect import Endpoint
from .netio import Canceller
from .recorder import SessionRecorder
from .transports.base import Transport, TransportClosed, TransportFault, TransportListener


class _RecordingListener:
    """Forwards every call to the session's listener as coming from ``outer`` (the session knows the
    wrapper, not the transport inside it), recording each message on the way."""

    def __init__(self, inner: TransportListener, recorder: SessionRecorder, outer: Transport) -> None:
        self._inner = inner
        self._recorder = recorder
        self._outer = outer
        self._kind = outer.kind

    def on_transport_message(self, transport: Transport, data: str | bytes | TransportFault) -> None:
        if not isinstance(data, TransportFault):
            self._recorder.message("in", self._kind, data)
        self._inner.on_transport_message(self._outer, data)

    def on_transport_audio(self, transport: Transport, pcm: bytes, sample_rate: int, num_channels: int) -> None:
        self._inner.on_transport_audio(self._outer, pcm, sample_rate, num_channels)

    def on_transport_interruption(self, transport: Transport) -> None:
        self._inner.on_transport_interruption(self._outer)

    def on_transport_closed(self, transport: Transport, closed: TransportClosed) -> None:
        self._recorder.write({"event": "closed", "transport": self._kind, "code": closed.code,
                              "reason": closed.reason, "initiator": closed.initiator})
        self._inner.on_transport_closed(self._outer, closed)

    def on_transport_reconnecting(self, transport: Transport) -> None:
        self._inner.on_transport_reconnecting(self._outer)

    def on_transport_reconnected(self, transport: Transport) -> None:
        self._inner.on_transport_reconnected(self._outer)

    def on_transport_participant(self, transport: Transport, event: Any) -> None:
        self._inner.on_transport_participant(self._outer, event)


class RecordingTransport(Transport):
    """A transport that records what ``inner`` sends and receives (see the module docstring)."""

    def __init__(self, inner: Transport, recorder: SessionRecorder) -> None:
        self._inner = inner
        self._recorder = recorder
        self.kind = inner.kind

    def open(self, endpoint: Endpoint, listener: TransportListener, *, timeout: float,
             canceller: Canceller | None = None) -> None:
        self._recorder.write({"event": "open", "transport": self.kind, "session_id": endpoint.session_id,
                              "character_session_id": endpoint.character_session_id})
        self._inner.open(endpoint, _RecordingListener(listener, self._recorder, self), timeout=timeout,
                         canceller=canceller)

    def send(self, data: str) -> None:
        # Recorded first: the reply may arrive (and be recorded by the reader thread) before send() returns.
        self._recorder.message("out", self.kind, data)
        try:
            self._inner.send(data)
        except ConnectionError as exc:
            self._recorder.write({"event": "send_failed", "transport": self.kind, "error": type(exc).__name__})
            raise

    def close(self, code: int = 1000, reason: str = "", *, timeout: float = 1.0) -> None:
        self._inner.close(code, reason, timeout=timeout)

    @property
    def supports_audio(self) -> bool:
        return self._inner.supports_audio

    @property
    def audio_lag(self) -> float:
        return self._inner.audio_lag

    def send_audio(self, pcm: bytes, sample_rate: int, num_channels: int, *, timeout: float | None) -> None:
        self._inner.send_audio(pcm, sample_rate, num_channels, timeout=timeout)

    def ping(self) -> None:
        self._inner.ping()

    def abort(self, reason: str) -> None:
        self._inner.abort(reason)

    @property
    def last_received(self) -> float | None:
        return self._inner.last_received

    @property
    def unsent(self) -> int:
        return self._inner.unsent


def recorder_for(record_to: str | os.PathLike[str] | SessionRecorder | None, api_key: str,
                 *secrets: str | None) -> SessionRecorder | None:
    """The recorder ``record_to`` names: itself, a new one writing that file, or None (recording off); it
    redacts ``api_key`` and every other given secret (e.g. an auth token)."""
    if record_to is None:
        return None
    recorder = record_to if isinstance(record_to, SessionRecorder) else SessionRecorder(record_to)
    for secret in (api_key, *secrets):
        if secret:
            recorder.redact(secret)
    return recorder


def recording_factory(factory: Callable[[], Transport], recorder: SessionRecorder) -> Callable[[], Transport]:
    """``factory``, its transports wrapped to record into ``recorder``."""
    return lambda: RecordingTransport(factory(), recorder)
