"""Non-blocking sends on a blocking socket: write at once when the kernel has room, else queue.

A send must never block its caller on the network: a peer that stops reading fills the TCP
buffer, and a blocking ``sendall`` would then hold the caller (and every sender behind it)
forever. :class:`Outbox` writes a small frame directly on the caller's thread only when nothing
is queued, no write is in progress and ``select`` says the socket is writable now (the kernel
then accepts a frame of at most :data:`DIRECT_MAX` bytes without blocking); otherwise the frame
joins a bounded queue that one lazily started writer thread, ``convai-writer-<n>``, drains in
order. A full queue fails the send at once with :class:`OutboxFull`, unless the caller gives a
deadline to wait for room (audio does: its back-pressure is this queue) and a lower cap, so a
stream of audio never fills the room other messages need.

Thread ownership: the writer thread is owned by the Outbox; :meth:`Outbox.close` stops it, and
the owner shuts the socket down so a write blocked in the kernel returns. Frames are written in
the order ``send`` accepted them.
"""

from __future__ import annotations

import collections
import itertools
import logging
import select
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger("convai_sync")
_ids = itertools.count(1)

_HAS_POLL = hasattr(select, "poll")

#: Largest frame written directly on the caller's thread (a writable TCP socket has at least this
#: much room in practice; bigger frames always go through the writer thread).
DIRECT_MAX = 4096


class OutboxFull(ConnectionError):
    """The send queue is full: the peer has stopped reading. The frame was not sent."""


class Outbox:
    """Ordered, bounded, non-blocking writes to one socket.

    Args:
        sock: A connected (possibly TLS) socket in blocking mode.
        limit_bytes: Bound of the queued bytes; beyond it :meth:`send` raises :class:`OutboxFull`.
        on_error: Called once (on the writing thread) when a write fails: the link is broken.
    """

    def __init__(self, sock: socket.socket, limit_bytes: int, on_error: Callable[[OSError], None]) -> None:
        self._sock = sock
        self._limit = limit_bytes
        self._on_error = on_error
        self._cond = threading.Condition()
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._writing = False
        self._closed = False
        self._failed = False
        self._writer: threading.Thread | None = None

    def send(self, frame: bytes, *, deadline: float | None = None, cap: int | None = None) -> None:
        """Write ``frame`` now or queue it; never blocks on the network.

        Args:
            frame: One complete WebSocket frame.
            deadline: ``time.monotonic()`` until which to wait for room in the queue; None fails
                at once when it is full.
            cap: Queued bytes this frame may fill the queue up to (default: the whole bound).

        Raises:
            ConnectionError: the outbox is closed or the link failed.
            OutboxFull: the queue stayed full (``limit_bytes``, or ``cap``) until ``deadline``.
        """
        limit = self._limit if cap is None else min(cap, self._limit)
        with self._cond:
            if self._closed or self._failed:
                raise ConnectionError("the connection is closed")
            direct = (not self._queue and not self._writing and len(frame) <= DIRECT_MAX
                      and self._writable())
            if direct:
                self._writing = True
            else:
                while self._queued + len(frame) > limit:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is None or remaining <= 0:
                        raise OutboxFull(f"send queue full ({len(self._queue)} frames, {self._queued} bytes "
                                         "waiting): the server is not reading")
                    self._cond.wait(remaining)
                    if self._closed or self._failed:
                        raise ConnectionError("the connection is closed")
                self._queue.append(frame)
                self._queued += len(frame)
                self._ensure_writer()
                self._cond.notify_all()
                return
        self._write(frame)

    def _writable(self) -> bool:
        try:
            if _HAS_POLL:  # poll has no FD_SETSIZE limit (a host with many sockets open)
                poller = select.poll()
                poller.register(self._sock, select.POLLOUT)
                return bool(poller.poll(0))
            _, ready, _ = select.select([], [self._sock], [], 0)
        except (OSError, ValueError):
            return False  # closed or unusable: the queue path reports the failure
        return bool(ready)

    def _write(self, frame: bytes) -> None:
        # Called with ``_writing`` set by this thread; clears it whatever happens.
        try:
            self._sock.sendall(frame)
        except OSError as exc:
            with self._cond:
                self._writing = False
                first = not self._failed
                self._failed = True
                self._cond.notify_all()
            if first:
                self._on_error(exc)
            raise ConnectionError(f"send failed: {exc}") from exc
        with self._cond:
            self._writing = False
            if self._queue:
                self._cond.notify_all()

    def _ensure_writer(self) -> None:
        # Called with the lock held.
        if self._writer is None:
            self._writer = threading.Thread(target=self._drain, name=f"convai-writer-{next(_ids)}", daemon=True)
            self._writer.start()

    def _drain(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._failed and (not self._queue or self._writing):
                    self._cond.wait()
                if self._closed or self._failed:
                    return
                frame = self._queue.popleft()
                self._queued -= len(frame)
                self._writing = True
                self._cond.notify_all()  # a sender waiting for room
            try:
                self._write(frame)
            except ConnectionError:
                return

    def try_send_now(self, frame: bytes) -> bool:
        """Write ``frame`` only if it can go out at once (used for close and pong frames)."""
        with self._cond:
            if self._closed or self._failed or self._queue or self._writing or not self._writable():
                return False
            self._writing = True
        try:
            self._write(frame)
        except ConnectionError:
            return False
        return True

    def close(self, timeout: float) -> int:
        """Stop the writer (the owner shuts the socket down to unblock a write in progress);
        returns how many queued frames were never sent."""
        with self._cond:
            self._closed = True
            unsent = len(self._queue)
            self._queue.clear()
            self._queued = 0
            self._cond.notify_all()
            writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout)
            if writer.is_alive():
                log.warning("%s did not exit within %.2f s", writer.name, timeout)
        return unsent
