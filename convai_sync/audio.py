"""Audio values: :class:`AudioFrame` (a piece of the character's voice as it arrives) and
:class:`AudioClip` (a whole utterance, e.g. ``BotReply.audio``), with WAV in and out (stdlib
``wave``).

All audio in convai_sync is PCM16: signed 16-bit little-endian samples, interleaved when there is
more than one channel. Sample rates are in Hz, durations and timestamps in seconds.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass, field
from datetime import datetime, timezone
from os import PathLike
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # PEP 688's buffer type (collections.abc.Buffer from Python 3.12); types only
    from typing_extensions import Buffer

BYTES_PER_SAMPLE = 2


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def pcm_bytes(pcm: Buffer | object) -> bytes:
    """``pcm`` as ``bytes``: any C-contiguous buffer (``bytes``, ``bytearray``, a ``memoryview`` or
    ``array.array`` of any item type, a NumPy array…), taken by its bytes, not its items (an int16
    view of 3 samples is 6 bytes). ``bytes`` is returned as it is, anything else copied once.

    Raises:
        ValueError: ``pcm`` is not a buffer (a ``str``, a list…) or not C-contiguous (a strided
            view such as ``view[::2]`` or one channel of a 2-D array: copy it first).
    """
    if type(pcm) is bytes:
        return pcm
    if isinstance(pcm, str):
        raise ValueError("pcm must be bytes of PCM16 samples (a bytes-like buffer), got str")
    try:
        view = memoryview(pcm)  # type: ignore[arg-type]  # any object: TypeError names a non-buffer
    except TypeError:
        raise ValueError(f"pcm must be bytes of PCM16 samples (a bytes-like buffer), got {type(pcm).__name__}") \
            from None
    with view:
        if not view.c_contiguous:
            raise ValueError(f"pcm must be a C-contiguous buffer, got a non-contiguous {type(pcm).__name__} "
                             "(e.g. a strided slice); pass a contiguous copy such as bytes(...) of it")
        return view.tobytes()


def check_format(pcm: Buffer | object, sample_rate: int, num_channels: int) -> bytes:
    """``pcm`` as ``bytes`` (see :func:`pcm_bytes`) once it is whole PCM16 frames at a sensible rate
    (``sample_rate`` Hz in [8000, 192000]) and channel count (``num_channels`` in [1, 8]).

    Raises:
        ValueError: any of those does not hold (the message names which).
    """
    data = pcm_bytes(pcm)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 192000:
        raise ValueError(f"sample_rate must be an int in [8000, 192000] Hz, got {sample_rate!r}")
    if isinstance(num_channels, bool) or not isinstance(num_channels, int) or not 1 <= num_channels <= 8:
        raise ValueError(f"num_channels must be an int in [1, 8], got {num_channels!r}")
    if len(data) % (BYTES_PER_SAMPLE * num_channels):
        raise ValueError(f"pcm length {len(data)} bytes is not a whole number of {num_channels}-channel "
                         "PCM16 frames")
    return data


@dataclass(frozen=True, kw_only=True)
class AudioFrame:
    """A piece of the character's voice (delivered on ``client.events.on_audio``).

    Attributes:
        data: PCM16 little-endian samples, interleaved by channel.
        sample_rate: Hz.
        num_channels: Channels in ``data``.
        samples_per_channel: Samples per channel in ``data``.
        timestamp: ``time.monotonic()`` when the frame reached the SDK (seconds).
        turn_id: Which reply (turn) it belongs to: the same number on every frame of one turn
            (from its ``bot-started-speaking`` to its ``bot-stopped-speaking``, plus a short tail
            on LiveKit), increasing from turn to turn; None for sound outside any turn (digital
            silence outside a turn is not delivered). A host that wants to drop stale audio
            (after ``on_audio_interrupted``, say) discards frames of older turns.
        received_at: Aware UTC datetime of arrival.
    """

    data: bytes
    sample_rate: int
    num_channels: int
    samples_per_channel: int
    timestamp: float
    turn_id: int | None = None
    received_at: datetime = field(default_factory=_utcnow, compare=False)

    @property
    def duration(self) -> float:
        """Seconds of audio in this frame."""
        return self.samples_per_channel / self.sample_rate

    def __repr__(self) -> str:
        # Sizes and duration, never the samples: a frame's bytes are no use in a log or a terminal.
        turn = "" if self.turn_id is None else f", turn {self.turn_id}"
        return (f"AudioFrame({self.duration * 1000:.1f} ms, {self.sample_rate} Hz, {self.num_channels} ch, "
                f"{len(self.data)} bytes{turn})")


@dataclass(frozen=True)
class AudioClip:
    """A whole piece of audio: PCM16 ``pcm`` at ``sample_rate`` Hz with ``num_channels`` channels.

    ``pcm`` may be any C-contiguous buffer; it is stored as ``bytes`` (``ValueError`` otherwise,
    see :func:`pcm_bytes`)."""

    pcm: bytes
    sample_rate: int
    num_channels: int = 1

    def __post_init__(self) -> None:
        # Any C-contiguous buffer is kept as bytes, so len() and duration count bytes, not items.
        object.__setattr__(self, "pcm", pcm_bytes(self.pcm))

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return len(self.pcm) / (BYTES_PER_SAMPLE * self.num_channels * self.sample_rate)

    def __repr__(self) -> str:
        return f"AudioClip({self.duration:.2f} s, {self.sample_rate} Hz, {self.num_channels} ch, {len(self.pcm)} bytes)"

    def write_wav(self, path: str | PathLike[str]) -> None:
        """Write a playable WAV file (PCM16) to ``path``."""
        with wave.open(str(path), "wb") as out:
            out.setnchannels(self.num_channels)
            out.setsampwidth(BYTES_PER_SAMPLE)
            out.setframerate(self.sample_rate)
            out.writeframes(self.pcm)

    @classmethod
    def read_wav(cls, path: str | PathLike[str]) -> AudioClip:
        """Read a PCM16 WAV file.

        Raises:
            ValueError: the file is not 16-bit PCM.
        """
        with wave.open(str(path), "rb") as src:
            if src.getsampwidth() != BYTES_PER_SAMPLE or src.getcomptype() != "NONE":
                raise ValueError(f"{path}: only 16-bit PCM WAV files are supported")
            return cls(src.readframes(src.getnframes()), src.getframerate(), src.getnchannels())

    @classmethod
    def from_frames(cls, frames: list[AudioFrame]) -> AudioClip | None:
        """Join frames (same format) into one clip; None when there are none."""
        if not frames:
            return None
        first = frames[0]
        return cls(b"".join(f.data for f in frames), first.sample_rate, first.num_channels)
