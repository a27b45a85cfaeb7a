"""Echo cancellation, noise suppression and gain control for the microphone path (WebRTC's audio
processing, as ``livekit.rtc.AudioProcessingModule`` ships it: extra ``livekit``, ``pip install
'convai-sync[livekit]'``, whichever transport the session uses).

An :class:`EchoCanceller` takes two streams of PCM16: the **far end** (what the speaker plays,
through :meth:`EchoCanceller.far_end`) and the **near end** (what the microphone captures, through
:meth:`EchoCanceller.process`), and returns the near end with the far end's echo, steady noise and
level differences removed. WebRTC processes both in 10 ms frames
(https://docs.livekit.io/python/livekit/rtc/apm.html); this module cuts and joins
frames so callers may use any block size.

Threads: :meth:`far_end` and :meth:`mark` may be called from any thread (PortAudio's callbacks):
they only touch a queue under a short lock and never block. :meth:`process` is called from one
thread at a time (a :class:`~convai_sync.devices.Microphone`'s ``convai-mic-<n>`` thread); it alone
calls into WebRTC. The echo canceller needs both streams in the order they happened, whatever
that thread's lag: a capture is marked (:meth:`mark`) when it is captured, and processing it first
feeds the far end played up to that mark, no more.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

from .audio import BYTES_PER_SAMPLE, check_format

log = logging.getLogger("convai_sync")

EXTRA_HINT = "pip install 'convai-sync[livekit]'"
#: WebRTC's audio processing works on frames of exactly this many seconds.
FRAME_SECONDS = 0.01
#: A far-end frame whose peak reaches this (about -50 dBFS) is the speaker playing.
FAR_ACTIVE_PEAK = 100
#: The gain control is held off while the speaker plays and this long after (seconds: the room's
#: echo tail and the echo path's delay).
AGC_HOLD_SECONDS = 0.3
#: Far-end audio kept while nothing processes the near end (the microphone is slow or stopped):
#: older audio is dropped, counted. A second is far beyond any echo path.
MAX_FAR_END_SECONDS = 1.0


def available() -> bool:
    """True when ``livekit`` (which ships WebRTC's audio processing) can be imported."""
    try:
        _rtc()
    except ImportError:
        return False
    return True


def _rtc() -> Any:
    try:
        from livekit import rtc
    except ImportError as exc:
        raise ImportError(f"echo cancellation needs the livekit package (WebRTC's audio processing): "
                          f"{EXTRA_HINT}") from exc
    return rtc


def _peak(pcm: bytes) -> int:
    """The largest absolute PCM16 sample in ``pcm``."""
    samples = memoryview(pcm).cast("h")
    return max(max(samples), -min(samples)) if len(samples) else 0


class _Framer:
    """Cuts a stream of PCM16 blocks into whole 10 ms frames; keeps the remainder for the next block."""

    def __init__(self) -> None:
        self._format: tuple[int, int] | None = None
        self._pending = bytearray()

    def frames(self, pcm: bytes, sample_rate: int, num_channels: int) -> list[bytes]:
        """The whole 10 ms frames (:func:`frame_bytes` each; WebRTC's frame, see the module docstring) that
        ``pcm`` completes, in order, as PCM16 interleaved bytes of ``num_channels`` at ``sample_rate`` Hz;
        ``[]`` when less than a frame is pending. The rest waits for the next block; a block in another
        format drops it and starts over. Raises nothing; one thread at a time (not locked)."""
        if (sample_rate, num_channels) != self._format:
            self._format = (sample_rate, num_channels)
            self._pending.clear()  # a new format starts a new stream
        self._pending += pcm
        size = frame_bytes(sample_rate, num_channels)
        whole = len(self._pending) - len(self._pending) % size
        out = [bytes(self._pending[i:i + size]) for i in range(0, whole, size)]
        del self._pending[:whole]
        return out


def frame_bytes(sample_rate: int, num_channels: int) -> int:
    """Bytes in one 10 ms PCM16 frame (``sample_rate`` must be a multiple of 100 Hz)."""
    return sample_rate // 100 * num_channels * BYTES_PER_SAMPLE


class EchoCanceller:
    """WebRTC's echo cancellation (AEC3), noise suppression, automatic gain control and high-pass
    filter on PCM16 audio.

    Two WebRTC processors run in turn: the first cancels the echo, suppresses noise and filters;
    the second, the gain control, adapts to and levels the user's voice only while the speaker is
    quiet (no far end above about -50 dBFS for :data:`AGC_HOLD_SECONDS`). While the speaker plays
    it is held off (the audio passes at unit gain), because raising the level of what the echo
    canceller leaves of the speaker's sound would make the character hear itself again.

    Args:
        echo_cancellation: Remove the far end's echo (default True).
        noise_suppression: Suppress steady background noise (default True).
        auto_gain_control: Bring the voice to a steady level (default True).
        high_pass_filter: Remove rumble and DC below about 80 Hz (default True).
        delay: The echo path's delay hint in seconds (the time from :meth:`far_end` receiving a
            block to :meth:`process` receiving the capture that holds its echo), or None to use
            ``delay_source`` (then 0 without one). WebRTC's AEC3 also estimates the delay from the
            signals itself; the hint only helps it start.
        delay_source: Called (on the processing thread) for the delay hint in seconds when
            ``delay`` is None; a :class:`~convai_sync.devices.Microphone` passes the output and
            input latencies PortAudio reports.

    Raises:
        ImportError: ``livekit`` is not installed (the message names the ``livekit`` extra).
        ValueError: A negative or non-finite ``delay``.

    ``stats``: ``far_frames``/``near_frames`` processed, ``dropped_far_bytes`` (far end dropped
    beyond :data:`MAX_FAR_END_SECONDS` unprocessed), ``errors`` (frames WebRTC refused; passed on
    unprocessed, logged).
    """

    def __init__(self, *, echo_cancellation: bool = True, noise_suppression: bool = True,
                 auto_gain_control: bool = True, high_pass_filter: bool = True, delay: float | None = None,
                 delay_source: Callable[[], float] | None = None) -> None:
        if delay is not None and not 0 <= delay < 10:
            raise ValueError(f"delay must be in [0, 10) seconds or None, got {delay!r}")
        self._rtc = _rtc()
        self._apm = self._rtc.AudioProcessingModule(
            echo_cancellation=echo_cancellation, noise_suppression=noise_suppression,
            high_pass_filter=high_pass_filter)
        self._agc = self._rtc.AudioProcessingModule(auto_gain_control=True) if auto_gain_control else None
        self._near_count = 0  # near-end frames processed
        self._far_heard_at = -1_000_000  # the near-end frame count when the far end was last heard
        self._echo = echo_cancellation
        self._delay = delay
        self._delay_source = delay_source
        self._lock = threading.Lock()
        self._far: collections.deque[tuple[int, bytes, int, int]] = collections.deque()  # (seq, block, rate, ch)
        self._far_bytes = 0
        self._far_seq = 0
        self._far_framer = _Framer()
        self._near_framer = _Framer()
        self.stats = {"far_frames": 0, "near_frames": 0, "dropped_far_bytes": 0, "errors": 0}

    def far_end(self, pcm: bytes, sample_rate: int, num_channels: int) -> None:
        """Queue a block of what the speaker plays (PCM16, ``sample_rate`` Hz, a multiple of 100).
        Any thread; never blocks. Raises ``ValueError`` for a bad format."""
        check_format(pcm, sample_rate, num_channels)
        if sample_rate % 100:
            raise ValueError(f"sample_rate must be a multiple of 100 Hz (10 ms frames), got {sample_rate}")
        limit = int(MAX_FAR_END_SECONDS * sample_rate) * BYTES_PER_SAMPLE * num_channels
        with self._lock:
            self._far_seq += 1
            self._far.append((self._far_seq, bytes(pcm), sample_rate, num_channels))
            self._far_bytes += len(pcm)
            while self._far_bytes > limit and len(self._far) > 1:
                dropped = self._far.popleft()[1]
                self._far_bytes -= len(dropped)
                self.stats["dropped_far_bytes"] += len(dropped)

    def mark(self) -> int:
        """The far end played so far, to pass to :meth:`process` with the block captured now.
        Any thread; never blocks."""
        with self._lock:
            return self._far_seq

    def process(self, pcm: bytes, sample_rate: int, num_channels: int, mark: int | None = None) -> bytes:
        """The microphone's block with echo, noise and level processed: PCM16 in the same format.

        Whole 10 ms frames are processed and returned; a remainder waits for the next block (so a
        block of 25 ms returns 20 ms, and the next one the rest). ``mark`` is :meth:`mark` when the
        block was captured: the far end played after it waits for a later block (None: all the
        far end queued now). Call from one thread at a time. Raises ``ValueError`` for a bad
        format (``sample_rate`` must be a multiple of 100 Hz).
        """
        check_format(pcm, sample_rate, num_channels)
        if sample_rate % 100:
            raise ValueError(f"sample_rate must be a multiple of 100 Hz (10 ms frames), got {sample_rate}")
        far = []
        with self._lock:
            while self._far and (mark is None or self._far[0][0] <= mark):
                _, block, rate, channels = self._far.popleft()
                self._far_bytes -= len(block)
                far.append((block, rate, channels))
        for block, rate, channels in far:
            for frame in self._far_framer.frames(block, rate, channels):
                self._run(self._apm.process_reverse_stream, frame, rate, channels)
                self.stats["far_frames"] += 1
                if _peak(frame) >= FAR_ACTIVE_PEAK:
                    self._far_heard_at = self._near_count
        hold = round(AGC_HOLD_SECONDS / FRAME_SECONDS)
        out = []
        for frame in self._near_framer.frames(pcm, sample_rate, num_channels):
            if self._echo:
                # WebRTC wants the delay hint before every near-end frame when echo cancellation is on.
                self._apm.set_stream_delay_ms(round(1000 * self.delay))
            frame = self._run(self._apm.process_stream, frame, sample_rate, num_channels)
            if self._agc is not None and self._near_count - self._far_heard_at > hold:
                frame = self._run(self._agc.process_stream, frame, sample_rate, num_channels)
            out.append(frame)
            self._near_count += 1
            self.stats["near_frames"] += 1
        return b"".join(out)

    @property
    def delay(self) -> float:
        """The delay hint in seconds (see ``delay`` in the constructor)."""
        if self._delay is not None:
            return self._delay
        if self._delay_source is not None:
            return min(max(0.0, self._delay_source()), 9.99)
        return 0.0

    def _run(self, step: Callable[[Any], None], pcm: bytes, sample_rate: int, num_channels: int) -> bytes:
        frame = self._rtc.AudioFrame(bytearray(pcm), sample_rate, num_channels, sample_rate // 100)
        try:
            step(frame)  # processes the frame in place
        except RuntimeError as exc:  # WebRTC refused the frame: pass it on as it came
            self.stats["errors"] += 1
            if self.stats["errors"] in (1, 10, 100) or self.stats["errors"] % 1000 == 0:
                log.warning("audio processing failed on a %d Hz frame (%d so far): %s", sample_rate,
                            self.stats["errors"], exc)
            return pcm
        return frame.data.tobytes()  # type: ignore[no-any-return]
