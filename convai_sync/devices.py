"""Optional sound devices: a :class:`Speaker` that plays the character's voice and a
:class:`Microphone` that streams the user's voice (extra ``devices``: ``pip install
'convai-sync[devices]'``, which installs ``sounddevice``, the PortAudio binding).

Never imported by the rest of the SDK. ``sounddevice`` itself is imported only when a device
opens its default stream or :func:`list_devices` runs; pass ``stream_factory`` to use any other
stream object with ``start()``/``stop()``/``close()`` (the tests pass a fake one). Both classes
speak PCM16.

Devices are chosen by index or name as ``sounddevice`` lists them (:func:`list_devices`;
https://python-sounddevice.readthedocs.io/en/latest/api/checking-hardware.html), at construction
(``device=``) or mid-session (``set_device``), which swaps the stream and keeps everything else:
the buffer, the sink, the session. A missing, ambiguous or busy device raises
:class:`DeviceError` naming it.

Echo cancellation: while a :class:`Microphone` runs and a :class:`Speaker` is open, by default the
microphone's audio passes through an :class:`~convai_sync.echo.EchoCanceller` (WebRTC's echo
cancellation, noise suppression and gain control; extra ``livekit``) fed with what the speakers
play, so the character does not hear (and interrupt) itself. It sits before the sink, so it works
the same on every transport. Without ``livekit`` installed the default logs a notice and sends
the audio unprocessed; ``echo_cancellation=True`` raises ``ImportError`` naming the extra.

Threads: PortAudio calls the stream callbacks on its own audio thread; they only copy bytes under
a short lock and never block. ``Speaker.play`` may be called from any thread (it is quick and
never blocks, so an IMMEDIATE ``on_audio`` subscription suits it). A :class:`Microphone` owns one
thread, ``convai-mic-<n>``, that hands captured blocks to its sink (e.g. ``client.send_audio``) so
a slow sink never stalls the audio thread; :meth:`Microphone.stop` joins it within its timeout.
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from . import echo
from .audio import BYTES_PER_SAMPLE, AudioFrame, check_format
from .events import AudioInterrupted
from .hub import Subscription

log = logging.getLogger("convai_sync")
_mic_ids = itertools.count(1)

EXTRA_HINT = "pip install 'convai-sync[devices]'"


class Stream(Protocol):
    """What a device needs of a stream (``sounddevice.RawOutputStream``/``RawInputStream``)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


#: ``factory(sample_rate, num_channels, block_frames, callback) -> Stream``. The output callback is
#: ``callback(outdata, frames, time, status)`` (fill ``outdata`` with ``frames`` PCM16 frames); the
#: input callback is ``callback(indata, frames, time, status)`` (``indata`` holds them).
StreamFactory = Callable[[int, int, int, Callable[..., None]], Stream]


def _sounddevice() -> Any:
    try:
        import sounddevice  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError as exc:
        raise ImportError(f"sound devices need the sounddevice package: {EXTRA_HINT}") from exc
    except OSError as exc:  # sounddevice loads the PortAudio library when it is imported
        raise ImportError(f"sounddevice could not load the PortAudio library: {exc}") from exc
    return sounddevice


Device = int | str | None
Kind = Literal["input", "output"]


class DeviceError(OSError):
    """A sound device that is missing, ambiguous or could not be opened (busy, or refusing the
    format). ``device`` is what was asked for (index, name or None for the default)."""

    def __init__(self, message: str, device: Device) -> None:
        super().__init__(message)
        self.device = device


@dataclass(frozen=True)
class DeviceInfo:
    """One sound device as ``sounddevice.query_devices()`` describes it.

    Attributes:
        index: PortAudio's device index (what ``device=`` takes, as does the name).
        name: The device's name.
        host_api: The host API's name (ALSA, Core Audio, WASAPI, ...).
        max_input_channels / max_output_channels: 0 for an output-only / input-only device.
        default_sample_rate: Hz.
        is_default_input / is_default_output: The system's default devices.
    """

    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate: float
    is_default_input: bool = False
    is_default_output: bool = False

    def has(self, kind: Kind) -> bool:
        return (self.max_input_channels if kind == "input" else self.max_output_channels) > 0


def list_devices(kind: Kind | None = None) -> list[DeviceInfo]:
    """The sound devices ``sounddevice`` (PortAudio) sees, in index order; ``kind`` keeps only input
    or output devices. Raises ``ImportError`` without ``sounddevice`` (naming the extra)."""
    sd = _sounddevice()
    defaults = list(sd.default.device)
    apis = [str(api["name"]) for api in sd.query_hostapis()]
    found = []
    for index, raw in enumerate(sd.query_devices()):
        api = int(raw.get("hostapi", -1))
        info = DeviceInfo(index=index, name=str(raw["name"]), host_api=apis[api] if 0 <= api < len(apis) else "",
                          max_input_channels=int(raw["max_input_channels"]),
                          max_output_channels=int(raw["max_output_channels"]),
                          default_sample_rate=float(raw["default_samplerate"]),
                          is_default_input=index == defaults[0], is_default_output=index == defaults[1])
        if kind is None or info.has(kind):
            found.append(info)
    return found


def find_device(device: Device, kind: Kind) -> DeviceInfo:
    """The ``kind`` device ``device`` names: an index, a name (exact, else a unique case-insensitive
    part of one, as ``sounddevice`` matches names) or None for the system default.

    Raises:
        DeviceError: No such device, or a name several devices match (the message names them).
        ImportError: ``sounddevice`` is not installed.
    """
    if isinstance(device, bool) or not isinstance(device, (int, str, type(None))):
        raise DeviceError(f"a device is an index, a name or None, got {device!r}", device)
    devices = list_devices(kind)
    if device is None:
        for info in devices:
            if info.is_default_input if kind == "input" else info.is_default_output:
                return info
        raise DeviceError(f"there is no default {kind} device (see list_devices())", device)
    if isinstance(device, int):
        for info in devices:
            if info.index == device:
                return info
        raise DeviceError(f"there is no {kind} device with index {device} (see list_devices())", device)
    exact = [info for info in devices if info.name == device]
    matches = exact or [info for info in devices if device.lower() in info.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DeviceError(f"there is no {kind} device named {device!r} (see list_devices())", device)
    names = ", ".join(f"{info.index}: {info.name!r}" for info in matches)
    raise DeviceError(f"{device!r} matches several {kind} devices ({names}); give its index", device)


def _open(kind: Kind, device: Device, sample_rate: int, num_channels: int, block_frames: int,
          callback: Callable[..., None]) -> Stream:
    sd = _sounddevice()
    info = find_device(device, kind)
    cls = sd.RawInputStream if kind == "input" else sd.RawOutputStream
    try:
        stream: Stream = cls(samplerate=sample_rate, channels=num_channels, dtype="int16",
                             blocksize=block_frames, device=info.index, callback=callback)
    except (sd.PortAudioError, ValueError) as exc:  # busy, or refusing the format
        raise DeviceError(f"{kind} device {info.name!r} (index {info.index}) could not be opened at "
                          f"{sample_rate} Hz, {num_channels} channel(s): {exc}", device) from exc
    return stream


def default_output(device: Device = None) -> StreamFactory:
    """A factory of ``sounddevice.RawOutputStream`` (int16) on ``device`` (index, name or None for
    the default; see :func:`find_device`). Opening raises :class:`DeviceError` naming the device."""
    return functools.partial(_open, "output", device)


def default_input(device: Device = None) -> StreamFactory:
    """A factory of ``sounddevice.RawInputStream`` (int16) on ``device`` (index, name or None for
    the default; see :func:`find_device`). Opening raises :class:`DeviceError` naming the device."""
    return functools.partial(_open, "input", device)


def _latency(stream: Stream | None, fallback: float) -> float:
    """The latency PortAudio reports for ``stream`` (seconds), or ``fallback`` when it says none."""
    value = getattr(stream, "latency", None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else fallback


class Speaker:
    """Plays the character's voice through a bounded jitter buffer.

    ``speaker.play`` is an ``on_audio`` handler; :meth:`attach` subscribes it (IMMEDIATE) and
    :meth:`interrupt` to ``on_audio_interrupted`` in one call. The output stream opens at the
    first frame's format and reopens if the format changes. Playback starts once ``prebuffer``
    seconds are buffered (absorbing network jitter) and rebuffers after running dry (an
    underrun plays silence, counted). Beyond ``max_buffer`` seconds the oldest buffered audio is
    dropped (counted). On an interruption the buffer is emptied and later frames of the
    interrupted turn (``AudioFrame.turn_id``) are dropped. ``stats["underruns"]`` counts the
    times the buffer ran dry in the middle of a block (the end of a reply, or jitter).

    Args:
        prebuffer: Seconds buffered before playback (re)starts (default 0.06).
        max_buffer: Seconds the buffer holds at most (default 5).
        block_seconds: The output stream's block (default 0.02).
        device: The output device: an index, a name (see :func:`list_devices`) or None for the
            system default. :meth:`set_device` changes it mid-session.
        stream_factory: Builds the output stream (default: ``sounddevice.RawOutputStream`` on
            ``device``).

    While it is open (from construction to :meth:`close`), a running :class:`Microphone` hears
    what it plays as the echo to cancel (see the module docstring).
    """

    def __init__(self, *, prebuffer: float = 0.06, max_buffer: float = 5.0, block_seconds: float = 0.02,
                 device: Device = None, stream_factory: StreamFactory | None = None) -> None:
        if not 0 <= prebuffer <= max_buffer or max_buffer <= 0 or not 0 < block_seconds <= 1:
            raise ValueError("need 0 <= prebuffer <= max_buffer, max_buffer > 0 and 0 < block_seconds <= 1")
        self._prebuffer = prebuffer
        self._max_buffer = max_buffer
        self._block_seconds = block_seconds
        self._device = device
        self._factory = stream_factory
        self._lock = threading.Lock()
        self._references: list[FarEnd] = []  # echo cancellers fed with what is played
        self._buffer = bytearray()
        self._format: tuple[int, int] | None = None
        self._stream: Stream | None = None
        self._playing = False
        self._waited = 0.0  # seconds the buffered audio has waited for the prebuffer
        self._stale_through = 0  # frames of turns up to this one are dropped
        self._closed = False
        # The playback clock: bytes ever buffered and ever played (or dropped) of the stream, and
        # where in it each turn began, so a turn's position is what the device has taken of it.
        self._fed = 0
        self._consumed = 0
        self._feed_turn: int | None = None
        self._turn_starts: collections.deque[tuple[int, int | None]] = collections.deque(maxlen=32)
        self.stats = {"frames": 0, "underruns": 0, "dropped_overflow_bytes": 0, "dropped_stale": 0,
                      "interruptions": 0}
        _registry.speaker_opened(self)

    @property
    def device(self) -> Device:
        """The output device asked for (index, name or None for the default)."""
        return self._device

    @property
    def output_latency(self) -> float:
        """Seconds from a block leaving the buffer to its sound: PortAudio's reported latency, else
        one block."""
        with self._lock:
            return _latency(self._stream, self._block_seconds)

    def set_device(self, device: Device) -> None:
        """Play on ``device`` from now on (index, name or None for the default), keeping the
        buffered audio: the new stream opens and starts before the old one stops, so nothing is
        lost. Raises :class:`DeviceError` (naming it) when it cannot be opened; the old device
        then keeps playing. Any thread."""
        with self._lock:
            fmt, running = self._format, self._stream is not None and not self._closed
        if not running or fmt is None:
            if self._factory is None:
                find_device(device, "output")  # refuse a missing device now, not at the first frame
            self._device = device
            return
        rate, channels = fmt
        stream = _started(self._make_stream(device, rate, channels), device, "output")
        with self._lock:
            current = not self._closed and self._format == fmt  # else closed or reopened meanwhile
            if current:
                old, self._stream, self._device = self._stream, stream, device
        if not current:
            _stop(stream)
        elif old is not None:
            _stop(old)
        log.info("speaker now plays on %r", device)

    def add_echo_reference(self, far_end: FarEnd) -> None:
        """Hand every block played to ``far_end(pcm, sample_rate, num_channels)`` too (on
        PortAudio's thread: it must be quick and never block, as
        :meth:`~convai_sync.echo.EchoCanceller.far_end` is)."""
        with self._lock:
            self._references = [*self._references, far_end]

    def remove_echo_reference(self, far_end: FarEnd) -> None:
        with self._lock:
            self._references = [r for r in self._references if r != far_end]

    @property
    def buffered_seconds(self) -> float:
        """Seconds of audio waiting to be played."""
        with self._lock:
            if self._format is None:
                return 0.0
            rate, channels = self._format
            return len(self._buffer) / (BYTES_PER_SAMPLE * channels * rate)

    def playback_position(self, turn_id: int | None = None) -> float | None:
        """Seconds of turn ``turn_id``'s voice (``AudioFrame.turn_id``) the output stream has taken
        so far: the clock a lip-sync timeline follows (``LipSync.frame_for(speaker)``).

        Args:
            turn_id: The turn; None means the turn playing now.

        Returns:
            Seconds (``float`` >= 0; the whole turn's length once a later turn plays), or None when
            that turn's audio has not started playing or is unknown. The device's own output latency
            (a few milliseconds to tens of them) is not included.
        """
        with self._lock:
            if self._format is None:
                return None
            rate, channels = self._format
            per_second = rate * channels * BYTES_PER_SAMPLE
            starts = list(self._turn_starts)
            consumed = self._consumed
        for i, (start, turn) in enumerate(starts):
            following = starts[i + 1][0] if i + 1 < len(starts) else None
            if turn_id is None:
                if start <= consumed and (following is None or consumed < following):
                    return (consumed - start) / per_second
            elif turn == turn_id:
                if consumed < start:
                    return None
                end = consumed if following is None else min(consumed, following)
                return (end - start) / per_second
        return None

    def play(self, frame: AudioFrame) -> None:
        """Queue ``frame`` for playback (never blocks). Raises ``ValueError`` for a bad format."""
        data = check_format(frame.data, frame.sample_rate, frame.num_channels)
        if self._closed:
            return
        reopen = None
        with self._lock:
            if frame.turn_id is not None and frame.turn_id <= self._stale_through:
                self.stats["dropped_stale"] += 1
                return
            fmt = (frame.sample_rate, frame.num_channels)
            if fmt != self._format:
                reopen, self._stream = self._stream, None
                self._format = fmt
                self._buffer.clear()
                self._playing, self._waited = False, 0.0
                self._consumed = self._fed
                self._turn_starts.clear()
                self._feed_turn = None
            if frame.turn_id != self._feed_turn or not self._turn_starts:
                self._turn_starts.append((self._fed, frame.turn_id))
                self._feed_turn = frame.turn_id
            self._fed += len(data)
            self._buffer += data
            self.stats["frames"] += 1
            limit = int(self._max_buffer * frame.sample_rate) * BYTES_PER_SAMPLE * frame.num_channels
            excess = len(self._buffer) - limit
            if excess > 0:
                excess += -excess % (BYTES_PER_SAMPLE * frame.num_channels)
                del self._buffer[:excess]
                self._consumed += excess
                self.stats["dropped_overflow_bytes"] += excess
            start = self._stream is None
        if reopen is not None:
            _stop(reopen)
        if start:
            self._open(frame.sample_rate, frame.num_channels)

    def _make_stream(self, device: Device, rate: int, channels: int) -> Stream:
        block = max(1, round(rate * self._block_seconds))
        factory = self._factory or default_output(device)
        holder: list[Stream] = []
        stream = factory(rate, channels, block, functools.partial(self._fill, holder))
        holder.append(stream)
        return stream

    def _open(self, rate: int, channels: int) -> None:
        stream = self._make_stream(self._device, rate, channels)
        with self._lock:
            if self._closed or self._format != (rate, channels) or self._stream is not None:
                stale = stream
            else:
                self._stream, stale = stream, None
        if stale is not None:
            stale.close()
            return
        stream.start()

    def _fill(self, stream: list[Stream], outdata: Any, frames: int, time: Any, status: Any) -> None:
        """The output callback (PortAudio's thread): the next ``frames`` frames, or silence (also
        for a stream being replaced, so the old and new device never share the buffer)."""
        with self._lock:
            rate, channels = self._format or (1, 1)
            size = frames * BYTES_PER_SAMPLE * channels
            buffer = self._buffer
            if not stream or stream[0] is not self._stream:
                outdata[:len(outdata)] = bytes(len(outdata))
                return
            if not self._playing and buffer:
                # Start once ``prebuffer`` is buffered, or once the first audio has waited that
                # long (a reply shorter than the prebuffer still plays).
                self._waited += frames / rate
                self._playing = len(buffer) >= int(self._prebuffer * rate) * BYTES_PER_SAMPLE * channels \
                    or self._waited >= self._prebuffer
            if self._playing:
                chunk = bytes(buffer[:size])
                del buffer[:size]
                self._consumed += len(chunk)
                if not buffer:  # ran dry (the end of a reply, or jitter): rebuffer before playing again
                    self._playing, self._waited = False, 0.0
                    if len(chunk) < size:
                        self.stats["underruns"] += 1
                chunk = chunk.ljust(size, b"\0")
            else:
                chunk = bytes(size)
            references = self._references
        outdata[:size] = chunk
        for far_end in references:
            far_end(chunk, rate, channels)

    def interrupt(self, event: AudioInterrupted | int | None = None) -> None:
        """Stop at once: empty the buffer and drop the interrupted turn's later frames.

        Args:
            event: An :class:`AudioInterrupted` (so this is an ``on_audio_interrupted`` handler),
                a turn id, or None (only empty the buffer).
        """
        turn_id = event.turn_id if isinstance(event, AudioInterrupted) else event
        with self._lock:
            self._consumed += len(self._buffer)
            self._buffer.clear()
            self._playing, self._waited = False, 0.0
            if turn_id is not None:
                self._stale_through = max(self._stale_through, turn_id)
            self.stats["interruptions"] += 1

    def attach(self, client: Any) -> list[Subscription[Any]]:
        """Play ``client``'s voice: subscribe :meth:`play` to ``on_audio`` and :meth:`interrupt` to
        ``on_audio_interrupted`` (both IMMEDIATE: quick and non-blocking). Returns the
        subscriptions."""
        from .delivery import EventDeliveryPolicy

        immediate = EventDeliveryPolicy.IMMEDIATE
        return [client.events.on_audio.subscribe(self.play, immediate),
                client.events.on_audio_interrupted.subscribe(self.interrupt, immediate)]

    def close(self) -> None:
        """Stop and close the output stream (idempotent)."""
        _registry.speaker_closed(self)
        with self._lock:
            self._closed = True
            stream, self._stream = self._stream, None
            self._buffer.clear()
            self._references = []
        if stream is not None:
            _stop(stream)

    def __enter__(self) -> Speaker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(stream: Stream) -> None:
    try:
        stream.stop()
    finally:
        stream.close()


def _started(stream: Stream, device: Device, kind: Kind) -> Stream:
    """``stream``, started (it is heard or fed only once it becomes its device's current stream)."""
    try:
        stream.start()
    except Exception as exc:  # PortAudio's error type lives in the optional package: name the device
        stream.close()
        raise DeviceError(f"{kind} device {device!r} could not be started: {exc}", device) from exc
    return stream


Sink = Callable[[bytes, int, int], None]
#: ``far_end(pcm, sample_rate, num_channels)``: what a :class:`Speaker` plays, for echo cancellation.
FarEnd = Callable[[bytes, int, int], None]


class Microphone:
    """Captures the user's voice and hands it to a sink in blocks, e.g. ``client.send_audio``.

    The input callback only queues each block (bounded to ``max_queue`` seconds: when the sink
    falls behind, the oldest blocks are dropped, counted); the thread ``convai-mic-<n>`` calls
    ``sink(pcm, sample_rate, num_channels)`` for each. An exception from the sink (say
    ``InvalidStateError`` while the session reconnects) is logged and counted; capture goes on.

    Echo cancellation (see the module docstring) runs on that thread, before the sink, so the
    sink gets processed audio in whole 10 ms frames (a block of 25 ms gives 20 ms, then the rest).

    Args:
        sample_rate: Hz (default 16000, what speech-to-text expects); a multiple of 100 Hz when
            the audio is processed.
        num_channels: Default 1.
        block_seconds: Capture block (default 0.02: one 20 ms frame per block).
        max_queue: Seconds of blocks kept while the sink is slow (default 2).
        device: The input device: an index, a name (see :func:`list_devices`) or None for the
            system default. :meth:`set_device` changes it mid-session.
        stream_factory: Builds the input stream (default: ``sounddevice.RawInputStream`` on
            ``device``).
        echo_cancellation: None (default): process the audio (echo cancellation, noise
            suppression, gain control) from the moment a :class:`Speaker` is open while this
            runs, if ``livekit`` is installed (else a logged notice, and the audio goes out
            unprocessed). True: always process (the open speakers are the echo reference);
            ``ImportError`` naming the ``livekit`` extra without it. False: never. An
            :class:`~convai_sync.echo.EchoCanceller`: use that one (its own settings and delay).

    Raises:
        ValueError: A bad format or size; a sample rate WebRTC cannot frame (not a multiple of
            100 Hz) with ``echo_cancellation`` True or given.
        ImportError: ``echo_cancellation=True`` without ``livekit``.
    """

    def __init__(self, sample_rate: int = 16000, num_channels: int = 1, *, block_seconds: float = 0.02,
                 max_queue: float = 2.0, device: Device = None, stream_factory: StreamFactory | None = None,
                 echo_cancellation: bool | echo.EchoCanceller | None = None) -> None:
        check_format(b"", sample_rate, num_channels)
        if not 0 < block_seconds <= 1 or max_queue < block_seconds:
            raise ValueError("need 0 < block_seconds <= 1 and max_queue >= block_seconds")
        if echo_cancellation is not None and not isinstance(echo_cancellation, (bool, echo.EchoCanceller)):
            raise ValueError(f"echo_cancellation must be None, a bool or an EchoCanceller, got {echo_cancellation!r}")
        if echo_cancellation not in (None, False) and sample_rate % 100:
            raise ValueError(f"echo cancellation needs a sample rate that is a multiple of 100 Hz, got {sample_rate}")
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        self._block_seconds = block_seconds
        self._block = max(1, round(sample_rate * block_seconds))
        self._max_blocks = max(1, round(max_queue / block_seconds))
        self._device = device
        self._factory = stream_factory
        self._echo_mode = echo_cancellation
        self._canceller: echo.EchoCanceller | None = None
        if isinstance(echo_cancellation, echo.EchoCanceller):
            self._canceller = echo_cancellation
        elif echo_cancellation is True:
            self._canceller = self._new_canceller()  # ImportError here, naming the extra
        self._speakers: list[Speaker] = []  # linked as the echo reference while running
        self._noticed = False  # the notice that echo cancellation is unavailable was logged
        self._cond = threading.Condition()
        # Each block with the echo canceller's mark of the far end played when it was captured.
        self._blocks: collections.deque[tuple[bytes, int | None]] = collections.deque()
        self._stream: Stream | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self.stats = {"blocks": 0, "dropped_blocks": 0, "sink_errors": 0}

    @property
    def running(self) -> bool:
        return self._running

    @property
    def device(self) -> Device:
        """The input device asked for (index, name or None for the default)."""
        return self._device

    @property
    def echo_canceller(self) -> echo.EchoCanceller | None:
        """The processor the audio goes through, or None while it goes out unprocessed."""
        return self._canceller

    def _new_canceller(self) -> echo.EchoCanceller:
        return echo.EchoCanceller(delay_source=self._echo_delay)

    def _echo_delay(self) -> float:
        """The echo path's delay hint: the speakers' output latency plus this input's latency."""
        with self._cond:
            stream, speakers = self._stream, list(self._speakers)
        output = max((s.output_latency for s in speakers), default=0.0)
        return output + _latency(stream, self._block_seconds)

    def _link(self, speaker: Speaker) -> None:
        """Start hearing ``speaker`` as the echo to cancel (the registry calls this; any thread)."""
        canceller = self._canceller or self._default_canceller()
        if canceller is None:
            return
        with self._cond:
            if not self._running or speaker in self._speakers:
                return
            self._speakers.append(speaker)
        speaker.add_echo_reference(canceller.far_end)

    def _default_canceller(self) -> echo.EchoCanceller | None:
        """The processor ``echo_cancellation=None`` starts once a speaker is open, or None when it
        cannot (a notice is logged once per microphone)."""
        if self._echo_mode is not None or self.sample_rate % 100:
            return None
        # Imported outside the lock the audio thread takes (the first import of livekit is slow).
        problem = None if echo.available() else f"it needs the livekit package ({echo.EXTRA_HINT})"
        with self._cond:  # two speakers opening at once make one processor
            if self._canceller is not None:
                return self._canceller
            if problem is None:
                try:
                    self._canceller = self._new_canceller()
                except RuntimeError as exc:  # WebRTC's processor refused to start: go on unprocessed
                    problem = f"WebRTC's audio processing did not start: {exc}"
            noticed, self._noticed = self._noticed, self._noticed or problem is not None
        if problem is not None:
            if not noticed:
                log.warning("echo cancellation is off: %s; the microphone may hear the speaker", problem)
            return None
        log.info("microphone: echo cancellation on (a speaker is open)")
        return self._canceller

    def _unlink(self, speaker: Speaker) -> None:
        with self._cond:
            if speaker not in self._speakers:
                return
            self._speakers.remove(speaker)
        if self._canceller is not None:
            speaker.remove_echo_reference(self._canceller.far_end)

    def set_device(self, device: Device) -> None:
        """Capture from ``device`` from now on (index, name or None for the default), keeping the
        sink, its thread and the session: the new stream opens and starts before the old one
        stops. Raises :class:`DeviceError` (naming it) when it cannot be opened; the old device
        then keeps capturing. Any thread."""
        with self._cond:
            running = self._running
        if not running:
            if self._factory is None:
                find_device(device, "input")  # refuse a missing device now, not at start()
            self._device = device
            return
        stream = _started(self._make_stream(device), device, "input")
        with self._cond:
            current = self._running  # else stopped meanwhile
            if current:
                old, self._stream, self._device = self._stream, stream, device
        if not current:
            _stop(stream)
        elif old is not None:
            _stop(old)
        log.info("microphone now captures from %r", device)

    def _make_stream(self, device: Device) -> Stream:
        factory = self._factory or default_input(device)
        holder: list[Stream] = []
        stream = factory(self.sample_rate, self.num_channels, self._block, functools.partial(self._captured, holder))
        holder.append(stream)
        return stream

    def start(self, sink: Sink) -> None:
        """Open the input stream and start feeding ``sink`` (idempotent while running)."""
        with self._cond:
            if self._running:
                return
            self._running = True
            self._blocks.clear()
        try:
            stream = self._make_stream(self._device)
            thread = threading.Thread(target=self._forward, args=(sink,), name=f"convai-mic-{next(_mic_ids)}",
                                      daemon=True)
            with self._cond:
                stopped = not self._running  # stop() ran while the stream opened: it could not close this one
                if not stopped:
                    self._stream, self._thread = stream, thread
            if stopped:
                _stop(stream)
                log.info("microphone stopped while it started: its new stream closed unstarted")
                return
            thread.start()
            stream.start()
            _registry.microphone_started(self)
        except BaseException:
            self.stop()
            raise

    def stream_to(self, client: Any, timeout: float = 1.0) -> None:
        """Start, sending every block with ``client.send_audio(..., timeout=timeout)``."""
        def send(pcm: bytes, rate: int, channels: int) -> None:
            client.send_audio(pcm, rate, channels, timeout=timeout)
        self.start(send)

    def _captured(self, stream: list[Stream], indata: Any, frames: int, time: Any, status: Any) -> None:
        """The input callback (PortAudio's thread): queue the block, never block. A stream being
        replaced (:meth:`set_device`) is not heard, so two devices never interleave."""
        block = bytes(indata)
        canceller = self._canceller
        mark = canceller.mark() if canceller is not None else None
        with self._cond:
            if not self._running or not stream or stream[0] is not self._stream:
                return
            if len(self._blocks) >= self._max_blocks:
                self._blocks.popleft()
                self.stats["dropped_blocks"] += 1
            self._blocks.append((block, mark))
            self.stats["blocks"] += 1
            self._cond.notify()

    def _forward(self, sink: Sink) -> None:
        while True:
            with self._cond:
                while self._running and not self._blocks:
                    self._cond.wait()
                if not self._running:
                    return
                block, mark = self._blocks.popleft()
            canceller = self._canceller
            try:
                if canceller is not None:
                    block = canceller.process(block, self.sample_rate, self.num_channels, mark)
                    if not block:
                        continue  # less than 10 ms so far: it goes out with the next block
                sink(block, self.sample_rate, self.num_channels)
            except Exception as exc:  # noqa: BLE001 - the sink is user code or the session: log, go on
                self.stats["sink_errors"] += 1
                if self.stats["sink_errors"] in (1, 10, 100) or self.stats["sink_errors"] % 1000 == 0:
                    log.warning("microphone sink failed (%d so far): %s", self.stats["sink_errors"], exc)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop capturing and join the forwarding thread within ``timeout`` (idempotent)."""
        with self._cond:
            self._running = False
            stream, self._stream = self._stream, None
            thread, self._thread = self._thread, None
            speakers, self._speakers = self._speakers, []
            self._blocks.clear()
            self._cond.notify_all()
        # After _running is False: a start() registering concurrently either sees that and does not
        # register, or registered first and is unregistered here (see _Registry.microphone_started).
        _registry.microphone_stopped(self)
        if self._canceller is not None:
            for speaker in speakers:
                speaker.remove_echo_reference(self._canceller.far_end)
        if stream is not None:
            _stop(stream)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s did not stop within %.1f s (the sink is still running)", thread.name, timeout)

    def __enter__(self) -> Microphone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Registry:
    """The open speakers and running microphones of this process, so that a microphone hears every
    open speaker as its echo reference whichever opened first. Any thread; its lock is never held
    while a device is called."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._speakers: weakref.WeakSet[Speaker] = weakref.WeakSet()
        self._microphones: weakref.WeakSet[Microphone] = weakref.WeakSet()

    def speaker_opened(self, speaker: Speaker) -> None:
        with self._lock:
            self._speakers.add(speaker)
            microphones = list(self._microphones)
        for microphone in microphones:
            microphone._link(speaker)

    def speaker_closed(self, speaker: Speaker) -> None:
        with self._lock:
            self._speakers.discard(speaker)
            microphones = list(self._microphones)
        for microphone in microphones:
            microphone._unlink(speaker)

    def microphone_started(self, microphone: Microphone) -> None:
        """Register a microphone that is running. One that stop() stopped meanwhile is not registered:
        stop() clears ``running`` before it unregisters, so whichever of the two takes this lock second
        leaves a stopped microphone unregistered."""
        with self._lock:
            if not microphone.running:
                return
            self._microphones.add(microphone)
            speakers = list(self._speakers)
        for speaker in speakers:
            microphone._link(speaker)

    def microphone_stopped(self, microphone: Microphone) -> None:
        with self._lock:
            self._microphones.discard(microphone)


_registry = _Registry()
