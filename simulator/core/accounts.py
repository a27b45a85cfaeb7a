"""Accounts and plan limits as real state: keys, characters, slots, speakers, rate windows, usage, history.

Everything here runs on the simulator's loop thread only (no locks). Per-key state is a few counters, so
thousands of sessions stay cheap.
"""

from __future__ import annotations

import collections
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

logger = logging.getLogger("simulator.accounts")

#: Conversations (``character_session_id`` histories) remembered by default; the least recently used
#: is forgotten first, and resuming a forgotten one behaves like resuming an unknown id.
DEFAULT_MAX_CONVERSATIONS = 10_000


@dataclass
class Conversation:
    """History of one ``character_session_id`` (kept across connects so resumes are observable).

    Only the turn count is kept (the reply names it): a few hundred bytes per conversation.
    """

    character_session_id: str
    api_key: str = field(repr=False)
    character_id: str
    turn_count: int = 0

    def record(self, user_text: str, reply: str) -> None:
        """Count one completed turn (``user_text`` and ``reply`` are not stored)."""
        self.turn_count += 1


#: Speaker ids one key may create without a ``speaker_limit`` (keeps a looping client from growing memory).
MAX_SPEAKER_IDS = 10_000


@dataclass
class _KeyState:
    slots: int = 0
    speakers: set[str] = field(default_factory=set)
    #: ``POST /user/speaker/new``: the speaker id each device id got (the same id every time).
    speaker_ids: dict[str, str] = field(default_factory=dict)
    connects: collections.deque[float] = field(default_factory=collections.deque)
    interactions: int = 0


@dataclass
class Limits:
    """Plan limits; ``None`` means unlimited / off."""

    concurrency_limit: int | None = None
    speaker_limit: int | None = None
    connect_rate_limit: int | None = None
    connect_rate_window: float = 60.0
    usage_quota: int | None = None
    realtime_allowed: bool = True


class Accounts:
    """API keys, characters, and every per-key limit."""

    def __init__(
        self,
        api_keys: Iterable[str],
        characters: Iterable[str],
        limits: Limits,
        clock: Callable[[], float] = time.monotonic,
        max_conversations: int = DEFAULT_MAX_CONVERSATIONS,
    ) -> None:
        self.api_keys: tuple[str, ...] = tuple(api_keys)
        self.characters: tuple[str, ...] = tuple(characters)
        if not self.api_keys:
            raise ValueError("api_keys must name at least one key")
        if not self.characters:
            raise ValueError("characters must name at least one character")
        self.limits = limits
        self._clock = clock
        self._keys: dict[str, _KeyState] = {key: _KeyState() for key in self.api_keys}
        if isinstance(max_conversations, bool) or not isinstance(max_conversations, int) or max_conversations < 1:
            raise ValueError(f"max_conversations must be a positive int, got {max_conversations!r}")
        self.max_conversations = max_conversations
        # Least recently used first: a /connect moves its conversation to the end.
        self._conversations: collections.OrderedDict[str, Conversation] = collections.OrderedDict()

    # ------------------------------------------------------------------ lookups

    def knows_key(self, api_key: str) -> bool:
        return api_key in self._keys

    def knows_character(self, character_id: str) -> bool:
        return character_id in self.characters

    def slots_in_use(self, api_key: str | None = None) -> int:
        """Concurrency slots held by ``api_key`` (or by every key)."""
        if api_key is None:
            return sum(state.slots for state in self._keys.values())
        state = self._keys.get(api_key)
        return 0 if state is None else state.slots

    # ------------------------------------------------------------------ connect-time checks

    def speaker_blocked(self, api_key: str, end_user_id: str | None) -> bool:
        """True when ``end_user_id`` is a new speaker and the key's distinct-speaker limit is reached."""
        limit = self.limits.speaker_limit
        if limit is None or end_user_id is None:
            return False
        speakers = self._keys[api_key].speakers
        return end_user_id not in speakers and len(speakers) >= limit

    def speaker_id(self, api_key: str, device_id: str) -> str | None:
        """The speaker id of ``device_id`` for this key, created on first use (PROPOSED ``/user/speaker/new``);
        None when it is a new speaker and the key's distinct-speaker limit is reached. The device counts as a
        speaker as ``/connect``'s ``end_user_id`` does (the Web SDK sends the same value as both)."""
        state = self._keys[api_key]
        known = state.speaker_ids.get(device_id)
        if known is not None:
            return known
        if self.speaker_blocked(api_key, device_id) or len(state.speaker_ids) >= MAX_SPEAKER_IDS:
            return None
        if self.limits.speaker_limit is not None:
            state.speakers.add(device_id)
        state.speaker_ids[device_id] = str(uuid.uuid4())
        return state.speaker_ids[device_id]

    def concurrency_blocked(self, api_key: str) -> bool:
        limit = self.limits.concurrency_limit
        return limit is not None and self._keys[api_key].slots >= limit

    def rate_blocked(self, api_key: str) -> bool:
        """True when the key made ``connect_rate_limit`` accepted connects within the window."""
        limit = self.limits.connect_rate_limit
        if limit is None:
            return False
        window = self._keys[api_key].connects
        horizon = self._clock() - self.limits.connect_rate_window
        while window and window[0] <= horizon:
            window.popleft()
        return len(window) >= limit

    def admit(self, api_key: str, end_user_id: str | None) -> None:
        """Record an accepted connect: take a slot, count it for the rate window, note the speaker."""
        state = self._keys[api_key]
        self.take_slot(api_key)
        if self.limits.connect_rate_limit is not None:
            state.connects.append(self._clock())
        if end_user_id is not None and self.limits.speaker_limit is not None:
            state.speakers.add(end_user_id)

    def take_slot(self, api_key: str) -> None:
        """Count one more slot held by ``api_key`` in this process (no check)."""
        state = self._keys[api_key]
        state.slots += 1
        logger.debug("slot taken: %d in use for this key", state.slots)

    def release(self, api_key: str) -> None:
        """Free one concurrency slot of ``api_key``."""
        state = self._keys[api_key]
        if state.slots <= 0:
            logger.error("slot release without a held slot (bookkeeping bug)")
            return
        state.slots -= 1
        logger.debug("slot freed: %d in use for this key", state.slots)

    # ------------------------------------------------------------------ usage quota

    def try_interaction(self, api_key: str) -> bool:
        """Count one interaction; False (not counted) when the key's usage quota is exhausted."""
        state = self._keys[api_key]
        quota = self.limits.usage_quota
        if quota is not None and state.interactions >= quota:
            return False
        state.interactions += 1
        return True

    def reset(self) -> None:
        """Forget every key's connect-rate window, speakers and usage (slots stay with their live sessions)."""
        for state in self._keys.values():
            state.connects.clear()
            state.speakers.clear()
            state.interactions = 0

    def interactions(self, api_key: str) -> int:
        state = self._keys.get(api_key)
        return 0 if state is None else state.interactions

    # ------------------------------------------------------------------ conversations

    @property
    def conversation_count(self) -> int:
        """Conversations remembered now (at most :attr:`max_conversations`)."""
        return len(self._conversations)

    def conversation_owner(self, character_session_id: str) -> str | None:
        conv = self._conversations.get(character_session_id)
        return None if conv is None else conv.api_key

    def conversation(self, character_session_id: str, api_key: str, character_id: str) -> Conversation:
        """The conversation for ``character_session_id``, created when new or forgotten (resume keeps
        history); forgets the least recently used conversations beyond :attr:`max_conversations`.

        A live session keeps its own conversation object, so forgetting one only affects later resumes.
        """
        conv = self._conversations.get(character_session_id)
        if conv is None:
            conv = Conversation(character_session_id, api_key, character_id)
            self._conversations[character_session_id] = conv
            while len(self._conversations) > self.max_conversations:
                self._conversations.popitem(last=False)
        else:
            self._conversations.move_to_end(character_session_id)
        return conv
