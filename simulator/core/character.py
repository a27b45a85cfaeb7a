"""The simulated character: a deterministic default reply, chunking, and one turn's frame sequence.
Values and pure functions, usable from any thread; a turn's frames are sent on the loop thread.

A turn follows the reference sequence of Convai's turn-lifecycle docs (a subset):
``final-user-transcription`` -> ``bot-llm-started`` -> ``bot-llm-text`` x N -> ``bot-llm-stopped`` ->
``action-response`` -> ``bot-emotion`` -> ``bot-tts-started`` (TTS on only) -> ``bot-started-speaking`` ->
``bot-stopped-speaking`` -> ``bot-turn-completed{was_interrupted}``. A reply of None sends
``llm-no-response`` (reason ``"abstain"``) instead of the bot part. The character's per-stage delays pause
before the first text and before the voice; lip-sync frames (:mod:`simulator.core.lipsync`) stream beside the
voice and end with ``blendshape-turn-stats`` before ``bot-stopped-speaking``; with ``debug: true``
``metrics`` (:mod:`simulator.core.timings`) follow the first text, the voice's start, and precede
``bot-turn-completed``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from simulator.core import wire
from simulator.core.characters import StageDelays
from simulator.core.timings import TurnClock

logger = logging.getLogger("simulator.character")

#: A character's brain: user text in, reply text out (None = stay silent).
Responder = Callable[[str], str | None]
#: Sends one frame; False when the session can no longer send.
SendFrame = Callable[[wire.JsonDict], Awaitable[bool]]
#: Voices a reply: (text, stop) -> returns once the last audio was sent; ``stop()`` True ends it early.
Speak = Callable[[str, Callable[[], bool]], Awaitable[None]]

DEFAULT_CHUNKS = 4
_BOUNDARY = re.compile(r"(?<=\s)(?=\S)")


#: Punctuation that already ends a sentence (possibly inside closing quotes or brackets).
_SENTENCE_END = (".", "!", "?", "\u2026")
_CLOSERS = "\"')]}\u00bb\u201d\u2019"
_SEPARATORS = ",;:"


def _as_sentence(text: str) -> str:
    """``text`` ending in exactly one full stop: ``"Hello!"`` stays, ``"Hello"`` and ``"Hello,"`` become
    ``"Hello."``."""
    sentence = text.strip()
    if sentence.rstrip(_SEPARATORS):
        sentence = sentence.rstrip(_SEPARATORS)
    if sentence.rstrip(_CLOSERS).endswith(_SENTENCE_END):
        return sentence
    return f"{sentence}."


def default_reply(text: str, turn_number: int) -> str:
    """The scripted reply: echoes the text and names the turn (so resumed history is observable).

    Deterministic: ``default_reply("Hello!", 1)`` is ``"You said: Hello! This is turn 1 of our
    conversation. I am a simulated Convai character."``; text without final punctuation gets a full stop.
    """
    return (
        f"You said: {_as_sentence(text)} This is turn {turn_number} of our conversation. "
        "I am a simulated Convai character."
    )


def split_chunks(reply: str, max_chunks: int = DEFAULT_CHUNKS) -> list[str]:
    """Split ``reply`` on word boundaries into at most ``max_chunks`` pieces whose concatenation is it."""
    if not reply:
        return []
    words = _BOUNDARY.split(reply)
    count = max(1, min(max_chunks, len(words)))
    size, extra = divmod(len(words), count)
    chunks: list[str] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        chunks.append("".join(words[start:end]))
        start = end
    return chunks


def emotion_for(reply: str) -> tuple[str, int]:
    """A deterministic turn-level emotion (``bot-emotion``: emotion name, scale 1..3)."""
    if "?" in reply:
        return "curiosity", 2
    if "!" in reply:
        return "joy", 3
    return "joy", 1


@dataclass
class Turn:
    """One reply being played; ``interrupted`` is set by ``interrupt-bot``."""

    interrupted: bool = False
    finished: bool = False


#: Runs a turn's lip-sync beside its voice: (stop, voice_done) -> False when the session cannot send.
Animate = Callable[[Callable[[], bool], asyncio.Event], Awaitable[bool]]
NO_DELAYS = StageDelays(0.0, 0.0, 0.0)


async def _pause(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def play_turn(
    send: SendFrame,
    reply: str,
    turn: Turn,
    *,
    tts_enabled: bool,
    chunk_delay: float,
    speak: Speak | None = None,
    actions: Sequence[wire.JsonDict] = (),
    delays: StageDelays = NO_DELAYS,
    animate: Animate | None = None,
    clock: TurnClock | None = None,
) -> bool:
    """Stream the bot part of a turn; returns False when the session stopped accepting frames.

    With TTS on, ``speak`` voices the reply between ``bot-started-speaking`` and ``bot-stopped-speaking``
    (the stopped message goes out once the last audio frame has been sent) while ``animate`` streams its
    lip-sync. ``actions`` is the ``action-response`` list; ``delays`` pause before the first text chunk
    (``llm_first_token``) and before the voice (``tts_first_audio``); with a ``clock`` (``debug: true``) the
    turn sends ``metrics``.
    """
    if not await send(wire.form_a("bot-llm-started")):
        return False
    now = asyncio.get_running_loop().time
    if clock is not None:
        clock.llm_started = now()
    await _pause(delays.llm_first_token)
    for index, chunk in enumerate(split_chunks(reply)):
        if turn.interrupted:
            break
        if not await send(wire.form_a("bot-llm-text", {"text": chunk})):
            return False
        if index == 0 and clock is not None:
            clock.first_text = now()
            if not await send(clock.llm_ttfb()):
                return False
        if chunk_delay > 0:
            await asyncio.sleep(chunk_delay)
    if not await send(wire.form_a("bot-llm-stopped")):
        return False
    if clock is not None:
        clock.llm_stopped = now()
    if turn.interrupted:
        return await send(wire.turn_completed(True))
    emotion, scale = emotion_for(reply)
    frames = [wire.form_b("action-response", actions=list(actions)),
              wire.form_b("bot-emotion", emotion=emotion, scale=scale)]
    if tts_enabled:
        frames.append(wire.form_a("bot-tts-started"))
    for frame in frames:
        if not await send(frame):
            return False
    if clock is not None:
        clock.tts_started = now()
    if tts_enabled:
        await _pause(delays.tts_first_audio)
    if not await send(wire.speaking("bot-started-speaking")):
        return False
    if chunk_delay > 0:
        await asyncio.sleep(chunk_delay)
    if speak is not None and tts_enabled:
        if clock is not None:
            clock.first_audio = now()
            if not await send(clock.tts_ttfb()):
                return False
        voice_done = asyncio.Event()
        animation = None
        if animate is not None:
            animation = asyncio.ensure_future(animate(lambda: turn.interrupted, voice_done))
        try:
            await speak(reply, lambda: turn.interrupted)
        except BaseException:  # a cancelled turn (the session ended) takes its animation with it
            if animation is not None:
                animation.cancel()
            raise
        finally:
            voice_done.set()
        if animation is not None and not await animation:
            return False
        if clock is not None:
            clock.audio_done = now()
    if not await send(wire.speaking("bot-stopped-speaking")):
        return False
    if clock is not None and not await send(clock.processing()):
        return False
    return await send(wire.turn_completed(turn.interrupted))


async def play_no_response(send: SendFrame) -> bool:
    """The reply to a responder that returned None."""
    return await send(wire.form_b("llm-no-response", reason="abstain"))
