"""Reading WebSocket messages with a size limit enforced from the frame header.

websocket-client's ``recv_data_frame`` reads a whole frame into memory and validates it before
it returns, so a 20 MB frame is buffered, then UTF-8-checked in pure Python on the reader
thread, before anything can refuse it. :class:`MessageReader` uses the library's own frame
parser pieces (``frame_buffer.recv_header``/``recv_length``/``recv_strict``) instead: it reads a
frame's header, and when the message would exceed ``max_bytes`` it discards the payload in
64 KiB pieces without keeping it and reports a :class:`Refused` message; text is decoded with
``bytes.decode("utf-8")`` (C speed), and invalid UTF-8 refuses that message only. Control
frames (ping, pong, close) are returned as they come, between fragments of a message too.
The socket is read ahead in pieces of up to :data:`READ_AHEAD` bytes (websocket-client asks the
socket for exactly the bytes it needs next: two ``recv`` calls per frame, each of which releases
the interpreter lock and invites a thread switch; a burst of small frames now costs one call).
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


class _ReadAhead:
    """A ``recv(bufsize)`` for websocket-client's ``frame_buffer`` that reads the socket ahead.

    Returns at most ``bufsize`` bytes, from what an earlier read brought in when there is some
    (never blocking then), else from one socket read of up to :data:`READ_AHEAD` bytes. The
    frame buffer keeps asking until it has the bytes it needs, so short answers are fine.
    """

    __slots__ = ("_recv", "_data", "_pos")

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv
        self._data = b""
        self._pos = 0

    def __call__(self, bufsize: int) -> bytes:
        if self._pos >= len(self._data):
            data = self._recv(max(bufsize, READ_AHEAD))
            if len(data) <= bufsize:
                return data
            self._data, self._pos = data, 0
        start = self._pos
        self._pos = start + bufsize
        return self._data[start:self._pos]


class MessageReader:
    """Reads messages from a connected ``websocket.WebSocket`` (its socket must be blocking).

    Args:
        ws: The WebSocket after its handshake; only its ``frame_buffer`` is used.
        max_bytes: Largest data message accepted (bytes, summed over its fragments).
    """

    def __init__(self, ws: websocket.WebSocket, max_bytes: int) -> None:
        self._fb = ws.frame_buffer
        self._fb.recv = _ReadAhead(self._fb.recv)
        self._max = max_bytes

    def next(self) -> Message | Control | Refused:
        """Block until the next message or control frame.

        Raises:
            websocket.WebSocketConnectionClosedException, OSError: the connection ended.
            ProtocolViolation: the server broke the framing rules.
        """
        parts: list[bytes] = []
        opcode: int | None = None
        size = 0
        discarding = False
        while True:
            fin, frame_op, length = self._header()
            if frame_op >= OP_CLOSE:
                if not fin or length > 125:
                    raise ProtocolViolation("fragmented or oversized control frame")
                return Control(frame_op, self._payload(length))
            if frame_op == OP_CONT:
                if opcode is None:
                    raise ProtocolViolation("continuation frame without a message")
            elif frame_op in (OP_TEXT, OP_BINARY):
                if opcode is not None:
                    raise ProtocolViolation("new message before the previous one ended")
                opcode = frame_op
            else:
                raise ProtocolViolation(f"unknown opcode {frame_op:#x}")
            size += length
            if discarding or size > self._max:
                discarding = True
                parts = []
                self._discard(length)
            else:
                parts.append(self._payload(length))
            if not fin:
                continue
            if discarding:
                return Refused(f"message of {size} bytes exceeds the limit of {self._max} bytes", size, True)
            data = b"".join(parts) if len(parts) != 1 else parts[0]
            if opcode == OP_BINARY:
                return Message(data)
            try:
                return Message(data.decode("utf-8"))
            except UnicodeDecodeError as exc:
                return Refused(f"text message is not valid UTF-8 ({exc.reason} at byte {exc.start})", size, False)

    def _header(self) -> tuple[int, int, int]:
        fb = self._fb
        fb.recv_header()
        header = fb.header
        assert header is not None  # recv_header() sets it or raises
        fin, rsv1, rsv2, rsv3, opcode, has_mask, _ = header
        if has_mask:
            raise ProtocolViolation("the server sent a masked frame")
        if rsv1 or rsv2 or rsv3:
            raise ProtocolViolation("reserved bits set without a negotiated extension")
        fb.recv_length()
        length = int(fb.length or 0)
        fb.mask_value = b""
        return int(fin), int(opcode), length

    def _payload(self, length: int) -> bytes:
        fb = self._fb
        data: bytes = fb.recv_strict(length) if length else b""
        fb.clear()
        return data

    def _discard(self, length: int) -> None:
        fb = self._fb
        while length > 0:
            piece = fb.recv_strict(min(length, _DISCARD_CHUNK))
            length -= len(piece)
        fb.clear()
