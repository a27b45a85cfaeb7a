"""The transport seam: a small interface the session drives (STYLE.md §4.3).

A transport owns its I/O thread(s) and reports to a :class:`TransportListener` from them.
Reconnect logic lives in the session, not here, so every transport shares one tested policy.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Literal, Protocol

from ..connect import Endpoint
from ..errors import SessionError

Initiator = Literal["client", "server", "network"]


@dataclass(frozen=True)
class TransportClosed:
    """How a transport ended.

    Attributes:
        code: WebSocket close code (1006 when no close frame came), or a LiveKit reason value.
        reason: Close reason text.
        initiator: ``"client"`` (we closed), ``"server"`` (close frame) or ``"network"``.
        error: Underlying exception for network failures.
    """

    code: int | None
    reason: str
    initiator: Initiator
    error: BaseException | None = None


class TransportListener(Protocol):
    """Implemented by the session; called on the transport's thread. Must not block."""

    def on_transport_message(self, transport: Transport, data: str | bytes) -> None: ...

    def on_transport_closed(self, transport: Transport, closed: TransportClosed) -> None: ...


class TransportOpenError(Exception):
    """``open()`` failed; ``error`` is the classified :class:`SessionError`."""

    def __init__(self, error: SessionError) -> None:
        super().__init__(error.message)
        self.error = error


class Transport(abc.ABC):
    """One live connection to a session's room."""

    kind: str = "abstract"

    @abc.abstractmethod
    def open(self, endpoint: Endpoint, listener: TransportListener, *, timeout: float) -> None:
        """Block until open (at most ``timeout`` s).

        Raises:
            TransportOpenError: with ``connection.timeout`` / ``connection.network_error`` / …
        """

    @abc.abstractmethod
    def send(self, data: str) -> None:
        """Send one text frame. Thread-safe.

        Raises:
            ConnectionError: the transport is not open.
        """

    @abc.abstractmethod
    def close(self, code: int = 1000, reason: str = "", *, timeout: float = 2.0) -> None:
        """Close. Idempotent; callable from any thread including the listener's; after it
        returns the reader has exited (or, when called on the reader thread, will exit)."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
