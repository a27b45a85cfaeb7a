"""Long-Term Memory at work in sessions: what an LTM character hears, extracts at session end, recalls.

For a character defined with ``"long_term_memory": true`` and a session with an ``end_user_id`` (which
``/connect`` requires for such a character), the user's words are kept for the session's length
(:meth:`SessionMemory.heard`); when the session ends they are turned into memories of the (end user,
character) pair (:meth:`SessionMemory.session_ended`, extraction as :func:`simulator.core.memory.extract`);
at a later session, a question about remembering is answered from them (:meth:`SessionMemory.recall`).
The memories live in the plan store (``simulator.core.store``), so with workers sharing one a session on any
worker recalls what a session on another remembered. Loop thread only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.core import memory

if TYPE_CHECKING:
    from simulator.core.sessions import SimSession
    from simulator.core.store import PlanStore


def _remembers(session: SimSession) -> bool:
    return session._character.long_term_memory and session.end_user_id is not None


class SessionMemory:
    """The plan store holding the memories, and what the user said in each live LTM session (by session id)."""

    def __init__(self, store: PlanStore) -> None:
        self.store = store
        self._heard: dict[str, list[str]] = {}

    def heard(self, session: SimSession, text: str) -> None:
        """Keep what the user said (bounded) for extraction at the session's end."""
        if not _remembers(session):
            return
        said = self._heard.setdefault(session.session_id, [])
        if len(said) < memory.MAX_HEARD_PER_SESSION:
            said.append(text[: memory.MAX_MEMORY_CHARS])

    async def recall(self, session: SimSession, text: str) -> str | None:
        """The reply to a question about remembering the user, or None (not an LTM session, or not such a
        question)."""
        if not _remembers(session) or not memory.asks_to_remember(text):
            return None
        assert session.end_user_id is not None
        known = await self.store.memories(session.api_key, session.end_user_id, session.character_id)
        return memory.recall_reply([m.text for m in known])

    def session_ended(self, session: SimSession) -> None:
        """Extract the session's memories into the store (written without waiting: ``PlanStore.remember``)."""
        said = self._heard.pop(session.session_id, None)
        if said and _remembers(session):
            assert session.end_user_id is not None
            found = memory.extract(said)
            if found:
                self.store.remember(session.api_key, session.end_user_id, session.character_id, found)
