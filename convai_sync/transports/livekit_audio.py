"""Audio on the LiveKit transport: the character's voice in, the user's microphone out.

Everything here runs on the transport's loop thread (``convai-livekit-<n>``); ``rtc`` is the
lazily imported ``livekit.rtc`` module, passed in so nothing imports the native library early.

Voice in: one :func:`read_voice` task per subscribed audio track of the character (a remote
participant of kind AGENT). ``rtc.AudioStream`` decodes and resamples it to PCM16 mono at the
requested rate, in 20 ms frames. libwebrtc keeps producing frames while the character is silent
(digital silence between turns, 50 frames a second); they are delivered too, unchanged, so the
frame timeline is continuous (the session tags frames with turns). The stream's own queue is
bounded (:data:`VOICE_QUEUE_FRAMES`, oldest dropped) so a stalled loop cannot grow memory.

Microphone out: :class:`Microphone` publishes one track (``rtc.AudioSource`` +
``rtc.LocalAudioTrack.create_audio_track``, source MICROPHONE) on first use, in the format of that
first audio, waits (bounded) for the server to subscribe to it (LiveKit drops audio captured
before the subscriber's m-line exists), then frames PCM16 into 20 ms ``rtc.AudioFrame`` s.
``AudioSource.capture_frame`` waits while the source's queue (:data:`MIC_QUEUE_MS` of audio) is
full, which paces a long buffer at real time: that is the back-pressure the synchronous
``send_audio`` deadline bounds.

Later audio in another format (sample rate or channels) is converted to the track's format
(channels mixed down to mono or copied from it, the rate changed by LiveKit's own
``rtc.AudioResampler``), never republished: a republish is an unpublish, a renegotiation and a
new subscription, during which LiveKit drops the new audio (the start of the user's next
utterance), and each one leaves the server another m-line and track. One track for the session
keeps every word and does not depend on the server following renegotiations.

A server that does not subscribe to the track within :data:`MIC_SUBSCRIBE_WAIT` never hears it:
``send`` then raises :class:`MicrophoneUnheard` (the client's ``audio.mic_publish_failed``) and
sends nothing, so the user is never left talking to a deaf session; the next ``send`` waits for
the subscription again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .base import MicrophoneUnheard

log = logging.getLogger("convai_sync")

#: Frame length delivered and sent, in milliseconds (LiveKit's and Opus's usual frame).
FRAME_MS = 20
#: Bound of decoded voice frames waiting for the loop (2 s at 20 ms; the oldest are dropped).
VOICE_QUEUE_FRAMES = 100
#: Audio buffered by the microphone source before ``capture_frame`` waits (LiveKit's default).
MIC_QUEUE_MS = 1000
#: Longest wait for the server to subscribe to a newly published microphone track.
MIC_SUBSCRIBE_WAIT = 3.0

AudioSink = Callable[[bytes, int, int], None]


def remix(pcm: bytes, channels: int, target: int) -> bytes:
    """PCM16 ``pcm`` of ``channels`` interleaved channels as ``target`` channels: mixed down to mono
    (the mean of the channels, truncated toward zero), then copied into each of ``target`` channels when it
    is more than one. ``pcm`` itself when the counts match.

    Raises:
        ValueError: ``pcm`` is not whole frames (an odd byte count, or samples not a multiple of ``channels``).
    """
    if channels == target:
        return pcm
    # numpy comes with livekit (the only way here); imported on use so that importing this module, which the
    # transport does before it checks livekit is installed, needs nothing the core install lacks.
    import numpy

    samples = numpy.frombuffer(pcm, dtype="<i2")
    if channels == 1:
        mono = samples
    else:
        # Whole-array sums instead of a Python loop per sample (this runs on the transport's loop thread).
        # total / channels is the float division int(total / channels) made, so the result is unchanged.
        totals = samples.reshape(-1, channels).sum(axis=1, dtype=numpy.int64)
        mono = (totals / channels).astype("<i2")
    out = mono if target == 1 else numpy.repeat(mono, target)
    return out.tobytes()


async def read_voice(rtc: Any, track: Any, sample_rate: int, deliver: AudioSink) -> None:
    """Deliver ``track``'s audio as PCM16 mono ``sample_rate`` Hz frames until it ends or is cancelled."""
    stream = rtc.AudioStream(track, loop=asyncio.get_running_loop(), capacity=VOICE_QUEUE_FRAMES,
                             sample_rate=sample_rate, num_channels=1, frame_size_ms=FRAME_MS)
    try:
        async for event in stream:
            frame = event.frame
            deliver(frame.data.tobytes(), frame.sample_rate, frame.num_channels)
    finally:
        await stream.aclose()


class Microphone:
    """The user's published microphone track (loop thread only).

    Args:
        rtc: The ``livekit.rtc`` module.
        room: The connected ``rtc.Room``.
    """

    def __init__(self, rtc: Any, room: Any) -> None:
        self._rtc = rtc
        self._room = room
        self._lock = asyncio.Lock()
        self._source: Any = None
        self._publication: Any = None
        self._format: tuple[int, int] | None = None
        self._subscribed = False
        self._resampler: Any = None
        self._resampling: int | None = None  # the input rate self._resampler takes

    @property
    def format(self) -> tuple[int, int] | None:
        """(Hz, channels) of the published track; None before the first send."""
        return self._format

    async def send(self, pcm: bytes, sample_rate: int, num_channels: int, progress: list[float]) -> None:
        """Capture ``pcm`` (PCM16, whole frames) in 20 ms frames, in order, converted to the track's
        format when it has another (module docstring); ``progress[0]`` counts the seconds captured so
        far (read by the caller when it gives up). Concurrent calls are served one after the other,
        in call order.

        Raises:
            MicrophoneUnheard: the server did not subscribe to the track (nothing was sent).
        """
        async with self._lock:
            source = await self._ensure(sample_rate, num_channels)
            assert self._format is not None
            rate, channels = self._format
            pcm = self._convert(pcm, sample_rate, num_channels)
            samples = rate * FRAME_MS // 1000
            step = samples * 2 * channels
            view = memoryview(pcm)
            for start in range(0, len(view), step):
                chunk = view[start:start + step]
                count = len(chunk) // (2 * channels)
                await source.capture_frame(self._rtc.AudioFrame(chunk, rate, channels, count))
                progress[0] += count / rate

    def _convert(self, pcm: bytes, sample_rate: int, num_channels: int) -> bytes:
        """``pcm`` in the track's format (the resampler is kept across calls of one input rate, so
        a stream of small sends is resampled without seams)."""
        assert self._format is not None
        rate, channels = self._format
        pcm = remix(pcm, num_channels, channels)
        if sample_rate == rate:
            return pcm
        tail = b""
        if self._resampling != sample_rate:
            if self._resampler is not None:  # another input rate: what the old one holds goes first
                tail = b"".join(bytes(f.data) for f in self._resampler.flush())
            self._resampler = self._rtc.AudioResampler(sample_rate, rate, num_channels=channels)
            self._resampling = sample_rate
        frames = self._resampler.push(bytearray(pcm)) if pcm else []
        return tail + b"".join(bytes(f.data) for f in frames)

    async def _ensure(self, sample_rate: int, num_channels: int) -> Any:
        if self._source is None:
            rtc = self._rtc
            source = rtc.AudioSource(sample_rate, num_channels, queue_size_ms=MIC_QUEUE_MS,
                                     loop=asyncio.get_running_loop())
            track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            try:
                publication = await self._room.local_participant.publish_track(track, options)
            except BaseException:
                await source.aclose()
                raise
            self._source, self._publication, self._format = source, publication, (sample_rate, num_channels)
            self._subscribed = False
            log.info("LiveKit: published the microphone track %s (%d Hz, %d channel(s)); audio in other "
                     "formats is converted to it", publication.sid, sample_rate, num_channels)
        if not self._subscribed:
            try:
                await asyncio.wait_for(asyncio.shield(self._publication.wait_for_subscription()),
                                       MIC_SUBSCRIBE_WAIT)
            except asyncio.TimeoutError:
                raise MicrophoneUnheard(f"the server did not subscribe to the microphone track within "
                                        f"{MIC_SUBSCRIBE_WAIT:g} s: it would not hear the audio, so none was "
                                        "sent") from None
            self._subscribed = True
        return self._source

    async def close(self) -> None:
        """Unpublish the track and release the source (best effort; the room may be gone)."""
        source, publication = self._source, self._publication
        self._source = self._publication = self._format = None
        self._resampler = self._resampling = None
        if publication is not None and self._room.isconnected():
            try:
                await self._room.local_participant.unpublish_track(publication.sid)
            except Exception as exc:  # noqa: BLE001 - teardown goes on; the room ends the track anyway
                log.debug("LiveKit: unpublishing the microphone failed: %s", exc)
        if source is not None:
            await source.aclose()
