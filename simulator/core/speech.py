"""The character's ears, and its voice's names (from :mod:`simulator.core.voice`), shared by both carriers
(pure Python: no media packages). The detector math is pure; the turn-starting coroutines run on the loop thread.

Hearing (:class:`UtteranceDetector`): a chunk of user audio is speech when its peak reaches ``SPEECH_PEAK``
(about -30 dBFS); an utterance starts with the first speech chunk and ends after ``END_OF_UTTERANCE_SILENCE``
seconds of audio without speech (audio time, not wall time: a client may send faster than real time), or when
the audio stops for good; its trailing silence is cut. One utterance keeps at most ``MAX_UTTERANCE_SECONDS``
(60 s) and at most ``MAX_UTTERANCE_BYTES`` (60 s of 48 kHz stereo PCM16, 11.52 MB) for the transcriber: beyond
either, its oldest audio is dropped (and still counted as heard), so 192 kHz x 8 channels cannot make one
utterance hold 184 MB. The default transcriber describes the audio:
``"[audio 1.20 s]"``. :func:`heard_started` / :func:`heard_utterance` are what the character does then (the
same on LiveKit and on the WebSocket): ``user-started-speaking``, which interrupts a reply in progress
(barge-in); ``user-stopped-speaking``, the transcriber, and the reply through
:func:`simulator.core.messages.handle_utterance`.
"""

from __future__ import annotations

import array
import logging
import sys
from collections import deque
from collections.abc import Awaitable, Callable

from simulator.core import messages, wire
from simulator.core.sessions import Phase, SimSession
from simulator.core.state import SimCore
from simulator.core.voice import FRAME_SECONDS as FRAME_SECONDS  # re-exported: the voice's names, as before
from simulator.core.voice import MIN_VOICE_SECONDS as MIN_VOICE_SECONDS
from simulator.core.voice import TONE_AMPLITUDE as TONE_AMPLITUDE
from simulator.core.voice import TONE_HZ as TONE_HZ
from simulator.core.voice import VOICE_MS_PER_CHARACTER as VOICE_MS_PER_CHARACTER
from simulator.core.voice import VOICE_RATE as VOICE_RATE
from simulator.core.voice import Synthesizer as Synthesizer
from simulator.core.voice import check_voice as check_voice
from simulator.core.voice import default_synthesizer as default_synthesizer
from simulator.core.voice import synthesize as synthesize
from simulator.core.voice import tone as tone
from simulator.core.voice import voice_seconds as voice_seconds

logger = logging.getLogger("simulator.speech")

#: Peak sample value from which a chunk counts as speech (about -30 dBFS).
SPEECH_PEAK = 1000
END_OF_UTTERANCE_SILENCE = 0.5
#: Longest utterance kept for the transcriber (older audio is dropped, still counted).
MAX_UTTERANCE_SECONDS = 60.0
#: Most bytes one utterance keeps for the transcriber, whatever its format (60 s of 48 kHz stereo PCM16).
MAX_UTTERANCE_BYTES = 60 * 48_000 * 2 * 2

Transcriber = Callable[[bytes, int, int], str]


def default_transcriber(pcm: bytes, sample_rate: int, num_channels: int) -> str:
    """The default hearing: describes the utterance's duration, e.g. ``"[audio 1.20 s]"``."""
    seconds = len(pcm) / (2 * num_channels * sample_rate) if sample_rate and num_channels else 0.0
    return f"[audio {seconds:.2f} s]"


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
        self._bytes = 0
        self._speaking = False
        self._silence = 0.0
        self._trailing = 0  # silent chunks at the end of _pcm
        self._format = (48_000, 1)

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def buffered_bytes(self) -> int:
        """PCM16 bytes the utterance in progress holds (at most about ``MAX_UTTERANCE_BYTES``)."""
        return self._bytes

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
        self._bytes += len(pcm)
        if loud:
            self._silence, self._trailing = 0.0, 0
        else:
            self._silence += seconds
            self._trailing += 1
        bytes_per_second = 2 * num_channels * sample_rate
        while (self._kept > MAX_UTTERANCE_SECONDS or self._bytes > MAX_UTTERANCE_BYTES) \
                and len(self._pcm) > self._trailing + 1:
            dropped = len(self._pcm.popleft())
            self._kept -= dropped / bytes_per_second
            self._bytes -= dropped
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
        self._bytes = 0
        rate, channels = self._format
        await self._on_utterance(pcm, rate, channels)


async def heard_started(session: SimSession) -> None:
    """The user started speaking: ``user-started-speaking``, and a reply in progress is interrupted
    (barge-in, as Convai's voice pipeline does: its voice stops, ``bot-turn-completed`` says
    ``was_interrupted``)."""
    await session._send(wire.form_a("user-started-speaking"))
    turn = session._turn
    if turn is not None and not turn.finished and not turn.interrupted:
        turn.interrupted = True
        logger.info("session %s: the user's voice interrupts the reply (barge-in)", session.session_id)


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
