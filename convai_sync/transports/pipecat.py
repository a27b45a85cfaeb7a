"""Pipecat's protobuf ``Frame``: the binary WebSocket frames that carry audio (sans-I/O).

PROPOSED wire format for audio on Convai's ``/chat`` WebSocket. Convai does not document the
WebSocket's audio; its Web SDK's WebSocket transport is ``@pipecat-ai/websocket-transport``,
whose default ``ProtobufFrameSerializer`` sends and receives binary ``pipecat.Frame`` messages.
The schema, field numbers and types below are those of ``pipecat-ai/pipecat``
``src/pipecat/frames/frames.proto`` (commit acead05, 2026-08-21)::

    message TextFrame          { uint64 id = 1; string name = 2; string text = 3; }
    message AudioRawFrame      { uint64 id = 1; string name = 2; bytes audio = 3;
                                 uint32 sample_rate = 4; uint32 num_channels = 5; optional uint64 pts = 6; }
    message TranscriptionFrame { uint64 id = 1; string name = 2; string text = 3;
                                 string user_id = 4; string timestamp = 5; }
    message MessageFrame       { string data = 1; }      // one RTVI message as JSON text
    message InterruptionFrame  { uint64 id = 1; string name = 2; }
    message Frame { oneof frame { TextFrame text = 1; AudioRawFrame audio = 2;
                                  TranscriptionFrame transcription = 3; MessageFrame message = 4;
                                  InterruptionFrame interruption = 5; } }

``audio`` is PCM16 little-endian, interleaved. The Pipecat web client sends its microphone as
``AudioRawFrame{id: 0, name: "audio", audio, sample_rate, num_channels}`` (pipecat-client-web-transports
``protobufSerializer.ts``), and so does :func:`encode_audio`. A Pipecat server sends an
``InterruptionFrame`` when the user interrupts the bot, telling the client to drop the audio it
has not played yet.

The message classes are built at run time from a ``FileDescriptorProto`` written here (no
generated code, no ``protoc``), with the ``protobuf`` package, which is imported lazily: it is
the ``audio`` extra (``pip install 'convai-sync[audio]'``; also in ``[livekit]``). Without it
:func:`available` is False and every codec function raises :class:`ProtobufMissing`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ..audio import BYTES_PER_SAMPLE, check_format

EXTRA_HINT = "pip install 'convai-sync[audio]'"


class ProtobufMissing(ImportError):
    """The ``protobuf`` package (extra ``audio``) is not installed."""


class FrameDecodeError(ValueError):
    """A binary frame is not a well-formed Pipecat ``Frame`` (or its audio is not PCM16)."""


@dataclass(frozen=True)
class AudioPayload:
    """``Frame.audio``: PCM16 ``pcm`` at ``sample_rate`` Hz, ``num_channels`` interleaved."""

    pcm: bytes
    sample_rate: int
    num_channels: int
    pts: int | None = None


@dataclass(frozen=True)
class MessagePayload:
    """``Frame.message``: one RTVI message as JSON text."""

    data: str


@dataclass(frozen=True)
class InterruptionPayload:
    """``Frame.interruption``: the server interrupted the bot; drop unplayed audio."""


@dataclass(frozen=True)
class TextPayload:
    """``Frame.text`` or ``Frame.transcription`` (``kind`` says which); Convai sends text as RTVI
    messages, so these are only logged."""

    kind: str
    text: str


Payload = AudioPayload | MessagePayload | InterruptionPayload | TextPayload


@functools.cache
def _frame_class() -> Any:
    """The ``pipecat.Frame`` message class, built once from the schema in the module docstring."""
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError as exc:
        raise ProtobufMissing(f"audio on the WebSocket transport needs the protobuf package: {EXTRA_HINT}") from exc
    fdp = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="convai_sync/pipecat_frames.proto", package="pipecat",
                                              syntax="proto3")

    def message(name: str, *fields: tuple[str, int, int]) -> Any:
        msg = file.message_type.add(name=name)
        for field_name, number, kind in fields:
            msg.field.add(name=field_name, number=number, type=kind, label=fdp.LABEL_OPTIONAL)
        return msg

    u64, u32, text, raw = fdp.TYPE_UINT64, fdp.TYPE_UINT32, fdp.TYPE_STRING, fdp.TYPE_BYTES
    message("TextFrame", ("id", 1, u64), ("name", 2, text), ("text", 3, text))
    audio = message("AudioRawFrame", ("id", 1, u64), ("name", 2, text), ("audio", 3, raw),
                    ("sample_rate", 4, u32), ("num_channels", 5, u32))
    # proto3 ``optional``: a synthetic one-field oneof named after the field.
    audio.oneof_decl.add(name="_pts")
    audio.field.add(name="pts", number=6, type=u64, label=fdp.LABEL_OPTIONAL, proto3_optional=True, oneof_index=0)
    message("TranscriptionFrame", ("id", 1, u64), ("name", 2, text), ("text", 3, text), ("user_id", 4, text),
            ("timestamp", 5, text))
    message("MessageFrame", ("data", 1, text))
    message("InterruptionFrame", ("id", 1, u64), ("name", 2, text))
    frame = file.message_type.add(name="Frame")
    frame.oneof_decl.add(name="frame")
    for field_name, number, type_name in (("text", 1, "TextFrame"), ("audio", 2, "AudioRawFrame"),
                                          ("transcription", 3, "TranscriptionFrame"), ("message", 4, "MessageFrame"),
                                          ("interruption", 5, "InterruptionFrame")):
        frame.field.add(name=field_name, number=number, type=fdp.TYPE_MESSAGE, type_name=f".pipecat.{type_name}",
                        label=fdp.LABEL_OPTIONAL, oneof_index=0)
    pool = descriptor_pool.DescriptorPool()  # private: never clashes with another copy of the schema
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("pipecat.Frame"))


def available() -> bool:
    """True when the ``protobuf`` package is installed (audio can travel on the WebSocket)."""
    try:
        _frame_class()
    except ProtobufMissing:
        return False
    return True


def encode_audio(pcm: bytes, sample_rate: int, num_channels: int = 1, pts: int | None = None) -> bytes:
    """One binary ``Frame.audio`` carrying ``pcm`` (PCM16 little-endian, interleaved).

    Raises:
        ValueError: not whole PCM16 frames, or ``sample_rate``/``num_channels`` out of range.
        ProtobufMissing: the ``audio`` extra is not installed.
    """
    pcm = check_format(pcm, sample_rate, num_channels)
    frame = _frame_class()()
    frame.audio.id = 0
    frame.audio.name = "audio"
    frame.audio.audio = pcm
    frame.audio.sample_rate = sample_rate
    frame.audio.num_channels = num_channels
    if pts is not None:
        frame.audio.pts = pts
    data: bytes = frame.SerializeToString()
    return data


def encode_message(text: str) -> bytes:
    """One binary ``Frame.message`` carrying an RTVI JSON message (what Pipecat clients send).

    Raises:
        ProtobufMissing: the ``audio`` extra is not installed.
    """
    frame = _frame_class()()
    frame.message.data = text
    data: bytes = frame.SerializeToString()
    return data


def encode_interruption() -> bytes:
    """One binary ``Frame.interruption`` (what a Pipecat server sends on barge-in)."""
    frame = _frame_class()()
    frame.interruption.SetInParent()
    data: bytes = frame.SerializeToString()
    return data


def decode(data: bytes) -> Payload:
    """Decode one binary WebSocket message.

    Returns:
        :class:`AudioPayload` (validated PCM16), :class:`MessagePayload`,
        :class:`InterruptionPayload` or :class:`TextPayload`.

    Raises:
        FrameDecodeError: not a ``pipecat.Frame``, no frame kind set, or audio with a bad format.
        ProtobufMissing: the ``audio`` extra is not installed.
    """
    cls = _frame_class()
    from google.protobuf.message import DecodeError

    try:
        frame = cls.FromString(bytes(data))
    except (DecodeError, ValueError) as exc:  # ValueError: upb's error for some malformed input
        raise FrameDecodeError(f"not a Pipecat Frame ({len(data)} bytes): {exc}") from None
    kind = frame.WhichOneof("frame")
    if kind == "audio":
        audio = frame.audio
        pcm, rate, channels = bytes(audio.audio), int(audio.sample_rate), int(audio.num_channels)
        try:
            check_format(pcm, rate, channels)
        except ValueError as exc:
            raise FrameDecodeError(f"Frame.audio: {exc}") from None
        return AudioPayload(pcm, rate, channels, int(audio.pts) if audio.HasField("pts") else None)
    if kind == "message":
        return MessagePayload(str(frame.message.data))
    if kind == "interruption":
        return InterruptionPayload()
    if kind in ("text", "transcription"):
        return TextPayload(kind, str(getattr(frame, kind).text))
    raise FrameDecodeError(f"a Pipecat Frame with no frame set ({len(data)} bytes)")


def frame_bytes(sample_rate: int, num_channels: int, seconds: float = 0.02) -> int:
    """Bytes of ``seconds`` of PCM16 (20 ms by default: the framing :func:`split` uses)."""
    return max(1, round(sample_rate * seconds)) * BYTES_PER_SAMPLE * num_channels


def split(pcm: bytes, sample_rate: int, num_channels: int, seconds: float = 0.02) -> list[bytes]:
    """``pcm`` cut into ``seconds``-long pieces (the last may be shorter), each whole samples."""
    size = frame_bytes(sample_rate, num_channels, seconds)
    view = memoryview(pcm)
    return [bytes(view[i:i + size]) for i in range(0, len(pcm), size)]
