"""Long-Term Memory: what characters remember of each end user, how it is extracted and recalled.

Convai's docs ("Long-Term Memory"): memories are extracted when a session ends and used at the next
connect of the same end user with the same character; deleting an end user removes its memories for
every character; the memory API lists (``page`` 1-1000, ``page_size`` 1-100, ``total_count``,
``has_more``), adds (deduplicated), gets, deletes and deletes all. The real extraction is an LLM's;
the simulator's is deterministic (PROPOSED), so tests can rely on it:

- extraction (:func:`extract`) keeps the user's sentences of the forms "my name is X", "I like X",
  "I love X", "I live in X", "my favorite K is V", "I am N years old", stored in the second person
  ("Your name is Ada.", "You like dragons.");
- recall (:func:`recall_reply`) answers a question about remembering ("Do you remember me?") with
  "You told me your name is Ada and that you like dragons." (other memories follow as
  "I also remember: ...").

Pure state and text, no I/O; owned by the loop thread.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

#: Memories kept per (end user, character); past it the oldest are forgotten.
MAX_MEMORIES_PER_PAIR = 1000
#: User sentences kept per session for extraction at its end.
MAX_HEARD_PER_SESSION = 200
MAX_MEMORY_CHARS = 2000

_VALUE = r"([^,;.!?]+?)"
_END = r"(?=\s+and\s+|\s*[,;.!?]|\s*$)"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"\bmy name is {_VALUE}{_END}", re.I), "Your name is {0}."),
    (re.compile(rf"\bmy favou?rite (\w+) is {_VALUE}{_END}", re.I), "Your favorite {0} is {1}."),
    (re.compile(rf"\bi live in {_VALUE}{_END}", re.I), "You live in {0}."),
    (re.compile(r"\bi am (\d{1,3}) years old\b", re.I), "You are {0} years old."),
    (re.compile(rf"\bi (?:really )?like {_VALUE}{_END}", re.I), "You like {0}."),
    (re.compile(rf"\bi (?:really )?love {_VALUE}{_END}", re.I), "You love {0}."),
)
_REMEMBER = re.compile(r"\b(remember|recall)\b|\bwhat do you know about me\b", re.I)


def extract(sentences: Iterable[str]) -> list[str]:
    """The memories in what the user said, in order of appearance, without repeats."""
    found: list[str] = []
    for sentence in sentences:
        hits: list[tuple[int, str]] = []
        for pattern, template in _PATTERNS:
            for match in pattern.finditer(sentence):
                values = [v.strip() for v in match.groups()]
                if all(values):
                    hits.append((match.start(), template.format(*values)))
        for _, memory in sorted(hits):
            if memory not in found:
                found.append(memory)
    return found


def asks_to_remember(text: str) -> bool:
    """True for a question about what the character remembers ("Do you remember me?")."""
    return _REMEMBER.search(text) is not None


def _clause(memory: str) -> str | None:
    """ "Your name is Ada." -> "your name is Ada"; None for a memory not in the second person."""
    body = memory.strip().rstrip(".")
    if body.startswith("Your ") or body.startswith("You "):
        return body[0].lower() + body[1:]
    return None


def recall_reply(memories: list[str]) -> str:
    """The character's answer to "Do you remember me?" naming every remembered fact."""
    if not memories:
        return "I'm sorry, I don't remember anything about you yet."
    clauses = [c for c in (_clause(m) for m in memories) if c is not None]
    others = [m.strip() for m in memories if _clause(m) is None]
    parts: list[str] = []
    if clauses:
        parts.append("You told me " + " and that ".join(clauses) + ".")
    if others:
        parts.append("I also remember: " + " ".join(o if o.endswith(".") else o + "." for o in others))
    return " ".join(parts)


@dataclass(frozen=True)
class StoredMemory:
    memory_id: str
    text: str
    end_user_id: str
    character_id: str
    created_at: str  # ISO 8601 UTC

    def as_json(self) -> dict[str, str]:
        return {"memory_id": self.memory_id, "text": self.text, "end_user_id": self.end_user_id,
                "character_id": self.character_id, "created_at": self.created_at}


def dedup_key(text: str) -> str:
    """What two memories are compared by: case- and space-blind, without a final full stop."""
    return " ".join(text.lower().split()).rstrip(".")


class MemoryStore:
    """Memories per (end user, character) of one API key account; insertion order kept."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[str, str, str], list[StoredMemory]] = {}
        self._ids = itertools.count(1)

    def memories(self, api_key: str, end_user_id: str, character_id: str) -> list[StoredMemory]:
        return list(self._pairs.get((api_key, end_user_id, character_id), ()))

    def add(self, api_key: str, end_user_id: str, character_id: str,
            texts: Iterable[str]) -> tuple[list[StoredMemory], int]:
        """Store the new ``texts``; returns (added, duplicates), comparing case- and space-blind."""
        pair = self._pairs.setdefault((api_key, end_user_id, character_id), [])
        known = {dedup_key(m.text) for m in pair}
        added: list[StoredMemory] = []
        duplicates = 0
        for text in texts:
            key = dedup_key(text)
            if key in known:
                duplicates += 1
                continue
            known.add(key)
            memory = StoredMemory(f"mem-{next(self._ids)}", text.strip(), end_user_id, character_id,
                                  datetime.now(timezone.utc).isoformat())
            pair.append(memory)
            added.append(memory)
        del pair[:-MAX_MEMORIES_PER_PAIR]
        return added, duplicates

    def get(self, api_key: str, end_user_id: str, character_id: str, memory_id: str) -> StoredMemory | None:
        for memory in self._pairs.get((api_key, end_user_id, character_id), ()):
            if memory.memory_id == memory_id:
                return memory
        return None

    def delete(self, api_key: str, end_user_id: str, character_id: str, memory_id: str) -> bool:
        pair = self._pairs.get((api_key, end_user_id, character_id))
        if pair is None:
            return False
        for index, memory in enumerate(pair):
            if memory.memory_id == memory_id:
                del pair[index]
                return True
        return False

    def delete_all(self, api_key: str, end_user_id: str, character_id: str | None) -> int:
        """Forget the pair's memories, or the end user's with every character (None); returns how many."""
        keys = [k for k in self._pairs if k[0] == api_key and k[1] == end_user_id
                and (character_id is None or k[2] == character_id)]
        return sum(len(self._pairs.pop(k)) for k in keys)

    def count(self) -> int:
        return sum(len(v) for v in self._pairs.values())
