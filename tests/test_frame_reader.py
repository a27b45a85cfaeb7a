"""The WebSocket frame reader against streams encoded by websocket-client itself (``ABNF.format``),
split into arbitrary pieces: every message comes out whole, in order, with control frames between
fragments, oversized messages refused from their header, and violations and truncation raised."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import websocket
from hypothesis import given, settings
from hypothesis import strategies as st

from convai_sync.transports.frames import (
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    Control,
    Message,
    MessageReader,
    ProtocolViolation,
    Refused,
)

pytestmark = pytest.mark.timeout(60)


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One unmasked (server) frame, encoded by websocket-client."""
    return websocket.ABNF(int(fin), 0, 0, 0, opcode, 0, payload).format()


class Pieces:
    """A connection's ``recv(bufsize)``: the stream in the given piece sizes, never more than asked."""

    def __init__(self, stream: bytes, sizes: Iterator[int]) -> None:
        self._stream = stream
        self._pos = 0
        self._sizes = sizes
        self.calls = 0

    def recv(self, bufsize: int) -> bytes:
        self.calls += 1
        if self._pos >= len(self._stream):
            raise websocket.WebSocketConnectionClosedException("Connection to remote host was lost.")
        n = min(bufsize, next(self._sizes, bufsize))
        piece = self._stream[self._pos:self._pos + n]
        self._pos += len(piece)
        return piece


@dataclass
class FakeWS:
    frame_buffer: Pieces


def reader_over(stream: bytes, sizes: Iterator[int] | None = None, max_bytes: int = 1 << 24) -> MessageReader:
    return MessageReader(FakeWS(Pieces(stream, sizes or iter(()))), max_bytes)  # type: ignore[arg-type]


def read_all(reader: MessageReader) -> list[Message | Control | Refused]:
    out: list[Message | Control | Refused] = []
    while True:
        try:
            out.append(reader.next())
        except websocket.WebSocketConnectionClosedException:
            return out


# Sizes around each length encoding's edges: 7-bit (<= 125), 16-bit (126..65535), 64-bit (>= 65536).
EDGE_SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70_000]
payloads = st.one_of(st.binary(max_size=300), st.sampled_from(EDGE_SIZES).map(lambda n: b"\xab" * n))


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[Message | Control | Refused], list[int], int]:
    """A stream of messages (text, binary, fragmented, pings between fragments) and what it reads as."""
    max_bytes = draw(st.sampled_from([1 << 24, 200]))
    wire = b""
    expected: list[Message | Control | Refused] = []
    for _ in range(draw(st.integers(1, 6))):
        binary = draw(st.booleans())
        payload = draw(payloads) if binary else draw(st.text(max_size=200)).encode("utf-8")
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for i, piece in enumerate(pieces):
            opcode = (OP_BINARY if binary else OP_TEXT) if i == 0 else OP_CONT
            wire += frame(opcode, piece, fin=i == len(pieces) - 1)
            if i < len(pieces) - 1 and draw(st.booleans()):
                ping = draw(st.binary(max_size=125))
                wire += frame(OP_PING, ping)
                expected.append(Control(OP_PING, ping))
        if len(payload) > max_bytes:
            expected.append(Refused(f"message of {len(payload)} bytes exceeds the limit of {max_bytes} bytes",
                                    len(payload), True))
        else:
            expected.append(Message(payload if binary else payload.decode("utf-8")))
    sizes = draw(st.lists(st.integers(1, 70_000), max_size=40))
    return wire, expected, sizes, max_bytes


@settings(max_examples=150, deadline=None)
@given(streams())
def test_every_message_reads_back_whole_however_the_stream_is_split(
        case: tuple[bytes, list[Message | Control | Refused], list[int], int]) -> None:
    wire, expected, sizes, max_bytes = case
    assert read_all(reader_over(wire, iter(sizes), max_bytes)) == expected


def test_a_burst_of_small_frames_costs_one_socket_read() -> None:
    wire = b"".join(frame(OP_TEXT, b'{"type":"bot-llm-text"}') for _ in range(500))
    pieces = Pieces(wire, iter(()))
    reader = MessageReader(FakeWS(pieces), 1 << 24)  # type: ignore[arg-type]
    assert len(read_all(reader)) == 500
    assert pieces.calls == 2  # the burst, then the read that finds the connection closed


def test_an_oversized_message_is_skipped_without_being_kept_and_the_next_one_reads() -> None:
    big = frame(OP_TEXT, b"x" * 3_000_000)
    pieces = Pieces(big + frame(OP_TEXT, b"after"), iter(()))
    reader = MessageReader(FakeWS(pieces), 1000)  # type: ignore[arg-type]
    refused = reader.next()
    assert isinstance(refused, Refused) and refused.too_large and refused.size == 3_000_000
    assert reader.next() == Message("after")
    assert pieces.calls <= 3_000_000 // (64 * 1024) + 3  # discarded in read-ahead pieces


def test_invalid_utf8_refuses_that_message_only() -> None:
    reader = reader_over(frame(OP_TEXT, b"\xff\xfe") + frame(OP_TEXT, b"ok"))
    refused = reader.next()
    assert isinstance(refused, Refused) and not refused.too_large and "UTF-8" in refused.reason
    assert reader.next() == Message("ok")


@pytest.mark.parametrize("wire", [
    bytes([0x81, 0x80 | 2]) + b"\0\0\0\0{}",  # masked
    bytes([0xC1, 2]) + b"{}",  # RSV1
    bytes([0x83, 0]),  # opcode 3
    bytes([0x09, 0]),  # fragmented ping
    bytes([0x89, 126, 0, 126]) + b"p" * 126,  # oversized ping
    bytes([0x80, 2]) + b"{}",  # continuation without a message
    bytes([0x01, 1]) + b"a" + bytes([0x81, 1]) + b"b",  # a new message inside a fragmented one
    bytes([0x82, 127]) + (1 << 63).to_bytes(8, "big"),  # 64-bit length with the top bit set
], ids=["masked", "rsv1", "opcode3", "fragmented-ping", "oversized-ping", "stray-continuation",
        "interleaved-message", "length-top-bit"])
def test_framing_violations_raise(wire: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        read_all(reader_over(wire))


@pytest.mark.parametrize("cut", [1, 2, 3, 10])
def test_a_connection_that_ends_inside_a_frame_raises_closed(cut: int) -> None:
    wire = frame(OP_TEXT, b"x" * 300)  # 4-byte header
    reader = reader_over(wire[:cut])
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        reader.next()
