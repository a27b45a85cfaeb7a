"""The character's voice: the default synthetic voice, and the one voice a turn speaks (loop thread for
:func:`synthesize`; the rest is pure).

Default voice (:func:`default_synthesizer`): a deterministic 440 Hz tone, PCM16 mono at 24 kHz, lasting
``VOICE_MS_PER_CHARACTER`` (20) ms per character of the reply, at least 200 ms. :func:`synthesize` gives a turn
its voice once: a voice the turn already made for its lip-sync (``SimSession._voice_cache``) is used rather than
synthesized again, so the frames and the audio come from the same samples.
"""

from __future__ import annotations

import array
import functools
import logging
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from simulator.core import wire

if TYPE_CHECKING:
    from simulator.core.sessions import SimSession
    from simulator.core.state import SimCore

logger = logging.getLogger("simulator.speech")

FRAME_SECONDS = 0.02
VOICE_RATE = 24_000
VOICE_MS_PER_CHARACTER = 20
MIN_VOICE_SECONDS = 0.2
TONE_HZ = 440.0
TONE_AMPLITUDE = 8000
Synthesizer = Callable[[str], tuple[bytes, int]]


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
    reporting a failing synthesizer to the client as a non-fatal pipeline error. A voice the turn already made
    for ``text`` (for its lip-sync) is used once rather than synthesized again."""
    cached = session._voice_cache
    if cached is not None:
        session._voice_cache = None
        if cached[0] == text:
            return cached[1]
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
