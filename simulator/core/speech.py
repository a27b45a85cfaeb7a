"""The character's default voice and ears, shared by both carriers (pure Python: no media packages).
The voice and detector math is pure; the turn-starting coroutines run on the loop thread.

Default voice (:func:`default_synthesizer`): a deterministic 440 Hz tone, PCM16 mono at 24 kHz, lasting
``VOICE_MS_PER_CHARACTER`` (20) ms per character of the reply, at least 200 ms.

Hearing (:class:`UtteranceDetector`): a chunk of user audio is speech when its peak reaches ``SPEECH_PEAK``
(about -30 dBFS); an utterance starts with the first speech chunk and ends after ``END_OF_UTTERANCE_SILENCE``
seconds of audio without speech (audio time, not wall time: a client may send faster than real time), or when
the audio stops for good; its trailing silence is cut. The default transcriber describes the audio:
``"[audio 1.20 s]"``. :func:`heard_started` / :func:`heard_utterance` are what the character does then (the
same on LiveKit and on the WebSocket): ``user-started-speaking``; ``user-stopped-speaking``, the transcriber,
and the reply through :func:`simulator.core.messages.handle_utterance`.
"""

from __future__ import annotations

import array
import functools
import logging
import math
import sys
from collections import deque
from collections.abc import Awaitable, Callable

from simulator.core import messages, wire
from simulator.core.sessions import Phase, SimSession
from simulator.core.state import SimCore

logger = logging.getLogger("simulator.speech")

FRAME_SECONDS = 0.02
VOICE_RATE = 24_000
VOICE_MS_PER_CHARACTER = 20
MIN_VOICE_SECONDS = 0.2
TONE_HZ = 440.0
TONE_AMPLITUDE = 8000
#: Peak sample value from which a chunk counts as speech (about -30 dBFS).
SPEECH_PEAK = 1000
END_OF_UTTERANCE_SILENCE = 0.5
#: Longest utterance kept for the transcriber (older audio is dropped, still counted).
MAX_UTTERANCE_SECONDS = 60.0

Synthesizer = Callable[[str], tuple[bytes, int]]
Transcriber = Callable[[bytes, int, int], str]


def voice_seconds(text: str) -> float:
    """How long the default voice speaks ``text``: 20 ms per character, at least 0.2 s."""
    return max(MIN_VOICE_SECONDS, len(text) * VOICE_MS_PER_CHARACTER / 1000)


@functools.lru_cache(maxsize=64)
def tone(seconds: float, rate: int = VOICE_RATE) -> bytes:
    """``seconds`` of the default voice's 440 Hz tone, PCM16 mono little-endian (remembered: the sample loop
    is pure Python, and many sessions speak replies of the same length)."""
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


async def synthesize(core: SimCore, session: SimSession, text: str) -> tuple[bytes, int] | None:
    """The character's voice for ``text`` (the configured synthesizer, else the default one), or None after
    reporting a failing synthesizer to the client as a non-fatal pipeline error."""
    synthesizer = core.config.synthesizer
    try:
        if synthesizer is None:
            result: object = default_synthesizer(text)
        else:
            result = await core.loop.run_in_executor(core.responder_pool(), synthesizer, text)
        return check_voice(result)
    except Exception as exc:  # the user's synthesizer may raise anything: report it, keep the turn going
        logger.exception("synthesizer failed for session %s", session.session_id)
        await session._send(wire.pipeline_error(f"Synthesizer failed: {exc}", False))
        return None


def peak(pcm: bytes) -> int:
    """Largest absolute sample of PCM16 little-endian ``pcm`` (any channel)."""
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder != "little":
        samples.byteswap()
    return max(max(samples), -min(samples)) if samples else 0


class UtteranceDetector:
    """Finds utterances in a stream of PCM16 chunks (see the module docstring). Loop thread only.

    Args:
        on_start: awaited when an utterance starts.
        on_utterance: awaited with (PCM16, sample rate, channels) when it ends (trailing silence cut).
    """

    def __init__(self, on_start: Callable[[], Awaitable[None]],
                 on_utterance: Callable[[bytes, int, int], Awaitable[None]]) -> None:
        self._on_start = on_start
        self._on_utterance = on_utterance
        self._pcm: deque[bytes] = deque()
        self._kept = 0.0
        self._speaking = False
        self._silence = 0.0
        self._trailing = 0  # silent chunks at the end of _pcm
        self._format = (48_000, 1)

    @property
    def speaking(self) -> bool:
        return self._speaking

    async def feed(self, pcm: bytes, sample_rate: int, num_channels: int) -> None:
        """One chunk of the user's audio (PCM16 little-endian, interleaved)."""
        if not pcm or sample_rate <= 0 or num_channels <= 0:
            return
        if self._speaking and (sample_rate, num_channels) != self._format:
            await self.finish()  # an utterance keeps one format
        self._format = (sample_rate, num_channels)
        seconds = len(pcm) / (2 * num_channels * sample_rate)
        loud = peak(pcm) >= SPEECH_PEAK
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
        bytes_per_second = 2 * num_channels * sample_rate
        while self._kept > MAX_UTTERANCE_SECONDS and len(self._pcm) > self._trailing + 1:
            self._kept -= len(self._pcm.popleft()) / bytes_per_second
        if self._silence >= END_OF_UTTERANCE_SILENCE:
            await self.finish()

    async def finish(self) -> None:
        """End the utterance in progress, if any (the audio stopped)."""
        if not self._speaking:
            return
        for _ in range(min(self._trailing, len(self._pcm))):
            self._pcm.pop()
        pcm = b"".join(self._pcm)
        self._pcm.clear()
        self._kept, self._silence, self._trailing, self._speaking = 0.0, 0.0, 0, False
        rate, channels = self._format
        await self._on_utterance(pcm, rate, channels)


async def heard_started(session: SimSession) -> None:
    """The user started speaking."""
    await session._send(wire.form_a("user-started-speaking"))


async def heard_utterance(core: SimCore, session: SimSession, pcm: bytes, rate: int, channels: int) -> None:
    """The user finished an utterance: ``user-stopped-speaking``, the transcriber, then the reply (or a
    non-fatal pipeline error when the transcriber fails; nothing when it heard no words)."""
    if session._phase is not Phase.OPEN:
        return
    await session._send(wire.form_a("user-stopped-speaking"))
    transcriber = core.config.transcriber
    try:
        if transcriber is None:
            text: object = default_transcriber(pcm, rate, channels)
        else:
            text = await core.loop.run_in_executor(core.responder_pool(), transcriber, pcm, rate, channels)
    except Exception as exc:  # the user's transcriber may raise anything: report it as a pipeline error
        logger.exception("transcriber failed for session %s", session.session_id)
        await session._send(wire.pipeline_error(f"Transcriber failed: {exc}", False))
        return
    if not isinstance(text, str) or not text.strip():
        logger.info("session %s: utterance heard as nothing; no turn", session.session_id)
        return
    await messages.handle_utterance(core, session, text)
