"""Optional sound devices: a :class:`Speaker` that plays the character's voice and a
:class:`Microphone` that streams the user's voice (extra ``devices``: ``pip install
'convai-sync[devices]'``, which installs ``sounddevice``, the PortAudio binding).

Never imported by the rest of the SDK. ``sounddevice`` itself is imported only when a device
opens its default stream; pass ``stream_factory`` to use any other stream object with
``start()``/``stop()``/``close()`` (the tests pass a fake one). Both classes speak PCM16.

Threads: PortAudio calls the stream callbacks on its own audio thread; they only copy bytes under
a short lock and never block. ``Speaker.play`` may be called from any thread (it is quick and
never blocks, so an IMMEDIATE ``on_audio`` subscription suits it). A :class:`Microphone` owns one
thread, ``convai-mic-<n>``, that hands captured blocks to its sink (e.g. ``client.send_audio``) so
a slow sink never stalls the audio thread; :meth:`Microphone.stop` joins it within its timeout.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

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
        import sounddevice  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise ImportError(f"sound devices need the sounddevice package: {EXTRA_HINT}") from exc
    except OSError as exc:  # sounddevice loads the PortAudio library when it is imported
        raise ImportError(f"sounddevice could not load the PortAudio library: {exc}") from exc
    return sounddevice


def default_output(device: Any = None) -> StreamFactory:
    """A factory of ``sounddevice.RawOutputStream`` (int16) on ``device`` (None: the default)."""
    def make(sample_rate: int, num_channels: int, block_frames: int, callback: Callable[..., None]) -> Stream:
        sd = _sounddevice()
        stream: Stream = sd.RawOutputStream(samplerate=sample_rate, channels=num_channels, dtype="int16",
                                            blocksize=block_frames, device=device, callback=callback)
        return stream
    return make


def default_input(device: Any = None) -> StreamFactory:
    """A factory of ``sounddevice.RawInputStream`` (int16) on ``device`` (None: the default)."""
    def make(sample_rate: int, num_channels: int, block_frames: int, callback: Callable[..., None]) -> Stream:
        sd = _sounddevice()
        stream: Stream = sd.RawInputStream(samplerate=sample_rate, channels=num_channels, dtype="int16",
                                           blocksize=block_frames, device=device, callback=callback)
        return stream
    return make


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
        stream_factory: Builds the output stream (default: ``sounddevice.RawOutputStream``).
    """

    def __init__(self, *, prebuffer: float = 0.06, max_buffer: float = 5.0, block_seconds: float = 0.02,
                 stream_factory: StreamFactory | None = None) -> None:
        if not 0 <= prebuffer <= max_buffer or max_buffer <= 0 or not 0 < block_seconds <= 1:
            raise ValueError("need 0 <= prebuffer <= max_buffer, max_buffer > 0 and 0 < block_seconds <= 1")
        self._prebuffer = prebuffer
        self._max_buffer = max_buffer
        self._block_seconds = block_seconds
        self._factory = stream_factory or default_output()
        self._lock = threading.Lock()
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
        check_format(frame.data, frame.sample_rate, frame.num_channels)
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
            self._fed += len(frame.data)
            self._buffer += frame.data
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

    def _open(self, rate: int, channels: int) -> None:
        block = max(1, round(rate * self._block_seconds))
        stream = self._factory(rate, channels, block, self._fill)
        with self._lock:
            if self._closed or self._format != (rate, channels) or self._stream is not None:
                stale = stream
            else:
                self._stream, stale = stream, None
        if stale is not None:
            stale.close()
            return
        stream.start()

    def _fill(self, outdata: Any, frames: int, time: Any, status: Any) -> None:
        """The output callback (PortAudio's thread): the next ``frames`` frames, or silence."""
        with self._lock:
            rate, channels = self._format or (1, 1)
            size = frames * BYTES_PER_SAMPLE * channels
            buffer = self._buffer
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
        outdata[:size] = chunk

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
        with self._lock:
            self._closed = True
            stream, self._stream = self._stream, None
            self._buffer.clear()
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


Sink = Callable[[bytes, int, int], None]


class Microphone:
    """Captures the user's voice and hands it to a sink in blocks, e.g. ``client.send_audio``.

    The input callback only queues each block (bounded to ``max_queue`` seconds: when the sink
    falls behind, the oldest blocks are dropped, counted); the thread ``convai-mic-<n>`` calls
    ``sink(pcm, sample_rate, num_channels)`` for each. An exception from the sink (say
    ``InvalidStateError`` while the session reconnects) is logged and counted; capture goes on.

    Args:
        sample_rate: Hz (default 16000, what speech-to-text expects).
        num_channels: Default 1.
        block_seconds: Capture block (default 0.02: one 20 ms frame per block).
        max_queue: Seconds of blocks kept while the sink is slow (default 2).
        stream_factory: Builds the input stream (default: ``sounddevice.RawInputStream``).
    """

    def __init__(self, sample_rate: int = 16000, num_channels: int = 1, *, block_seconds: float = 0.02,
                 max_queue: float = 2.0, stream_factory: StreamFactory | None = None) -> None:
        check_format(b"", sample_rate, num_channels)
        if not 0 < block_seconds <= 1 or max_queue < block_seconds:
            raise ValueError("need 0 < block_seconds <= 1 and max_queue >= block_seconds")
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        self._block = max(1, round(sample_rate * block_seconds))
        self._max_blocks = max(1, round(max_queue / block_seconds))
        self._factory = stream_factory or default_input()
        self._cond = threading.Condition()
        self._blocks: collections.deque[bytes] = collections.deque()
        self._stream: Stream | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self.stats = {"blocks": 0, "dropped_blocks": 0, "sink_errors": 0}

    @property
    def running(self) -> bool:
        return self._running

    def start(self, sink: Sink) -> None:
        """Open the input stream and start feeding ``sink`` (idempotent while running)."""
        with self._cond:
            if self._running:
                return
            self._running = True
            self._blocks.clear()
        try:
            stream = self._factory(self.sample_rate, self.num_channels, self._block, self._captured)
            thread = threading.Thread(target=self._forward, args=(sink,), name=f"convai-mic-{next(_mic_ids)}",
                                      daemon=True)
            with self._cond:
                self._stream, self._thread = stream, thread
            thread.start()
            stream.start()
        except BaseException:
            self.stop()
            raise

    def stream_to(self, client: Any, timeout: float = 1.0) -> None:
        """Start, sending every block with ``client.send_audio(..., timeout=timeout)``."""
        def send(pcm: bytes, rate: int, channels: int) -> None:
            client.send_audio(pcm, rate, channels, timeout=timeout)
        self.start(send)

    def _captured(self, indata: Any, frames: int, time: Any, status: Any) -> None:
        """The input callback (PortAudio's thread): queue the block, never block."""
        block = bytes(indata)
        with self._cond:
            if not self._running:
                return
            if len(self._blocks) >= self._max_blocks:
                self._blocks.popleft()
                self.stats["dropped_blocks"] += 1
            self._blocks.append(block)
            self.stats["blocks"] += 1
            self._cond.notify()

    def _forward(self, sink: Sink) -> None:
        while True:
            with self._cond:
                while self._running and not self._blocks:
                    self._cond.wait()
                if not self._running:
                    return
                block = self._blocks.popleft()
            try:
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
            self._blocks.clear()
            self._cond.notify_all()
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
