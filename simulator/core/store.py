"""The state-store seam: the plan state every worker must share (slots, connect-rate windows, end-user caps,
usage quotas, auth tokens, Long-Term Memory) behind one interface, and its in-memory implementation (loop thread
only).

A session lives on one worker; only this cross-session state is shared. :class:`LocalPlanStore` (the default) keeps it
in this process's :class:`~simulator.core.accounts.Accounts`, exactly as a single simulator always did;
:class:`simulator.core.redis_store.RedisStore` keeps it in Redis so several worker processes, on one machine or
many, enforce one plan. Each check-and-take is atomic in both: two connects can never both take the last slot,
nor both consume one single-use auth token.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Sequence
from typing import Protocol

from simulator.core.accounts import Accounts
from simulator.core.memory import MemoryStore, StoredMemory
from simulator.core.tokens import Refusal as TokenRefusal
from simulator.core.tokens import TokenStore


class Refusal(enum.Enum):
    """Why a ``/connect`` was refused by the plan (the checks run in this order)."""

    SPEAKER = "speaker_limit"
    CONCURRENCY = "concurrency_limit"
    RATE = "rate_limit"


class PlanStore(Protocol):
    """Cross-session plan state. Loop thread only; the coroutines never block the loop.

    ``round_trips`` counts the store's network round trips (0 in memory), for the bench; ``shared`` is True when
    other processes may share the store (then the control API reaches them too: ``simulator.http.fanout``).
    """

    round_trips: int
    shared: bool

    async def start(self) -> None:
        """Connect (and start any heartbeat); called once before the first connect is served."""

    async def close(self) -> None:
        """Stop the heartbeat and disconnect; the slots this process holds are released."""

    async def admit(self, api_key: str, end_user_id: str | None, session_id: str, *, take: bool = True
                    ) -> Refusal | None:
        """Check the speaker cap, the concurrency limit and the connect-rate window of ``api_key``, in that order,
        and when all pass (and ``take``) take a slot named ``session_id`` (counting the connect and noting the
        speaker), atomically. Returns the first check that failed, or None."""

    def release(self, api_key: str, session_id: str) -> None:
        """Free the slot ``session_id`` took (it may complete after this returns; never raises)."""

    async def try_interaction(self, api_key: str) -> bool:
        """Count one interaction of ``api_key``; False (not counted) when its usage quota is spent."""

    async def slots_in_use(self, api_key: str | None = None) -> int:
        """Slots held by ``api_key`` (or by every key) across every process sharing this store."""

    async def announce(self, url: str) -> None:
        """Name this process's own URL (``http://host:port``) to the others, for as long as it runs."""

    async def peers(self) -> list[str]:
        """The own URLs of the other live processes sharing this store."""

    async def owner(self, session_id: str) -> str | None:
        """The own URL of the process holding ``session_id``'s slot (None: unknown or ended)."""

    async def push_connect_fault(self, payload: str, times: int) -> None:
        """Queue a connect fault (``payload``: JSON ``[code, details]``) for the next ``times`` connects anywhere."""

    async def pop_connect_fault(self) -> str | None:
        """Consume one use of the oldest queued connect fault; its payload, or None when none is queued."""

    async def connect_faults(self) -> list[tuple[str, int]]:
        """The queued connect faults, oldest first: ``(payload, uses left)`` (for the state)."""

    async def reset(self, accounts: Accounts | None = None) -> None:
        """Forget the connect-rate windows, speakers, usage, queued connect faults, auth tokens and memories of
        every key, for every process sharing this store (slots stay held by their live sessions, which free them
        as they end); from now on read limits from ``accounts`` (the simulator's fresh ones) when given."""

    # ------------------------------------------------------------------ auth tokens (simulator.core.tokens)

    async def mint_token(self, api_key: str) -> tuple[str, str]:
        """A new auth token of ``api_key`` and its ``expirationTime`` (ISO 8601 UTC), as ``POST /user/connect``."""

    async def extend_token(self, api_key: str, token: str) -> str | None:
        """Restart ``token``'s lifetime; its new ``expirationTime``, or None when ``api_key`` did not mint it or it
        is revoked or expired."""

    async def revoke_token(self, api_key: str, token: str) -> bool:
        """No later ``/connect`` anywhere accepts ``token``; False when ``api_key`` did not mint it."""

    async def use_token(self, token: str) -> str | TokenRefusal:
        """At ``/connect``: the API key ``token`` stands for (consuming it, atomically, when tokens are single-use),
        or why not."""

    async def token_counts(self) -> dict[str, int]:
        """``{"tokens": remembered, "active": neither consumed, revoked nor expired}`` (never a token)."""

    # ------------------------------------------------------------------ memories (simulator.core.memory)

    async def memories(self, api_key: str, end_user_id: str, character_id: str) -> list[StoredMemory]:
        """The memories of the (end user, character) pair of ``api_key``, oldest first."""

    async def add_memories(self, api_key: str, end_user_id: str, character_id: str, texts: Sequence[str]
                           ) -> tuple[list[StoredMemory], int]:
        """Store the new ``texts`` (deduplicated case- and space-blind, at most
        :data:`~simulator.core.memory.MAX_MEMORIES_PER_PAIR` kept per pair, atomically); returns (added,
        duplicates)."""

    def remember(self, api_key: str, end_user_id: str, character_id: str, texts: Sequence[str]) -> None:
        """:meth:`add_memories` without waiting for it (a session's end; it may complete after this returns;
        never raises)."""

    async def get_memory(self, api_key: str, end_user_id: str, character_id: str, memory_id: str
                         ) -> StoredMemory | None:
        """One memory of the pair by id, or None."""

    async def delete_memory(self, api_key: str, end_user_id: str, character_id: str, memory_id: str) -> bool:
        """Forget one memory of the pair; False when there is none with that id."""

    async def delete_memories(self, api_key: str, end_user_id: str, character_id: str | None) -> int:
        """Forget the pair's memories, or the end user's with every character (None); returns how many."""


class LocalPlanStore:
    """The plan state of one process, in its :class:`Accounts`, a :class:`TokenStore` and a :class:`MemoryStore`
    (the default store; no I/O, no awaits inside a check-and-take, so the loop thread makes it atomic).

    Args:
        accounts: this process's accounts (keys, limits, slots, usage).
        tokens: the auth tokens (default: one-hour single-use tokens on ``time.monotonic``); a reset starts a
            fresh one with the same clock, lifetime and single-use rule.
        memories: the memories (default: empty).
    """

    round_trips = 0
    shared = False

    def __init__(self, accounts: Accounts, tokens: TokenStore | None = None, memories: MemoryStore | None = None
                 ) -> None:
        self._accounts = accounts
        self._faults: collections.deque[list[str | int]] = collections.deque()
        self.tokens = TokenStore(time.monotonic) if tokens is None else tokens
        self.memory = MemoryStore() if memories is None else memories

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def admit(self, api_key: str, end_user_id: str | None, session_id: str, *, take: bool = True
                    ) -> Refusal | None:
        accounts = self._accounts
        if accounts.speaker_blocked(api_key, end_user_id):
            return Refusal.SPEAKER
        if accounts.concurrency_blocked(api_key):
            return Refusal.CONCURRENCY
        if accounts.rate_blocked(api_key):
            return Refusal.RATE
        if take:
            accounts.admit(api_key, end_user_id)
        return None

    def release(self, api_key: str, session_id: str) -> None:
        self._accounts.release(api_key)

    async def try_interaction(self, api_key: str) -> bool:
        return self._accounts.try_interaction(api_key)

    async def slots_in_use(self, api_key: str | None = None) -> int:
        return self._accounts.slots_in_use(api_key)

    async def announce(self, url: str) -> None:
        return None

    async def peers(self) -> list[str]:
        return []

    async def owner(self, session_id: str) -> str | None:
        return None

    async def push_connect_fault(self, payload: str, times: int) -> None:
        self._faults.append([payload, times])

    async def pop_connect_fault(self) -> str | None:
        if not self._faults:
            return None
        entry = self._faults[0]
        entry[1] = int(entry[1]) - 1
        if int(entry[1]) <= 0:
            self._faults.popleft()
        return str(entry[0])

    async def connect_faults(self) -> list[tuple[str, int]]:
        return [(str(payload), int(uses)) for payload, uses in self._faults]

    async def reset(self, accounts: Accounts | None = None) -> None:
        self._faults.clear()
        self._accounts.reset()
        if accounts is not None:
            self._accounts = accounts
        self.tokens = self.tokens.fresh()
        self.memory = MemoryStore()

    async def mint_token(self, api_key: str) -> tuple[str, str]:
        token = self.tokens.mint(api_key)
        return token, self.tokens.expiration_time(token)

    async def extend_token(self, api_key: str, token: str) -> str | None:
        return self.tokens.expiration_time(token) if self.tokens.extend(api_key, token) else None

    async def revoke_token(self, api_key: str, token: str) -> bool:
        return self.tokens.revoke(api_key, token)

    async def use_token(self, token: str) -> str | TokenRefusal:
        return self.tokens.use(token)

    async def token_counts(self) -> dict[str, int]:
        return self.tokens.state()

    async def memories(self, api_key: str, end_user_id: str, character_id: str) -> list[StoredMemory]:
        return self.memory.memories(api_key, end_user_id, character_id)

    async def add_memories(self, api_key: str, end_user_id: str, character_id: str, texts: Sequence[str]
                           ) -> tuple[list[StoredMemory], int]:
        return self.memory.add(api_key, end_user_id, character_id, texts)

    def remember(self, api_key: str, end_user_id: str, character_id: str, texts: Sequence[str]) -> None:
        self.memory.add(api_key, end_user_id, character_id, texts)

    async def get_memory(self, api_key: str, end_user_id: str, character_id: str, memory_id: str
                         ) -> StoredMemory | None:
        return self.memory.get(api_key, end_user_id, character_id, memory_id)

    async def delete_memory(self, api_key: str, end_user_id: str, character_id: str, memory_id: str) -> bool:
        return self.memory.delete(api_key, end_user_id, character_id, memory_id)

    async def delete_memories(self, api_key: str, end_user_id: str, character_id: str | None) -> int:
        return self.memory.delete_all(api_key, end_user_id, character_id)
