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
``rtc.LocalAudioTrack.create_audio_track``, source MICROPHONE) on first use, waits (bounded) for
the server to subscribe to it (LiveKit drops audio captured before the subscriber's m-line
exists), then frames PCM16 into 20 ms ``rtc.AudioFrame`` s. ``AudioSource.capture_frame`` waits
while the source's queue (:data:`MIC_QUEUE_MS` of audio) is full, which paces a long buffer at
real time: that is the back-pressure the synchronous ``send_audio`` deadline bounds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

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

    async def send(self, pcm: bytes, sample_rate: int, num_channels: int, progress: list[float]) -> None:
        """Capture ``pcm`` (PCM16, whole frames) in 20 ms frames, in order; ``progress[0]`` counts
        the seconds captured so far (read by the caller when it gives up). Concurrent calls are
        served one after the other, in call order."""
        async with self._lock:
            source = await self._ensure(sample_rate, num_channels)
            samples = sample_rate * FRAME_MS // 1000
            step = samples * 2 * num_channels
            view = memoryview(pcm)
            for start in range(0, len(view), step):
                chunk = view[start:start + step]
                count = len(chunk) // (2 * num_channels)
                await source.capture_frame(self._rtc.AudioFrame(chunk, sample_rate, num_channels, count))
                progress[0] += count / sample_rate

    async def _ensure(self, sample_rate: int, num_channels: int) -> Any:
        if self._source is not None and self._format != (sample_rate, num_channels):
            await self.close()  # a new format needs a new source; LiveKit sources have a fixed one
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
            log.info("LiveKit: published the microphone track %s (%d Hz, %d channel(s))",
                     publication.sid, sample_rate, num_channels)
        if not self._subscribed:
            try:
                await asyncio.wait_for(asyncio.shield(self._publication.wait_for_subscription()),
                                       MIC_SUBSCRIBE_WAIT)
                self._subscribed = True
            except asyncio.TimeoutError:
                log.warning("LiveKit: nobody subscribed to the microphone track within %.0f s; sending "
                            "anyway (audio before the subscription may be lost)", MIC_SUBSCRIBE_WAIT)
                self._subscribed = True  # warn once per track, then just send
        return self._source

    async def close(self) -> None:
        """Unpublish the track and release the source (best effort; the room may be gone)."""
        source, publication = self._source, self._publication
        self._source = self._publication = self._format = None
        if publication is not None and self._room.isconnected():
            try:
                await self._room.local_participant.unpublish_track(publication.sid)
            except Exception as exc:  # noqa: BLE001 - teardown goes on; the room ends the track anyway
                log.debug("LiveKit: unpublishing the microphone failed: %s", exc)
        if source is not None:
            await source.aclose()
