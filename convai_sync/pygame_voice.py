"""The character's voice through ``pygame.mixer`` (extra ``pygame``): a bounded jitter buffer fed from ``on_audio``.

Install with ``pip install 'convai-sync[pygame]'`` (pygame-ce and numpy); importing this module without
them raises ``ImportError`` naming the extra. Nothing else in the SDK imports it.

``AudioFrame``\\ s arrive (on the main thread, from ``client.pump()``) as PCM16 at the transport's
rate, in pieces of ~10-40 ms, with network jitter. ``pygame.mixer`` plays ``Sound`` objects in its
own format (``pygame.mixer.get_init()``: e.g. 44100 Hz, signed 16-bit, stereo) and a ``Channel``
holds one playing sound plus one queued (``Channel.queue``). So :class:`VoicePlayer`

* converts each frame to the mixer's format as it arrives (:class:`StreamResampler`: channel
  up/down-mix and linear-interpolation resampling that carries its phase across frames, so frame
  boundaries do not click);
* keeps the converted audio in a **bounded** buffer (``max_buffer_seconds``; past it the oldest
  audio is dropped and counted, so a stalled host never grows memory without bound);
* starts a turn's playback once ``prebuffer_seconds`` are buffered (or the first audio has waited
  that long: a short utterance still plays), which absorbs arrival jitter;
* tops the channel up from :meth:`VoicePlayer.update`, once per frame, in ``chunk_seconds`` pieces,
  with ``Channel.queue`` only: SDL_mixer starts the queued sound inside the same mixing callback,
  so playback is gapless while the buffer has audio; an empty buffer while the same turn is still
  arriving is an underrun (counted, and the turn re-prebuffers); an underrun whose next audio reached the
  SDK (``AudioFrame.timestamp``) only after the buffer ran dry is also counted as a late arrival: the
  network or the jitter buffer upstream had nothing to give, so no host could have avoided it; the rest
  had audio waiting in the SDK that the host did not pump in time;
* drops stale turns: :meth:`VoicePlayer.interrupt` stops the channel, empties the buffer and
  ignores late frames of every turn up to the one playing (``AudioFrame.turn_id``).

Threads: every method must be called on the thread that owns pygame (the main thread: subscribe
``on_audio`` with ``EventDeliveryPolicy.MAIN_THREAD`` and call ``client.pump()`` there); the optional ``guard``
records it. SDL's own mixing thread only starts the sounds handed to it. numpy does the conversion
(pygame's sample-array module, ``pygame.sndarray``, uses it too).

Typical use (see ``examples/pygame_character.py``, which ships in the repository)::

    pygame.mixer.init(frequency=44100, size=-16, channels=2)
    player = VoicePlayer()
    main = EventDeliveryPolicy.MAIN_THREAD
    client.events.on_audio.subscribe(player.feed, main)
    client.events.on_audio_interrupted.subscribe(lambda event: player.interrupt(event.turn_id), main)
    while running:                      # the game loop, once per video frame
        client.pump()
        player.update()
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .audio import AudioFrame

EXTRA_HINT = "pip install 'convai-sync[pygame]'"

try:
    import numpy as np
    import pygame
except ImportError as exc:  # the optional extra is not installed
    raise ImportError(f"convai_sync.pygame_voice needs pygame-ce and numpy (the pygame extra): {EXTRA_HINT}"
                      ) from exc

log = logging.getLogger("convai_sync")

#: RMS (full scale 1.0) under which a 10 ms window counts as silence in ``VoiceStats.voiced_seconds_in``.
SILENCE_RMS = 0.01
#: How long a channel may sit idle with a queued sound and a stale current one before the player
#: starts the queued sound itself (many frames: the mixer's own hand-over takes microseconds).
STRANDED_AFTER_SECONDS = 0.2
#: pygame.mixer sample formats this player writes: ``size`` as ``pygame.mixer.get_init()`` reports it.
_FORMATS: dict[int, Any] = {-16: np.int16, 32: np.float32}


def mixer_format() -> tuple[int, int, int]:
    """``(frequency_hz, size, channels)`` of the initialised mixer.

    Raises:
        RuntimeError: the mixer is not initialised.
        ValueError: a sample format other than signed 16-bit or 32-bit float.
    """
    spec = pygame.mixer.get_init()
    if spec is None:
        raise RuntimeError("pygame.mixer is not initialised (call pygame.mixer.init() first)")
    frequency, size, channels = spec
    if size not in _FORMATS:
        raise ValueError(f"unsupported mixer sample format {size} (use size=-16 or size=32)")
    return frequency, size, channels


def _voiced_seconds(frame: AudioFrame) -> float:
    """Seconds of ``frame`` in 10 ms windows whose RMS is at least :data:`SILENCE_RMS`."""
    window = max(1, frame.sample_rate // 100) * frame.num_channels
    samples = np.frombuffer(frame.data, dtype="<i2").astype(np.float32) / 32768.0
    n = len(samples) // window
    if not n:
        return 0.0
    rms = np.sqrt(np.mean(np.square(samples[: n * window].reshape(n, window)), axis=1))
    return float(np.count_nonzero(rms >= SILENCE_RMS)) / 100.0


class StreamResampler:
    """PCM16 frames at any rate and channel count -> float32 samples at ``out_rate`` x ``out_channels``.

    Linear interpolation, stateful: the last input sample and the fractional read position carry
    over to the next frame, so a stream converted frame by frame equals the whole stream converted
    at once (and lasts ``len(input) / in_rate`` seconds, to within one input sample: the last one
    waits for the next frame to interpolate towards). Call :meth:`reset` when a new utterance starts.
    """

    def __init__(self, out_rate: int, out_channels: int) -> None:
        if out_rate <= 0 or out_channels <= 0:
            raise ValueError("out_rate and out_channels must be positive")
        self.out_rate = out_rate
        self.out_channels = out_channels
        self._in_rate: int | None = None
        self._tail: np.ndarray | None = None  # the previous frame's last sample, shape (1, channels)
        self._pos = 0.0  # read position of the next output sample, in input samples from the tail

    def reset(self) -> None:
        """Forget the carried-over sample and phase (a new utterance)."""
        self._in_rate = None
        self._tail = None
        self._pos = 0.0

    def _mix_channels(self, samples: np.ndarray) -> np.ndarray:
        have, want = samples.shape[1], self.out_channels
        if have == want:
            return samples
        mono = samples.mean(axis=1, keepdims=True)
        return np.repeat(mono, want, axis=1)

    def convert(self, pcm: bytes, sample_rate: int, num_channels: int) -> np.ndarray:
        """Convert one frame; returns float32 of shape ``(n, out_channels)`` in [-1, 1]."""
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        samples = self._mix_channels(samples.reshape(-1, num_channels))
        if sample_rate != self._in_rate:
            if self._in_rate is not None:
                log.info("voice sample rate changed %s -> %s Hz", self._in_rate, sample_rate)
            self.reset()
            self._in_rate = sample_rate
        if sample_rate == self.out_rate:
            return samples
        if self._tail is not None:
            samples = np.concatenate([self._tail, samples])
        if len(samples) < 2:
            self._tail = samples[-1:] if len(samples) else self._tail
            return np.zeros((0, self.out_channels), dtype=np.float32)
        step = sample_rate / self.out_rate
        last = len(samples) - 1
        count = max(0, math.floor((last - self._pos) / step) + 1)
        positions = self._pos + step * np.arange(count)
        out = np.empty((count, self.out_channels), dtype=np.float32)
        index = np.arange(len(samples))
        for ch in range(self.out_channels):
            out[:, ch] = np.interp(positions, index, samples[:, ch])
        self._pos = self._pos + step * count - last
        self._tail = samples[-1:]
        return out


@dataclass
class VoiceStats:
    """What the player did, in seconds of audio unless named otherwise."""

    frames_in: int = 0
    seconds_in: float = 0.0
    voiced_seconds_in: float = 0.0  # of seconds_in: 10 ms windows louder than SILENCE_RMS
    seconds_played: float = 0.0  # handed to the mixer
    dropped_stale_seconds: float = 0.0  # late frames of an interrupted turn, and audio flushed by it
    dropped_overflow_seconds: float = 0.0  # oldest audio dropped at max_buffer_seconds
    underruns: int = 0  # the buffer ran dry while the same turn was still arriving
    late_arrival_underruns: int = 0  # of underruns: the next audio reached the SDK only after the buffer ran dry
    stranded_restarts: int = 0  # queued sounds pygame's mixer left unplayed, started here (see update())
    max_buffered_seconds: float = 0.0
    turns: list[int | None] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(self).items()}


class VoicePlayer:
    """Plays ``AudioFrame``\\ s on one ``pygame.mixer.Channel`` (see the module docstring).

    Args:
        channel: The mixer channel to own (default ``pygame.mixer.Channel(0)``; the mixer must be
            initialised).
        chunk_seconds: Length of each ``Sound`` handed to the mixer.
        prebuffer_seconds: Audio gathered (or waited for) before a turn starts playing.
        max_buffer_seconds: Bound of the buffer; past it the oldest audio is dropped.
        guard: Called with a call-site name on every method (the host's main-thread check).
        clock: Monotonic seconds (tests pass a fake); the default, ``time.monotonic``, is the clock of
            ``AudioFrame.timestamp``, which ``VoiceStats.late_arrival_underruns`` compares with it.
    """

    def __init__(self, channel: pygame.mixer.Channel | None = None, *, chunk_seconds: float = 0.06,
                 prebuffer_seconds: float = 0.12, max_buffer_seconds: float = 10.0,
                 guard: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._guard = guard or (lambda _site: None)
        self._guard("VoicePlayer.__init__")
        self.rate, size, self.channels = mixer_format()
        self._dtype = _FORMATS[size]
        self.channel = channel if channel is not None else pygame.mixer.Channel(0)
        self.chunk_samples = max(1, round(chunk_seconds * self.rate))
        self.prebuffer_samples = round(prebuffer_seconds * self.rate)
        self.prebuffer_seconds = prebuffer_seconds
        self.max_samples = round(max_buffer_seconds * self.rate)
        self._clock = clock
        self._resampler = StreamResampler(self.rate, self.channels)
        self._buffer: collections.deque[np.ndarray] = collections.deque()
        self._buffered = 0  # samples (per channel) in _buffer
        self._turn: int | None = None  # the turn whose audio is buffered / playing
        self._stale_up_to: int | None = None  # frames of turns <= this are dropped
        self._playing = False  # this turn has passed its prebuffer
        self._drained = False  # the buffer ran dry after playing (an underrun if the turn goes on)
        self._dry_at = 0.0  # clock time the mixer ran out of this turn's audio (when _drained)
        self._busy_at = 0.0  # clock time an update last saw the channel playing with the buffer empty
        self._first_audio_at: float | None = None
        self._idle_with_queue_since: float | None = None
        self.level = 0.0  # RMS of the chunk last handed to the mixer, for a speaking animation
        self.stats = VoiceStats()
        # The playback clock of the turn being played: seconds handed to the mixer, and the clock
        # time its first sample started (moved on by any gap the channel sat idle).
        self._play_turn: int | None = None
        self._handed = 0.0
        self._origin: float | None = None

    # ------------------------------------------------------------------ input

    def feed(self, frame: AudioFrame) -> None:
        """Take one frame of the character's voice (call it from the ``on_audio`` handler, main thread).

        Args:
            frame: PCM16 little-endian at any ``sample_rate`` (Hz) and ``num_channels``; converted to the
                mixer's format at once and buffered. Frames of a turn :meth:`interrupt` dropped are ignored.
        """
        self._guard("VoicePlayer.feed")
        turn = frame.turn_id
        if turn is not None and self._stale_up_to is not None and turn <= self._stale_up_to:
            self.stats.dropped_stale_seconds += frame.duration
            return
        self.stats.frames_in += 1
        self.stats.seconds_in += frame.duration
        self.stats.voiced_seconds_in += _voiced_seconds(frame)
        if turn != self._turn:
            if turn not in self.stats.turns:
                self.stats.turns.append(turn)
            self._turn = turn
            self._resampler.reset()
            if not self._buffered:  # a new turn after the last one finished: prebuffer again
                self._playing = False
                self._drained = False
        converted = self._resampler.convert(frame.data, frame.sample_rate, frame.num_channels)
        if not len(converted):
            return
        if self._drained:
            # Audio of the turn that ran dry: the buffer emptied too early.
            self.stats.underruns += 1
            if frame.timestamp > self._dry_at:  # both time.monotonic() with the default clock
                self.stats.late_arrival_underruns += 1
            self._drained = False
            self._playing = False
        if not self._buffered:
            self._first_audio_at = self._clock()
        self._buffer.append(converted)
        self._buffered += len(converted)
        self._enforce_bound()
        self.stats.max_buffered_seconds = max(self.stats.max_buffered_seconds, self._buffered / self.rate)

    def _enforce_bound(self) -> None:
        while self._buffered > self.max_samples and self._buffer:
            excess = self._buffered - self.max_samples
            oldest = self._buffer[0]
            if len(oldest) <= excess:
                self._buffer.popleft()
                dropped = len(oldest)
            else:
                self._buffer[0] = oldest[excess:]
                dropped = excess
            self._buffered -= dropped
            self.stats.dropped_overflow_seconds += dropped / self.rate
            log.warning("voice buffer over %.1f s: dropped %.3f s of the oldest audio",
                        self.max_samples / self.rate, dropped / self.rate)

    def interrupt(self, turn_id: int | None = None) -> None:
        """Stop the voice now and ignore the rest of turn ``turn_id`` and every earlier one (barge-in).

        ``turn_id`` None means the latest turn heard (``AudioInterrupted.turn_id`` names it when
        the SDK knows it).
        """
        self._guard("VoicePlayer.interrupt")
        self._stop_channel()
        self.stats.dropped_stale_seconds += self._buffered / self.rate
        self._buffer.clear()
        self._buffered = 0
        stale = max((t for t in (turn_id, self._turn) if t is not None), default=None)
        if stale is not None:
            self._stale_up_to = stale if self._stale_up_to is None else max(self._stale_up_to, stale)
        self._playing = False
        self._drained = False
        self.level = 0.0
        self._origin = None

    def playback_position(self, turn_id: int | None = None) -> float | None:
        """Seconds of turn ``turn_id``'s voice (``AudioFrame.turn_id``) played so far: the clock a
        lip-sync timeline follows (``LipSync.frame_for(player)``), main thread.

        Measured as the time since the turn's first sound started (less any time the channel sat
        idle waiting for audio), never more than the audio handed to the mixer.

        Args:
            turn_id: The turn; None means the turn playing now.

        Returns:
            Seconds (``float`` >= 0), or None when that turn is not the one playing (not started,
            or over after an interruption or a later turn).
        """
        if self._origin is None or (turn_id is not None and turn_id != self._play_turn):
            return None
        return max(0.0, min(self._clock() - self._origin, self._handed))

    # ------------------------------------------------------------------ output

    @property
    def buffered_seconds(self) -> float:
        """Seconds of audio waiting in the buffer (not yet handed to the mixer)."""
        return self._buffered / self.rate

    @property
    def busy(self) -> bool:
        """True while audio is buffered or the channel is playing."""
        self._guard("VoicePlayer.busy")
        return bool(self._buffered) or self._channel_busy()

    def _take(self, samples: int) -> np.ndarray:
        pieces: list[np.ndarray] = []
        need = samples
        while need and self._buffer:
            head = self._buffer[0]
            if len(head) <= need:
                pieces.append(self._buffer.popleft())
                need -= len(head)
            else:
                pieces.append(head[:need])
                self._buffer[0] = head[need:]
                need = 0
        chunk = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        self._buffered -= len(chunk)
        return chunk

    def _sound(self, chunk: np.ndarray) -> pygame.mixer.Sound:
        if self._dtype is np.int16:
            data = np.clip(chunk * 32767.0, -32768, 32767).astype("<i2")
        else:
            data = chunk.astype("<f4")
        return pygame.mixer.Sound(buffer=data.tobytes())

    def _channel_busy(self) -> bool:
        # A queued sound counts: between the playing sound's end and the queued one's start (SDL's
        # mixing thread starts it, and needs the GIL to do so), get_busy() is briefly false.
        return bool(self.channel.get_busy()) or self.channel.get_queue() is not None

    def _stop_channel(self) -> None:
        # Channel.stop() starts the queued sound (its end-of-sound callback plays the queue), so a
        # second stop() is needed to silence the channel.
        for _ in range(2):
            if not self._channel_busy():
                return
            self.channel.stop()

    def _restart_stranded_queue(self) -> None:
        # pygame's end-of-sound callback (SDL's audio thread) looks at the channel's queued sound
        # before it takes the interpreter lock; a queue() that lands in between is stranded: the
        # channel idle, its sound cleared, the queued sound never started, and every later update
        # waiting for the queue to empty (pygame-ce 2.5, src_c/mixer.c endsound_callback). With
        # 20 ms voice frames it happened within seconds. queue() on a channel without a sound
        # plays at once, so "no sound, a queued one, idle" arises only this way: start it here.
        # Idle with a stale sound and a queued one is also what the moment between two sounds
        # looks like (the callback waiting for the lock), so that is left alone unless it lasts.
        channel = self.channel
        queued = channel.get_queue()
        if queued is None or channel.get_busy():
            self._idle_with_queue_since = None
            return
        now = self._clock()
        if channel.get_sound() is not None:
            if self._idle_with_queue_since is None:
                self._idle_with_queue_since = now
            if now - self._idle_with_queue_since < STRANDED_AFTER_SECONDS:
                return
        self._idle_with_queue_since = None
        channel.play(queued)
        self.stats.stranded_restarts += 1
        log.debug("restarted a queued sound the mixer left unplayed (%d so far)", self.stats.stranded_restarts)

    def update(self) -> None:
        """Hand buffered audio to the mixer; call once per video frame from the main loop (main thread).

        Never blocks: it queues at most one ``chunk_seconds`` sound per free queue slot of the channel.
        """
        self._guard("VoicePlayer.update")
        self._restart_stranded_queue()
        if not self._buffered:
            if not self._playing:
                return
            if self._channel_busy():
                self._busy_at = self._clock()
                return
            if not self._drained:
                # The mixer ran dry after the last update that saw it busy and by now: when the audio
                # handed to it ended, if it played in real time (this update may come late).
                now = self._clock()
                ends = now if self._origin is None else self._origin + self._handed
                self._dry_at = max(self._busy_at, min(now, ends))
            self._drained = True
            self.level = 0.0
            return
        if not self._playing:
            waited = self._first_audio_at is not None and self._clock() - self._first_audio_at >= self.prebuffer_seconds
            if self._buffered < self.prebuffer_samples and not waited:
                return
            self._playing = True
        # A Channel holds one playing sound and one queued. Audio is handed over with Channel.queue()
        # (play() only restarts a stranded queue, above): on an idle channel it plays at once, and it
        # never replaces a sound SDL is about to start, which Channel.play() would do in the moment
        # between one sound's end and the next one's start.
        while self._buffered and self.channel.get_queue() is None:
            idle = not self._channel_busy()
            if self._turn != self._play_turn or self._origin is None:
                self._play_turn, self._handed, self._origin = self._turn, 0.0, self._clock()
            elif idle:  # the channel ran dry and starts again: the turn's clock waited meanwhile
                self._origin = self._clock() - min(self._clock() - self._origin, self._handed)
            chunk = self._take(self.chunk_samples)
            self._handed += len(chunk) / self.rate
            self.level = float(np.sqrt(np.mean(np.square(chunk)))) if len(chunk) else 0.0
            self.channel.queue(self._sound(chunk))
            self.stats.seconds_played += len(chunk) / self.rate
