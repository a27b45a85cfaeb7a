"""The simulator's own codec for Pipecat's protobuf ``Frame`` (binary WebSocket messages on ``/chat``).
Pure (no I/O), usable from any thread.

PROPOSED for Convai's ``/chat`` (its audio is undocumented; Convai's Web SDK WebSocket transport speaks
Pipecat's ``ProtobufFrameSerializer``). Written from ``pipecat-ai/pipecat`` ``src/pipecat/frames/frames.proto``
(commit acead05), independently of the SDK's copy, so client and simulator cannot be wrong together:

    Frame { oneof frame { TextFrame text = 1; AudioRawFrame audio = 2; TranscriptionFrame transcription = 3;
                          MessageFrame message = 4; InterruptionFrame interruption = 5; } }
    AudioRawFrame { uint64 id = 1; string name = 2; bytes audio = 3; uint32 sample_rate = 4;
                    uint32 num_channels = 5; optional uint64 pts = 6; }
    MessageFrame { string data = 1; }    InterruptionFrame { uint64 id = 1; string name = 2; }
    TextFrame { uint64 id = 1; string name = 2; string text = 3; }
    TranscriptionFrame { uint64 id = 1; string name = 2; string text = 3; string user_id = 4; string timestamp = 5; }

The message classes come from a ``FileDescriptorProto`` built here, with the ``protobuf`` package (imported
when first needed; it ships with the ``simulator`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_FRAME: Any = None


class Unavailable(RuntimeError):
    """The ``protobuf`` package is not installed."""


@dataclass(frozen=True)
class Audio:
    """``Frame.audio``: PCM16 little-endian ``pcm``, ``sample_rate`` Hz, ``num_channels`` interleaved."""

    pcm: bytes
    sample_rate: int
    num_channels: int


@dataclass(frozen=True)
class Message:
    """``Frame.message``: one RTVI message as JSON text."""

    data: str


@dataclass(frozen=True)
class Other:
    """Any other frame kind (``text``, ``transcription``, ``interruption``), or none."""

    kind: str | None


def _frame() -> Any:
    global _FRAME
    if _FRAME is not None:
        return _FRAME
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError as exc:
        raise Unavailable("the simulator's WebSocket audio needs protobuf: pip install 'convai-sync[simulator]'") \
            from exc
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="simulator/pipecat_frames.proto", package="pipecat",
                                               syntax="proto3")
    layouts: dict[str, list[tuple[str, int, int]]] = {
        "TextFrame": [("id", 1, field.TYPE_UINT64), ("name", 2, field.TYPE_STRING), ("text", 3, field.TYPE_STRING)],
        "AudioRawFrame": [("id", 1, field.TYPE_UINT64), ("name", 2, field.TYPE_STRING), ("audio", 3, field.TYPE_BYTES),
                          ("sample_rate", 4, field.TYPE_UINT32), ("num_channels", 5, field.TYPE_UINT32)],
        "TranscriptionFrame": [("id", 1, field.TYPE_UINT64), ("name", 2, field.TYPE_STRING),
                               ("text", 3, field.TYPE_STRING), ("user_id", 4, field.TYPE_STRING),
                               ("timestamp", 5, field.TYPE_STRING)],
        "MessageFrame": [("data", 1, field.TYPE_STRING)],
        "InterruptionFrame": [("id", 1, field.TYPE_UINT64), ("name", 2, field.TYPE_STRING)],
    }
    for name, fields in layouts.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind in fields:
            message.field.add(name=field_name, number=number, type=kind, label=field.LABEL_OPTIONAL)
        if name == "AudioRawFrame":  # proto3 ``optional uint64 pts = 6``: a synthetic oneof of its own
            message.oneof_decl.add(name="_pts")
            message.field.add(name="pts", number=6, type=field.TYPE_UINT64, label=field.LABEL_OPTIONAL,
                              oneof_index=0, proto3_optional=True)
    frame = proto.message_type.add(name="Frame")
    frame.oneof_decl.add(name="frame")
    for number, (field_name, type_name) in enumerate(
            [("text", "TextFrame"), ("audio", "AudioRawFrame"), ("transcription", "TranscriptionFrame"),
             ("message", "MessageFrame"), ("interruption", "InterruptionFrame")], start=1):
        frame.field.add(name=field_name, number=number, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
                        type_name=f".pipecat.{type_name}", oneof_index=0)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    _FRAME = message_factory.GetMessageClass(pool.FindMessageTypeByName("pipecat.Frame"))
    return _FRAME


def available() -> bool:
    """True when binary frames can be read and written (``protobuf`` is installed)."""
    try:
        _frame()
    except Unavailable:
        return False
    return True


def audio(pcm: bytes, sample_rate: int, num_channels: int = 1) -> bytes:
    """A serialized ``Frame.audio`` (the Pipecat output transport sets ``id``/``name`` too; they are optional)."""
    message = _frame()()
    message.audio.audio = pcm
    message.audio.sample_rate = sample_rate
    message.audio.num_channels = num_channels
    data: bytes = message.SerializeToString()
    return data


def interruption() -> bytes:
    """A serialized ``Frame.interruption`` (Pipecat sends it when the bot is interrupted)."""
    message = _frame()()
    message.interruption.SetInParent()
    data: bytes = message.SerializeToString()
    return data


def parse(data: bytes) -> Audio | Message | Other:
    """Decode one binary message.

    Raises:
        ValueError: not a ``pipecat.Frame``, or ``Frame.audio`` that is not PCM16 at a usable rate.
        Unavailable: ``protobuf`` is not installed.
    """
    cls = _frame()
    from google.protobuf.message import DecodeError

    try:
        message = cls.FromString(data)
    except (DecodeError, ValueError) as exc:
        raise ValueError(f"not a Pipecat Frame: {exc}") from None
    kind = message.WhichOneof("frame")
    if kind == "audio":
        body = message.audio
        raw, rate, channels = bytes(body.audio), int(body.sample_rate), int(body.num_channels)
        if not 8000 <= rate <= 192000 or not 1 <= channels <= 8 or len(raw) % (2 * channels):
            raise ValueError(f"Frame.audio is not PCM16 ({len(raw)} bytes, {rate} Hz, {channels} channels)")
        return Audio(raw, rate, channels)
    if kind == "message":
        return Message(str(message.message.data))
    return Other(kind)
