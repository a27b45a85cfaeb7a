"""The character's voice and ears on LiveKit: a paced audio track, ``audio-data`` chunks, and the user's
microphone track (loop thread only, except the user's callables).

The default voice and the utterance rules are :mod:`simulator.core.speech`'s (shared with the WebSocket; re-exported
here). The voice is sent in real time, in 20 ms Opus packets; between turns the track sends nothing (no RTP at all:
the client's jitter buffer plays silence), which keeps an idle session's cost to the connection itself. An
utterance is resampled and Opus-encoded once, when it is queued (:func:`opus_packets`, PyAV's libopus, remembered
for the last ``OPUS_CACHE`` distinct utterances so a line many sessions speak is encoded once), and the track
hands aiortc's sender ready packets: no per-frame encoding, thread hop or audio-level loop in Python. The
user's track is resampled to 48 kHz mono and heard by a :class:`~simulator.core.speech.UtteranceDetector`.

``audio-data`` (Convai Realtime API, ``audio_config.output``): Form B ``server-message`` with ``sample_rate``,
``channels`` (1), ``audio`` (base64 PCM16 little-endian) and ``includes_wav_header``; one message per
``max_chunk_duration_ms`` of audio, each with its own 44-byte WAV header when ``add_wav_header`` is set.
"""

from __future__ import annotations

import asyncio
import base64
import fractions
import functools
import io
import logging
import wave
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from simulator.core import wire
from simulator.core.speech import UtteranceDetector
from simulator.core.speech import voice_seconds as voice_seconds  # re-exported (tests size the voice by it)

logger = logging.getLogger("simulator.livekit.media")

#: Silence sent after each utterance on the track, so the client's decoder ends on silence rather than
#: concealing the missing packets (which stretches the last sound by about 100 ms).
TAIL_SILENCE = 0.06
#: Opus runs at 48 kHz (RFC 7587: the RTP clock of Opus is always 48000 Hz), in 20 ms packets as WebRTC senders
#: (and Convai's agents) use: 20 ms packets would cost a third of the per-packet Python work in aiortc's sender, but
#: smear each utterance's edges over a longer frame, and clients measure what they hear.
OPUS_RATE = 48_000
PACKET_SECONDS = 0.02
OPUS_FRAME = int(OPUS_RATE * PACKET_SECONDS)
OPUS_TIME_BASE = fractions.Fraction(1, OPUS_RATE)
OPUS_BIT_RATE = 32_000
#: Distinct utterances whose Opus packets are remembered (a few KiB each).
OPUS_CACHE = 64


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


@functools.lru_cache(maxsize=OPUS_CACHE)
def opus_packets(pcm: bytes, rate: int) -> tuple[tuple[bytes, ...], int]:
    """``pcm`` (PCM16 mono at ``rate`` Hz) as 20 ms Opus packets at 48 kHz, the last one padded with silence,
    and how many 20 ms frames of the input they carry (the encoder's lookahead adds a packet at the end).

    One fresh libopus encoder per utterance, so the packets depend on the audio alone (and can be shared).
    """
    pcm = resample(pcm, rate, OPUS_RATE)
    size = OPUS_FRAME * 2
    pcm = pcm.ljust(-(-len(pcm) // size) * size, b"\0")
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = OPUS_BIT_RATE
    codec.sample_rate = OPUS_RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.time_base = OPUS_TIME_BASE
    codec.options = {"application": "voip", "frame_duration": str(int(PACKET_SECONDS * 1000))}
    packets: list[bytes] = []
    for index, start in enumerate(range(0, len(pcm), size)):
        frame = av.AudioFrame(format="s16", layout="mono", samples=OPUS_FRAME)
        frame.planes[0].update(pcm[start:start + size])
        frame.sample_rate = OPUS_RATE
        frame.time_base = OPUS_TIME_BASE
        frame.pts = index * OPUS_FRAME
        packets.extend(bytes(packet) for packet in codec.encode(frame))
    packets.extend(bytes(packet) for packet in codec.encode(None))
    return tuple(packets), len(pcm) // size


class VoiceTrack(MediaStreamTrack):
    """The character's audio track: plays queued utterances in real time as 20 ms Opus packets, nothing in
    between (aiortc's sender packs an ``av.Packet`` as it is, without encoding)."""

    kind = "audio"

    def __init__(self, on_sent: Callable[[float], None] | None = None) -> None:
        """``on_sent`` is called (loop thread) with the seconds of each frame handed to the sender."""
        super().__init__()
        self._on_sent = on_sent
        self._packets: deque[tuple[bytes, float]] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._pts = 0
        self._due: float | None = None

    def play(self, pcm: bytes, rate: int) -> None:
        """Queue ``pcm`` (PCM16 mono at ``rate`` Hz) after anything still playing (encoded here, once)."""
        packets, voiced = opus_packets(pcm, rate)
        # Each packet with the seconds of the utterance it carries: what on_sent reports when it goes out.
        self._packets.extend((payload, PACKET_SECONDS if index < voiced else 0.0)
                             for index, payload in enumerate(packets))
        if self._packets:
            self._drained.clear()
            self._wake.set()

    def clear(self) -> None:
        """Drop whatever has not been sent yet (an interruption)."""
        self._packets.clear()
        self._drained.set()

    async def drained(self) -> None:
        """Wait until the last queued packet has been handed to the sender."""
        await self._drained.wait()

    async def recv(self) -> av.Packet[Any]:
        loop = asyncio.get_running_loop()
        while not self._packets:
            if self.readyState != "live":
                raise MediaStreamError
            self._wake.clear()
            await self._wake.wait()
        payload, seconds = self._packets.popleft()
        now = loop.time()
        if self._due is None:
            self._due = now
        elif self._due > now:
            await asyncio.sleep(self._due - now)
        else:
            # Idle since the last utterance: RTP time follows the wall clock (in whole frames), so the
            # receiver sees a pause, not a burst of late packets.
            self._pts += int((now - self._due) / PACKET_SECONDS) * OPUS_FRAME
            self._due = now
        self._due += PACKET_SECONDS
        packet = av.Packet(payload)
        packet.pts = self._pts
        packet.time_base = OPUS_TIME_BASE
        self._pts += OPUS_FRAME
        if self._on_sent is not None and seconds:
            self._on_sent(seconds)
        if not self._packets:
            self._drained.set()
        return packet

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
    if use_track and track is not None and pcm:
        # The whole utterance at once (encoded once); the track paces it, and an interruption clears it.
        track.play(pcm + bytes(2 * int(rate * TAIL_SILENCE)), rate)
    for index, _start in enumerate(range(0, len(pcm), step)):
        if stop():
            break
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
        self._detector = UtteranceDetector(on_start, on_utterance)
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
            await self._detector.finish()

    async def _frame(self, frame: Any) -> None:
        if not isinstance(frame, av.AudioFrame) or not frame.sample_rate:
            return
        self._on_audio(frame.samples / frame.sample_rate)
        pcm = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in self._resampler.resample(frame))
        await self._detector.feed(pcm, self._rate, 1)
