"""The simulated character: a deterministic default reply, chunking, and one turn's frame sequence.
Values and pure functions, usable from any thread; a turn's frames are sent on the loop thread.

A turn follows the reference sequence of Convai's turn-lifecycle docs (a subset):
``final-user-transcription`` -> ``bot-llm-started`` -> ``bot-llm-text`` x N -> ``bot-llm-stopped`` ->
``action-response`` -> ``bot-emotion`` -> ``bot-tts-started`` (TTS on only) -> ``bot-started-speaking`` ->
``bot-stopped-speaking`` -> ``bot-turn-completed{was_interrupted}``. A reply of None sends
``llm-no-response`` (reason ``"abstain"``) instead of the bot part.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from simulator.core import wire

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


async def play_turn(
    send: SendFrame,
    reply: str,
    turn: Turn,
    *,
    tts_enabled: bool,
    chunk_delay: float,
    speak: Speak | None = None,
) -> bool:
    """Stream the bot part of a turn; returns False when the session stopped accepting frames.

    With TTS on, ``speak`` voices the reply between ``bot-started-speaking`` and ``bot-stopped-speaking``
    (the stopped message goes out once the last audio frame has been sent).
    """
    if not await send(wire.form_a("bot-llm-started")):
        return False
    for chunk in split_chunks(reply):
        if turn.interrupted:
            break
        if not await send(wire.form_a("bot-llm-text", {"text": chunk})):
            return False
        if chunk_delay > 0:
            await asyncio.sleep(chunk_delay)
    if not await send(wire.form_a("bot-llm-stopped")):
        return False
    if turn.interrupted:
        return await send(wire.turn_completed(True))
    emotion, scale = emotion_for(reply)
    frames = [wire.form_b("action-response", actions=[]), wire.form_b("bot-emotion", emotion=emotion, scale=scale)]
    if tts_enabled:
        frames.append(wire.form_a("bot-tts-started"))
    frames.append(wire.speaking("bot-started-speaking"))
    for frame in frames:
        if not await send(frame):
            return False
    if chunk_delay > 0:
        await asyncio.sleep(chunk_delay)
    if speak is not None and tts_enabled:
        await speak(reply, lambda: turn.interrupted)
    if not await send(wire.speaking("bot-stopped-speaking")):
        return False
    return await send(wire.turn_completed(turn.interrupted))


async def play_no_response(send: SendFrame) -> bool:
    """The reply to a responder that returned None."""
    return await send(wire.form_b("llm-no-response", reason="abstain"))
