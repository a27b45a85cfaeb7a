"""Pipecat protobuf ``Frame`` codec: round trips, bytes checked against the schema by hand, bad input."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from convai_sync.transports import pipecat

pytestmark = pytest.mark.timeout(10)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, wire_type: int, payload: bytes) -> bytes:
    """One protobuf field, encoded from the wire-format rules (independently of the codec)."""
    head = varint(number << 3 | wire_type)
    return head + (varint(len(payload)) + payload if wire_type == 2 else payload)


def test_audio_frame_bytes_follow_frames_proto() -> None:
    pcm = b"\x01\x00\xff\x7f"
    inner = (field(2, 2, b"audio") + field(3, 2, pcm) + field(4, 0, varint(16000)) + field(5, 0, varint(1))
             + field(6, 0, varint(7)))
    assert pipecat.encode_audio(pcm, 16000, 1, pts=7) == field(2, 2, inner)


def test_audio_round_trip_keeps_format_and_pts() -> None:
    pcm = bytes(range(256)) * 4
    decoded = pipecat.decode(pipecat.encode_audio(pcm, 48000, 2))
    assert decoded == pipecat.AudioPayload(pcm, 48000, 2, None)
    with_pts = pipecat.decode(pipecat.encode_audio(pcm, 24000, 1, pts=0))
    assert isinstance(with_pts, pipecat.AudioPayload) and with_pts.pts == 0  # optional: 0 is present


def test_other_frame_kinds_decode() -> None:
    message = '{"type":"bot-ready","data":{}}'
    assert pipecat.decode(field(4, 2, field(1, 2, message.encode()))) == pipecat.MessagePayload(message)
    assert pipecat.decode(pipecat.encode_message(message)) == pipecat.MessagePayload(message)
    assert pipecat.decode(field(5, 2, b"")) == pipecat.InterruptionPayload()
    assert pipecat.decode(pipecat.encode_interruption()) == pipecat.InterruptionPayload()
    assert pipecat.decode(field(1, 2, field(3, 2, b"hi"))) == pipecat.TextPayload("text", "hi")
    assert pipecat.decode(field(3, 2, field(3, 2, b"yo"))) == pipecat.TextPayload("transcription", "yo")


@pytest.mark.parametrize("data, words", [
    (b"\xff\xff\xff", "not a Pipecat Frame"),
    (b"", "no frame set"),
    (field(2, 2, field(3, 2, b"\x01") + field(4, 0, varint(16000)) + field(5, 0, varint(1))), "whole number"),
    (field(2, 2, field(3, 2, b"\x01\x00") + field(5, 0, varint(1))), "sample_rate"),
    (field(2, 2, field(3, 2, b"\x01\x00") + field(4, 0, varint(16000))), "num_channels"),
])
def test_bad_frames_are_refused_with_a_reason(data: bytes, words: str) -> None:
    with pytest.raises(pipecat.FrameDecodeError, match=words):
        pipecat.decode(data)


def test_encode_refuses_a_bad_format() -> None:
    with pytest.raises(ValueError, match="whole number"):
        pipecat.encode_audio(b"\x00", 16000, 1)
    with pytest.raises(ValueError, match="sample_rate"):
        pipecat.encode_audio(b"\x00\x00", 100, 1)


def test_split_frames_pcm_in_20_ms_pieces() -> None:
    pcm = bytes(2 * 16000)  # one second of 16 kHz mono
    pieces = pipecat.split(pcm, 16000, 1)
    assert len(pieces) == 50 and {len(p) for p in pieces} == {640}
    stereo = pipecat.split(bytes(4 * 441 + 4), 22050, 2)  # 441 samples = 20 ms at 22.05 kHz, plus one
    assert [len(p) for p in stereo] == [4 * 441, 4]


@pytest.fixture
def no_protobuf(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    pipecat._frame_class.cache_clear()
    for name in [n for n in sys.modules if n == "google.protobuf" or n.startswith("google.protobuf.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "google.protobuf", None)  # import now raises ImportError
    yield
    pipecat._frame_class.cache_clear()


def test_missing_protobuf_is_a_clear_error(no_protobuf: None) -> None:
    assert pipecat.available() is False
    with pytest.raises(pipecat.ProtobufMissing, match=r"convai-sync\[audio\]"):
        pipecat.encode_audio(b"\x00\x00", 16000)
    with pytest.raises(ImportError):
        pipecat.decode(b"\x12\x00")
