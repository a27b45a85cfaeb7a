"""In-memory transport for unit tests (the httpx ``MockTransport`` idea): no sockets, no threads.

``MemoryServer`` is the "server" end a test drives: :meth:`MemoryServer.push` delivers a frame
to the client, :meth:`MemoryServer.push_audio` a piece of the character's voice,
:meth:`MemoryServer.interrupt` a server-side interruption, :meth:`MemoryServer.close` closes from
the server with a code and reason, :meth:`MemoryServer.drop` simulates an abrupt loss; ``sent``
records what the client sent and ``audio_sent`` the user's voice. ``supports_audio`` and
``audio_lag`` set what the client end reports (audio on, no lag: like the WebSocket).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ..connect import Endpoint
from ..errors import ErrorCode, SessionError
from ..netio import Canceller
from .base import Transport, TransportClosed, TransportListener, TransportOpenError


class MemoryServer:
    """The test's end of one :class:`MemoryTransport`."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.audio_sent: list[tuple[bytes, int, int]] = []
        self.supports_audio = True
        self.audio_lag = 0.0
        self._cond = threading.Condition()
        self.transport: MemoryTransport | None = None

    def push_audio(self, pcm: bytes, sample_rate: int = 16000, num_channels: int = 1) -> None:
        """Deliver the character's voice (PCM16) to the client, as a transport's audio track would."""
        t = self.transport
        if t is None or t.listener is None:
            raise RuntimeError("client end is not open")
        t.listener.on_transport_audio(t, pcm, sample_rate, num_channels)

    def interrupt(self) -> None:
        """Tell the client the server interrupted the character (Pipecat's ``InterruptionFrame``)."""
        t = self.transport
        if t is None or t.listener is None:
            raise RuntimeError("client end is not open")
        t.listener.on_transport_interruption(t)

    def record_audio(self, pcm: bytes, sample_rate: int, num_channels: int) -> None:
        with self._cond:
            self.audio_sent.append((pcm, sample_rate, num_channels))
            self._cond.notify_all()

    def wait_audio_sent(self, count: int = 1, timeout: float = 5.0) -> list[tuple[bytes, int, int]]:
        """Block until the client has sent ``count`` pieces of audio; return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.audio_sent) >= count, timeout):
                raise TimeoutError(f"The client sent only {len(self.audio_sent)} of {count} pieces of audio "
                                   f"within {timeout} s.")
            return list(self.audio_sent)

    def push(self, frame: str | bytes | dict[str, Any]) -> None:
        data = json.dumps(frame) if isinstance(frame, dict) else frame
        t = self.transport
        if t is None or t.listener is None:
            raise RuntimeError("client end is not open")
        t.listener.on_transport_message(t, data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.transport is not None:
            self.transport.closed_by_peer(TransportClosed(code, reason, "server"))

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.closed_by_peer(TransportClosed(1006, "connection lost", "network"))

    def record(self, data: str) -> None:
        with self._cond:
            self.sent.append(data)
            self._cond.notify_all()

    def wait_sent(self, msg_type: str, timeout: float = 5.0) -> dict[str, Any]:
        """Block until the client has sent a message of ``msg_type``; return it decoded."""
        def find() -> dict[str, Any] | None:
            for raw in self.sent:
                msg = json.loads(raw)
                if msg.get("type") == msg_type:
                    return dict(msg)
            return None
        with self._cond:
            if not self._cond.wait_for(lambda: find() is not None, timeout):
                raise TimeoutError(f"The client sent no {msg_type} within {timeout} s.")
            found = find()
            assert found is not None
            return found


class MemoryTransport(Transport):
    """Client end; pair it with a :class:`MemoryServer`."""

    kind = "memory"

    def __init__(self, server: MemoryServer) -> None:
        self.server = server
        self.listener: TransportListener | None = None
        self.endpoint: Endpoint | None = None
        self._open = False
        self._closed = False
        server.transport = self

    def open(self, endpoint: Endpoint, listener: TransportListener, *, timeout: float,
             canceller: Canceller | None = None) -> None:
        if canceller is not None and canceller.aborted:
            raise TransportOpenError(SessionError.of(ErrorCode.CONNECTION_TIMEOUT,
                                                     f"{canceller.what} aborted: {canceller.reason}"))
        self.endpoint = endpoint
        self.listener = listener
        self._open = True

    def send(self, data: str) -> None:
        if not self._open:
            raise ConnectionError("memory transport is not open")
        self.server.record(data)

    @property
    def supports_audio(self) -> bool:
        return self.server.supports_audio

    @property
    def audio_lag(self) -> float:
        return self.server.audio_lag

    def send_audio(self, pcm: bytes, sample_rate: int, num_channels: int, *, timeout: float | None) -> None:
        if not self.server.supports_audio:
            raise NotImplementedError("this memory transport carries no audio")
        if not self._open:
            raise ConnectionError("memory transport is not open")
        self.server.record_audio(pcm, sample_rate, num_channels)

    def closed_by_peer(self, closed: TransportClosed) -> None:
        if not self._open:
            return
        self._open = False
        if self.listener is not None:
            self.listener.on_transport_closed(self, closed)

    def abort(self, reason: str) -> None:
        """Drop as lost (keepalive): the listener hears a network close."""
        self.closed_by_peer(TransportClosed(1006, reason, "network"))

    def close(self, code: int = 1000, reason: str = "", *, timeout: float = 1.0) -> None:
        if self._closed:
            return
        self._closed = True
        was_open, self._open = self._open, False
        if was_open and self.listener is not None:
            self.listener.on_transport_closed(self, TransportClosed(code, reason, "client"))
