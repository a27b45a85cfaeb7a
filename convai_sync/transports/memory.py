"""In-memory transport for unit tests (the httpx ``MockTransport`` idea): no sockets, no threads.

``MemoryServer`` is the "server" end a test drives: :meth:`MemoryServer.push` delivers a frame
to the client, :meth:`MemoryServer.close` closes from the server with a code and reason,
:meth:`MemoryServer.drop` simulates an abrupt loss, and ``sent`` records what the client sent.
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
        self._cond = threading.Condition()
        self.transport: MemoryTransport | None = None

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
                raise TimeoutError(f"client sent no {msg_type} within {timeout} s")
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
