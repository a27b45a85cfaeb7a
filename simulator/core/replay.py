"""Serve a recorded session back: ``Simulator(replay=PATH)`` / ``convai-sim --replay PATH`` (loop thread).

The recording is the JSON-lines file ``convai_sync`` writes with ``ConvaiConfig(record_to=PATH)``
(``convai_sync.recorder``). Each ``user_text_message`` the client sent starts a recorded turn: the
messages that came back after it, until the next one, with their times relative to it. A replaying
session's n-th ``user_text_message`` (counted per ``character_session_id``, so a resumed conversation goes
on where it was) is answered with the recorded turn n when its text is the same: the recorded messages are
sent at their recorded offsets (divided by ``speed``). Anything else (different text, or more inputs than
the recording holds) is reported (logged, and kept in :attr:`Replay.mismatches`, shown by
``GET /_sim/state``) and answered by the default character. The input's acknowledgement
(``server-response``) and ``final-user-transcription`` carry the live message's ids, and the final
``user-transcription`` echo of typed text is the simulator's own too, so it sends those itself either way and
skips the recorded ones.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.core import wire

if TYPE_CHECKING:
    from simulator.core.sessions import SimSession

logger = logging.getLogger("simulator.replay")

#: Mismatches kept for ``GET /_sim/state`` (oldest dropped first).
MISMATCHES_KEPT = 100
#: Conversations whose place in the recording is remembered (least recently used forgotten first).
MAX_CURSORS = 10_000
#: Client message types that start a turn.
INPUT_TYPE = "user_text_message"


class ReplayError(ValueError):
    """The recording cannot be read (the message names the file and line)."""


@dataclass(frozen=True)
class RecordedTurn:
    """One recorded input and what came back: ``(seconds after the input, frame)`` pairs."""

    text: str
    replies: tuple[tuple[float, Any], ...]


@dataclass
class Replay:
    """A loaded recording and the replay's progress (loop thread only after loading)."""

    path: str
    turns: tuple[RecordedTurn, ...]
    speed: float = 1.0
    #: Inputs that did not match, as ``{"session_id", "index", "got", "expected"}`` (newest last).
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    _cursor: collections.OrderedDict[str, int] = field(default_factory=collections.OrderedDict)

    def restart(self) -> None:
        """From the first recorded turn again, with no mismatch (``POST /_sim/reset``)."""
        self._cursor.clear()
        self.mismatches.clear()

    def describe(self) -> dict[str, Any]:
        """JSON-able, for ``GET /_sim/state``."""
        return {"path": self.path, "turns": len(self.turns), "speed": self.speed,
                "mismatches": list(self.mismatches)}

    def turn_for(self, session: SimSession, text: str) -> RecordedTurn | None:
        """The recorded turn answering ``session``'s next input ``text``, or None (reported) when it does
        not match the recording."""
        key = session.character_session_id
        index = self._cursor.get(key, 0)
        expected = self.turns[index].text if index < len(self.turns) else None
        if expected == text:
            self._cursor[key] = index + 1
            self._cursor.move_to_end(key)
            while len(self._cursor) > MAX_CURSORS:
                self._cursor.popitem(last=False)
            return self.turns[index]
        report = {"session_id": session.session_id, "index": index, "got": text, "expected": expected}
        self.mismatches.append(report)
        del self.mismatches[:-MISMATCHES_KEPT]
        logger.warning("replay %s: input #%d of session %s was %r, the recording has %s; answered by the default "
                       "character", self.path, index + 1, session.session_id, text,
                       "no more inputs" if expected is None else repr(expected))
        return None

    async def play(self, session: SimSession, turn: RecordedTurn) -> None:
        """Send ``turn``'s recorded messages at their recorded offsets (scaled by :attr:`speed`)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for offset, frame in turn.replies:
            delay = start + offset / self.speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = await session._send_text(frame if isinstance(frame, str) else wire.encode(frame))
            if not sent:
                return


def _event_type(frame: Any) -> str | None:
    """Convai's demux rule: ``data.type`` of a ``server-message``, else ``type``."""
    if not isinstance(frame, dict):
        return None
    data = frame.get("data")
    if frame.get("type") == "server-message" and isinstance(data, dict) and isinstance(data.get("type"), str):
        return str(data["type"])
    kind = frame.get("type")
    return kind if isinstance(kind, str) else None


def _sent_live(frame: Any) -> bool:
    """True for the frames the replaying simulator sends itself: the input's ack and its transcription
    (they carry the live message's ids) and the final ``user-transcription`` echoing the typed text."""
    kind = _event_type(frame)
    if kind == "server-response":
        return isinstance(frame, dict) and frame.get("event_type") == INPUT_TYPE
    if kind == "user-transcription":
        data = frame.get("data") if isinstance(frame, dict) else None
        return isinstance(data, dict) and data.get("final") is True
    return kind == "final-user-transcription"


def load_replay(path: str | Path, speed: float = 1.0) -> Replay:
    """Read a ``convai_sync`` recording. Raises :class:`ReplayError` (a ValueError) naming the file and line
    for a file that cannot be read or a line that is not a recording's, and for a bad ``speed``."""
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed < float("inf"):
        raise ReplayError(f"replay_speed must be a number > 0, got {speed!r}")
    name = str(path)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayError(f"cannot read the recording {name!r}: {exc}") from None
    turns: list[RecordedTurn] = []
    text: str | None = None
    started = 0.0
    replies: list[tuple[float, Any]] = []
    collecting = False  # a connection's end or a new connection ends the turn being collected
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            moment = float(entry["t"])
        except (ValueError, KeyError, TypeError):
            raise ReplayError(f"{name} line {number}: not a convai_sync recording line") from None
        frame = entry.get("frame", entry.get("text"))
        if entry.get("dir") == "out" and isinstance(frame, dict) and frame.get("type") == INPUT_TYPE:
            if text is not None:
                turns.append(RecordedTurn(text, tuple(replies)))
            data = frame.get("data")
            text = str(data.get("text", "")) if isinstance(data, dict) else ""
            started, replies, collecting = moment, [], True
        elif entry.get("event") in ("open", "closed"):
            collecting = False
        elif entry.get("dir") == "in" and collecting and frame is not None and not _sent_live(frame):
            replies.append((max(0.0, moment - started), frame))
    if text is not None:
        turns.append(RecordedTurn(text, tuple(replies)))
    logger.info("replaying %s: %d recorded turns", name, len(turns))
    return Replay(name, tuple(turns), float(speed))
