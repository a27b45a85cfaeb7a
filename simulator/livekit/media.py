"""The character's voice and ears on LiveKit: synthesis, a paced audio track, ``audio-data`` chunks, and
utterance detection on the user's microphone track (loop thread only, except the user's callables).

Default voice (:func:`default_synthesizer`): a deterministic 440 Hz tone, PCM16 mono at 24 kHz, lasting
``VOICE_MS_PER_CHARACTER`` (20) ms per character of the reply, at least 200 ms. It is sent in real time, in
20 ms frames; between turns the track sends nothing (no RTP at all: the client's jitter buffer plays silence),
which keeps an idle session's cost to the connection itself.

Hearing: a frame is speech when its peak reaches ``SPEECH_PEAK`` (about -30 dBFS); an utterance starts with the
first speech frame and ends after ``END_OF_UTTERANCE_SILENCE`` seconds without speech, or when the track ends.
The default transcriber describes the audio: ``"[audio 1.20 s]"``.

``audio-data`` (Convai Realtime API, ``audio_config.output``): Form B ``server-message`` with ``sample_rate``,
``channels`` (1), ``audio`` (base64 PCM16 little-endian) and ``includes_wav_header``; one message per
``max_chunk_duration_ms`` of audio, each with its own 44-byte WAV header when ``add_wav_header`` is set.
"""

from __future__ import annotations

import array
import asyncio
import base64
import fractions
import io
import logging
import math
import sys
import wave
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from simulator import wire

logger = logging.getLogger("simulator.livekit.media")

FRAME_SECONDS = 0.02
VOICE_RATE = 24_000
VOICE_MS_PER_CHARACTER = 20
MIN_VOICE_SECONDS = 0.2
TONE_HZ = 440.0
TONE_AMPLITUDE = 8000
#: Peak sample value from which a frame counts as speech (about -30 dBFS).
SPEECH_PEAK = 1000
END_OF_UTTERANCE_SILENCE = 0.5
#: Silence sent after each utterance on the track, so the client's decoder ends on silence rather than
#: concealing the missing packets (which stretches the last sound by about 100 ms).
TAIL_SILENCE = 0.06
#: Longest utterance kept for the transcriber (older audio is dropped, still counted).
MAX_UTTERANCE_SECONDS = 60.0

Synthesizer = Callable[[str], tuple[bytes, int]]
Transcriber = Callable[[bytes, int, int], str]


def voice_seconds(text: str) -> float:
    """How long the default voice speaks ``text``: 20 ms per character, at least 0.2 s."""
    return max(MIN_VOICE_SECONDS, len(text) * VOICE_MS_PER_CHARACTER / 1000)


def tone(seconds: float, rate: int = VOICE_RATE) -> bytes:
    """``seconds`` of the default voice's 440 Hz tone, PCM16 mono little-endian."""
    count = int(round(seconds * rate))
    step = 2 * math.pi * TONE_HZ / rate
    samples = array.array("h", (int(TONE_AMPLITUDE * math.sin(step * i)) for i in range(count)))
    if sys.byteorder != "little":
        samples.byteswap()
    return samples.tobytes()


def default_synthesizer(text: str) -> tuple[bytes, int]:
    """The default voice: (PCM16 mono, 24000 Hz) lasting :func:`voice_seconds` of ``text``."""
    return tone(voice_seconds(text)), VOICE_RATE


def default_transcriber(pcm: bytes, sample_rate: int, num_channels: int) -> str:
    """The default hearing: describes the utterance's duration, e.g. ``"[audio 1.20 s]"``."""
    seconds = len(pcm) / (2 * num_channels * sample_rate) if sample_rate and num_channels else 0.0
    return f"[audio {seconds:.2f} s]"


def check_voice(result: object) -> tuple[bytes, int]:
    """Validate a synthesizer's result: (PCM16 mono bytes of even length, sample rate 8000..48000 Hz)."""
    if (not isinstance(result, tuple) or len(result) != 2 or not isinstance(result[0], (bytes, bytearray))
            or isinstance(result[1], bool) or not isinstance(result[1], int)):
        raise ValueError("a synthesizer must return (pcm: bytes, sample_rate: int)")
    pcm, rate = bytes(result[0]), result[1]
    if not 8000 <= rate <= 48000:
        raise ValueError(f"synthesizer sample rate {rate} Hz is outside 8000..48000")
    if len(pcm) % 2:
        pcm = pcm[:-1]
    return pcm, rate


def resample(pcm: bytes, rate: int, target: int) -> bytes:
    """PCM16 mono ``pcm`` at ``rate`` resampled to ``target`` Hz (PyAV's resampler)."""
    if rate == target or not pcm:
        return pcm
    frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
    frame.planes[0].update(pcm)
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=target)
    out = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in resampler.resample(frame))
    out += b"".join(bytes(f.planes[0])[: f.samples * 2] for f in resampler.resample(None))
    return out


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    """``pcm`` (PCM16 mono) with a 44-byte WAV header (stdlib ``wave``)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue()


def audio_data(pcm: bytes, rate: int, wav_header: bool) -> wire.JsonDict:
    """One ``audio-data`` message carrying ``pcm`` (PCM16 mono at ``rate`` Hz)."""
    body = wav_bytes(pcm, rate) if wav_header else pcm
    return wire.form_b("audio-data", sample_rate=rate, channels=1, audio=base64.b64encode(body).decode("ascii"),
                       includes_wav_header=wav_header)


class VoiceTrack(MediaStreamTrack):
    """The character's audio track: plays queued PCM16 mono in real-time 20 ms frames, nothing in between."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._frames: deque[tuple[bytes, int]] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._pts = 0
        self._due: float | None = None
        self._rate = VOICE_RATE

    def play(self, pcm: bytes, rate: int) -> None:
        """Queue ``pcm`` (PCM16 mono at ``rate`` Hz) after anything still playing."""
        size = int(rate * FRAME_SECONDS) * 2
        for start in range(0, len(pcm), size):
            chunk = pcm[start:start + size]
            self._frames.append((chunk.ljust(size, b"\0"), rate))
        if self._frames:
            self._drained.clear()
            self._wake.set()

    def clear(self) -> None:
        """Drop whatever has not been sent yet (an interruption)."""
        self._frames.clear()
        self._drained.set()

    async def drained(self) -> None:
        """Wait until the last queued frame has been handed to the sender."""
        await self._drained.wait()

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._wake.clear()
            await self._wake.wait()
        pcm, rate = self._frames.popleft()
        samples = len(pcm) // 2
        now = loop.time()
        if self._due is None or rate != self._rate:
            self._due, self._rate, self._pts = now, rate, 0
        elif self._due > now:
            await asyncio.sleep(self._due - now)
        else:
            # Idle since the last utterance: RTP time follows the wall clock (in whole frames), so the
            # receiver sees a pause, not a burst of late packets.
            self._pts += int((now - self._due) / FRAME_SECONDS) * samples
            self._due = now
        self._due += FRAME_SECONDS
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(pcm)
        frame.sample_rate = rate
        frame.time_base = fractions.Fraction(1, rate)
        frame.pts = self._pts
        self._pts += samples
        if not self._frames:
            self._drained.set()
        return frame

    def stop(self) -> None:
        super().stop()
        self._wake.set()
        self._drained.set()


async def speak(
    pcm: bytes,
    rate: int,
    output: dict[str, Any],
    track: VoiceTrack | None,
    send: Callable[[wire.JsonDict], Awaitable[bool]],
    stop: Callable[[], bool],
) -> None:
    """Voice ``pcm`` on the track and/or as ``audio-data`` (``output['audio_routing']``), in real time.

    Returns once the last audio was sent, or early when ``stop()`` turns True or the session cannot send.
    """
    routing = output.get("audio_routing", "audio_only")
    loop = asyncio.get_running_loop()
    chunk_seconds = int(output.get("max_chunk_duration_ms", 100)) / 1000
    use_track = track is not None and routing in ("audio_only", "both")
    data_rate = output.get("sample_rate") or rate
    data_pcm = resample(pcm, rate, data_rate) if routing in ("data_only", "both") else b""
    started = loop.time()
    step = int(rate * chunk_seconds) * 2
    data_step = int(data_rate * chunk_seconds) * 2
    for index, start in enumerate(range(0, len(pcm), step)):
        if stop():
            break
        if use_track and track is not None:
            track.play(pcm[start:start + step], rate)
        if data_pcm:
            piece = data_pcm[index * data_step:(index + 1) * data_step]
            if piece and not await send(audio_data(piece, data_rate, bool(output.get("add_wav_header")))):
                break
        due = started + (index + 1) * chunk_seconds
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    if track is not None:
        if stop():
            track.clear()
        elif use_track:
            track.play(bytes(2 * int(rate * TAIL_SILENCE)), rate)
        await track.drained()


class Listener:
    """Hears one user track: counts its audio and reports each utterance (loop thread only).

    Args:
        on_audio: called with the seconds of every received frame.
        on_start: awaited when an utterance starts.
        on_utterance: awaited with (PCM16 mono, sample rate, channels) when it ends (trailing silence cut).
    """

    def __init__(self, on_audio: Callable[[float], None], on_start: Callable[[], Awaitable[None]],
                 on_utterance: Callable[[bytes, int, int], Awaitable[None]]) -> None:
        self._on_audio = on_audio
        self._on_start = on_start
        self._on_utterance = on_utterance
        self._pcm: deque[bytes] = deque()
        self._kept = 0.0
        self._speaking = False
        self._silence = 0.0
        self._trailing = 0  # silent chunks at the end of _pcm
        self._rate = 48_000
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self._rate)

    async def run(self, track: MediaStreamTrack) -> None:
        """Consume ``track`` until it ends (an utterance in progress then ends too)."""
        try:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    break
                await self._frame(frame)
        finally:
            if self._speaking:
                await self._finish()

    async def _frame(self, frame: Any) -> None:
        if not isinstance(frame, av.AudioFrame) or not frame.sample_rate:
            return
        seconds = frame.samples / frame.sample_rate
        self._on_audio(seconds)
        pcm = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in self._resampler.resample(frame))
        samples = array.array("h")
        samples.frombytes(pcm)
        loud = bool(samples) and max(max(samples), -min(samples)) >= SPEECH_PEAK
        if loud and not self._speaking:
            self._speaking = True
            await self._on_start()
        if not self._speaking:
            return
        self._pcm.append(pcm)
        self._kept += seconds
        if loud:
            self._silence, self._trailing = 0.0, 0
        else:
            self._silence += seconds
            self._trailing += 1
        while self._kept > MAX_UTTERANCE_SECONDS and len(self._pcm) > self._trailing + 1:
            self._kept -= len(self._pcm.popleft()) / (2 * self._rate)
        if self._silence >= END_OF_UTTERANCE_SILENCE:
            await self._finish()

    async def _finish(self) -> None:
        for _ in range(min(self._trailing, len(self._pcm))):
            self._pcm.pop()
        pcm = b"".join(self._pcm)
        self._pcm.clear()
        self._kept, self._silence, self._trailing, self._speaking = 0.0, 0.0, 0, False
        await self._on_utterance(pcm, self._rate, 1)
