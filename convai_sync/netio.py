"""Sockets the SDK can abort: a :class:`Canceller` per blocking operation, and the plumbing that
makes ``requests`` and the WebSocket handshake register their sockets with it.

Per-read socket timeouts do not bound an operation: a peer that drip-feeds one byte at a time
resets them forever. So every blocking network step of the SDK (``POST /connect``,
``POST /disconnect``, the WebSocket handshake) runs on a worker thread with a :class:`Canceller`,
and whoever owns the deadline (the session thread's timer, or ``close()``) calls
:meth:`Canceller.abort`, which shuts the registered sockets down. ``shutdown(SHUT_RDWR)`` acts on
the socket itself, not on one descriptor, so a blocked ``recv``/``send``/``connect`` on another
thread returns at once. Each registered socket is kept as a ``dup()`` of its descriptor: TLS
wrapping detaches the original object, and a private descriptor can never be confused with an
unrelated socket that later reuses the same number.

Thread ownership: a :class:`Canceller` is shared by the worker that registers sockets and the
thread that aborts; its lock guards only its own list and is never held across I/O.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

log = logging.getLogger("convai_sync")


class Aborted(ConnectionError):
    """The operation was aborted by its :class:`Canceller` (a deadline or ``close()``)."""


class Canceller:
    """Aborts the sockets (and callbacks) registered with it, once, from any thread.

    Registering after :meth:`abort` shuts the new socket down at once, so a worker that was
    between two steps when the abort came cannot start a new blocking call that outlives it.
    """

    def __init__(self, what: str = "operation") -> None:
        self.what = what
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._callbacks: list[Callable[[], None]] = []
        self._aborted = False
        self.reason = ""

    @property
    def aborted(self) -> bool:
        return self._aborted

    def check(self) -> None:
        """Raise :class:`Aborted` if :meth:`abort` was called."""
        if self._aborted:
            raise Aborted(f"{self.what} aborted: {self.reason}")

    def register(self, sock: socket.socket) -> None:
        """Make ``abort()`` shut ``sock`` down (a private duplicate descriptor is kept)."""
        try:
            dup = sock.dup()
        except OSError as exc:  # the socket is already closed: nothing left to abort
            log.debug("cannot register a closed socket: %s", exc)
            return
        with self._lock:
            aborted = self._aborted
            if not aborted:
                self._sockets.append(dup)
        if aborted:
            _shutdown(dup)
            dup.close()

    def add_callback(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` on abort (at once if already aborted); for non-socket work (LiveKit)."""
        with self._lock:
            aborted = self._aborted
            if not aborted:
                self._callbacks.append(fn)
        if aborted:
            fn()

    def abort(self, reason: str = "aborted") -> None:
        """Shut every registered socket down and run the callbacks. Idempotent; never blocks."""
        with self._lock:
            if self._aborted:
                return
            self._aborted = True
            self.reason = reason
            sockets, self._sockets = self._sockets, []
            callbacks, self._callbacks = self._callbacks, []
        for dup in sockets:
            _shutdown(dup)
            dup.close()
        for fn in callbacks:
            try:
                fn()
            except Exception:
                log.exception("abort callback of %s raised", self.what)

    def release(self) -> None:
        """The operation finished: close the duplicate descriptors (the sockets stay usable)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
            self._callbacks = []
        for dup in sockets:
            dup.close()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected (yet, or any more): the close that follows is all that is needed


def connect_tcp(host: str, port: int, timeout: float | None, canceller: Canceller | None) -> socket.socket:
    """Connect a TCP socket, registered with ``canceller`` before ``connect()`` so an abort
    interrupts the connect itself (Linux aborts a ``SYN_SENT`` socket on ``shutdown``).

    Raises:
        socket.gaierror: the name does not resolve. OSError / TimeoutError: no address answered.
        Aborted: ``canceller`` aborted.
    """
    if canceller is not None:
        canceller.check()
    error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            if canceller is not None:
                canceller.register(sock)
            sock.settimeout(timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect(address)
            if canceller is not None:
                canceller.check()
            return sock
        except OSError as exc:
            sock.close()
            if canceller is not None and canceller.aborted:
                raise Aborted(f"{canceller.what} aborted: {canceller.reason}") from None
            error = exc
    raise error if error is not None else OSError(f"no address for {host}:{port}")


# ---- requests integration ---------------------------------------------------------------------

_current = threading.local()


@contextmanager
def cancelled_by(canceller: Canceller) -> Iterator[None]:
    """Within the block, HTTP connections this thread opens or reuses register with ``canceller``."""
    previous = getattr(_current, "canceller", None)
    _current.canceller = canceller
    try:
        yield
    finally:
        _current.canceller = previous


def _current_canceller() -> Canceller | None:
    found: Canceller | None = getattr(_current, "canceller", None)
    return found


class _AbortableMixin:
    """urllib3 connection whose socket is created by :func:`connect_tcp` (hence abortable)."""

    host: str
    port: int
    timeout: Any
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        timeout = self.timeout if isinstance(self.timeout, (int, float)) else None
        try:
            return connect_tcp(self._dns_host, self.port, timeout, _current_canceller())
        except Aborted:
            raise
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc  # type: ignore[arg-type]


class _HTTPConnection(_AbortableMixin, HTTPConnection):
    pass


class _HTTPSConnection(_AbortableMixin, HTTPSConnection):
    pass


def _register_reused(conn: Any) -> None:
    canceller = _current_canceller()
    sock = getattr(conn, "sock", None)
    if canceller is not None and sock is not None:
        canceller.register(sock)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        _register_reused(conn)  # a kept-alive connection was registered by an earlier operation
        return conn


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        _register_reused(conn)
        return conn


class AbortableAdapter(HTTPAdapter):
    """A requests adapter whose connections register with the thread's current canceller."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
