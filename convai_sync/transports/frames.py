"""Reading WebSocket messages with a size limit enforced from the frame header.

websocket-client's ``recv_data_frame`` reads a whole frame into memory and validates it before
it returns, so a 20 MB frame is buffered, then UTF-8-checked in pure Python on the reader
thread, before anything can refuse it. :class:`MessageReader` reads frames itself instead, from
the connection's own ``recv`` (websocket-client's: TLS and timeouts included): it parses a
frame's header, and when the message would exceed ``max_bytes`` it discards the payload in
64 KiB pieces without keeping it and reports a :class:`Refused` message; text is decoded with
``bytes.decode("utf-8")`` (C speed), and invalid UTF-8 refuses that message only. Control
frames (ping, pong, close) are returned as they come, between fragments of a message too.
The socket is read ahead in pieces of up to :data:`READ_AHEAD` bytes (websocket-client asks the
socket for exactly the bytes it needs next: two ``recv`` calls per frame, each of which releases
the interpreter lock and invites a thread switch; a burst of small frames costs one call).
RFC 6455 violations by the server (a masked frame, reserved bits without an extension, a
fragmented or oversized control frame, a stray continuation) raise :class:`ProtocolViolation`:
the connection cannot be trusted after one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import websocket

OP_CONT = websocket.ABNF.OPCODE_CONT
OP_TEXT = websocket.ABNF.OPCODE_TEXT
OP_BINARY = websocket.ABNF.OPCODE_BINARY
OP_CLOSE = websocket.ABNF.OPCODE_CLOSE
OP_PING = websocket.ABNF.OPCODE_PING
OP_PONG = websocket.ABNF.OPCODE_PONG
_DISCARD_CHUNK = 64 * 1024
#: Bytes asked of the socket per ``recv`` (whatever has arrived, up to this, is returned at once).
READ_AHEAD = 64 * 1024
#: The most asked of the socket in one ``recv`` while gathering a large payload.
_MAX_READ = 1024 * 1024


class ProtocolViolation(Exception):
    """The server broke the WebSocket framing rules; the connection must be dropped."""


@dataclass(frozen=True)
class Message:
    """One complete data message (``text`` is str for text frames, bytes for binary)."""

    data: str | bytes


@dataclass(frozen=True)
class Control:
    """A ping, pong or close frame."""

    opcode: int
    payload: bytes


@dataclass(frozen=True)
class Refused:
    """A data message refused without keeping it: too large, or text that is not UTF-8."""

    reason: str
    size: int
    too_large: bool


class _Buffer:
    """The socket's bytes, read ahead: :meth:`take` and :meth:`skip` consume exactly ``n`` bytes.

    ``recv(bufsize)`` is websocket-client's reader for the connection (TLS and timeouts handled;
    it raises ``WebSocketConnectionClosedException`` when the peer closes). A burst of small
    frames costs one ``recv`` and a slice per header and payload; a large payload is gathered in
    pieces and joined once.
    """

    __slots__ = ("_recv", "_data", "_pos")

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv
        self._data = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        data, pos = self._data, self._pos
        end = pos + n
        if end <= len(data):
            self._pos = end
            return data[pos:end]
        parts = [data[pos:]]
        have = len(data) - pos
        while have < n:
            piece = self._recv(max(READ_AHEAD, min(n - have, _MAX_READ)))
            parts.append(piece)
            have += len(piece)
        joined = b"".join(parts)
        if have == n:
            self._data, self._pos = b"", 0
            return joined
        self._data, self._pos = joined, n
        return joined[:n]

    def skip(self, n: int) -> None:
        """Consume ``n`` bytes without keeping them (at most one read-ahead piece is held)."""
        left = len(self._data) - self._pos
        if n <= left:
            self._pos += n
            return
        n -= left
        self._data, self._pos = b"", 0
        while n > 0:
            piece = self._recv(_DISCARD_CHUNK)
            if len(piece) > n:
                self._data, self._pos = piece, n
                return
            n -= len(piece)


class MessageReader:
    """Reads messages from a connected ``websocket.WebSocket`` (its socket must be blocking).

    Frame headers are parsed here (RFC 6455 section 5.2: two bytes, then a 16- or 64-bit
    extended length when the 7-bit one is 126 or 127; a server's frames are never masked) from
    the read-ahead buffer; websocket-client's ``frame_buffer`` helpers cost more than the rest
    of the reader together on a burst of small frames (measured with ``bench/run.py``'s inbound
    throughput row). The handshake, sending and masking stay websocket-client's.

    Args:
        ws: The WebSocket after its handshake (nothing read past the handshake's response).
        max_bytes: Largest data message accepted (bytes, summed over its fragments).
    """

    def __init__(self, ws: websocket.WebSocket, max_bytes: int) -> None:
        self._buf = _Buffer(ws.frame_buffer.recv)
        self._max = max_bytes
        # The message being assembled; kept across calls, since a control frame that arrives
        # between its fragments is returned first.
        self._parts: list[bytes] = []
        self._opcode: int | None = None
        self._size = 0
        self._discarding = False

    def next(self) -> Message | Control | Refused:
        """Block until the next message or control frame.

        Raises:
            websocket.WebSocketConnectionClosedException, OSError: the connection ended.
            ProtocolViolation: the server broke the framing rules.
        """
        buf = self._buf
        while True:
            fin, frame_op, length = self._header()
            if frame_op >= OP_CLOSE:
                if not fin or length > 125:
                    raise ProtocolViolation("fragmented or oversized control frame")
                return Control(frame_op, buf.take(length))
            if frame_op == OP_CONT:
                if self._opcode is None:
                    raise ProtocolViolation("continuation frame without a message")
            elif frame_op in (OP_TEXT, OP_BINARY):
                if self._opcode is not None:
                    raise ProtocolViolation("new message before the previous one ended")
                self._opcode = frame_op
            else:
                raise ProtocolViolation(f"unknown opcode {frame_op:#x}")
            self._size += length
            if self._discarding or self._size > self._max:
                self._discarding = True
                self._parts = []
                buf.skip(length)
            else:
                self._parts.append(buf.take(length))
            if fin:
                return self._finish()

    def _finish(self) -> Message | Refused:
        parts, opcode, size, discarding = self._parts, self._opcode, self._size, self._discarding
        self._parts, self._opcode, self._size, self._discarding = [], None, 0, False
        if discarding:
            return Refused(f"message of {size} bytes exceeds the limit of {self._max} bytes", size, True)
        data = b"".join(parts) if len(parts) != 1 else parts[0]
        if opcode == OP_BINARY:
            return Message(data)
        try:
            return Message(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            return Refused(f"text message is not valid UTF-8 ({exc.reason} at byte {exc.start})", size, False)

    def _header(self) -> tuple[bool, int, int]:
        first, second = self._buf.take(2)
        if second & 0x80:
            raise ProtocolViolation("the server sent a masked frame")
        if first & 0x70:
            raise ProtocolViolation("reserved bits set without a negotiated extension")
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._buf.take(2), "big")
        elif length == 127:
            length = int.from_bytes(self._buf.take(8), "big")
            if length >> 63:
                raise ProtocolViolation("64-bit frame length with the most significant bit set")
        return bool(first & 0x80), first & 0x0F, length
