"""The plan state in Redis, shared by every worker process of one simulator (loop thread only; ``redis.asyncio``,
so no call blocks the loop).

Every check-and-take is one Lua script, which Redis runs atomically: two workers can never both take the last
slot, nor both make the last connect of a rate window or the last interaction of a quota, nor both consume one
single-use auth token, nor both add one memory. Times inside the scripts are Redis's own clock (``TIME``), so
workers on several machines agree without synchronised clocks (auth tokens therefore age on Redis's wall clock,
not on a simulator's virtual ``clock``).

Keys (``PREFIX`` + the API key's SHA-256, so no key appears in Redis or its logs):

- ``slots:<key>``: sorted set of session ids, scored by their lease's expiry (ms). The worker holding a session
  renews its lease every ``lease / 3`` seconds; a worker that dies stops renewing, and its slots are dropped by
  the next check once the lease ends: **a crashed worker's slots are free again within ``lease`` seconds**
  (:data:`DEFAULT_LEASE`, 15 s; ``convai-sim --slot-lease``).
- ``connects:<key>``: sorted set of accepted connects by time, trimmed to the rate window.
- ``speakers:<key>``: set of the distinct ``end_user_id`` values seen.
- ``interactions:<key>``: counter of interactions.
- ``worker:<id>``: a live worker's own URL (expires with its lease); ``owner:<session id>``: the own URL of the
  worker holding that session (renewed with its slot) — the control API forwards a session's requests there.
- ``connect-faults`` / ``connect-fault-uses``: the queued connect faults (JSON ``[code, details]``) and their
  remaining uses, consumed by whichever worker a ``/connect`` reaches.
- ``token:<token's SHA-256>``: an auth token (hash: ``k`` its API key's SHA-256, ``exp`` expiry in ms, ``c``
  consumed, ``r`` revoked; the token itself is never stored). It is kept one more lifetime past its expiry (so a
  late ``/connect`` hears "expired"), then forgotten ("unknown").
- ``memories:<key>:<end user's SHA-256>:<character's SHA-256>``: a pair's memories, oldest first (list of JSON
  objects as ``simulator.core.memory.StoredMemory`` plus the deduplication key ``norm``), at most
  ``MAX_MEMORIES_PER_PAIR``; ``memory-characters:<key>:<end user>``: the characters an end user has memories
  with (for deleting them all); ``memory-ids``: the counter behind ``mem-N`` ids.

Requires the ``redis`` package (``pip install 'convai-sync[simulator-redis]'``) and Redis 5 or later.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Coroutine, Sequence
from datetime import datetime, timezone
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from simulator.core import memory
from simulator.core.accounts import Accounts
from simulator.core.memory import StoredMemory
from simulator.core.store import Refusal
from simulator.core.tokens import DEFAULT_TTL, new_token
from simulator.core.tokens import Refusal as TokenRefusal

logger = logging.getLogger("simulator.redis_store")

#: Seconds a slot's lease lasts without renewal (a dead worker's slots are freed within this).
DEFAULT_LEASE = 15.0
PREFIX = "convai-sim:"
#: Seconds any one Redis call may take before it counts as failed (it never hangs the loop).
CALL_TIMEOUT = 5.0

_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local speaker_limit = tonumber(ARGV[4])
local user = ARGV[5]
local counts_speaker = speaker_limit >= 0 and user ~= ''
if counts_speaker and redis.call('SISMEMBER', KEYS[2], user) == 0
        and redis.call('SCARD', KEYS[2]) >= speaker_limit then
    return 'speaker_limit'
end
local limit = tonumber(ARGV[3])
if limit >= 0 and redis.call('ZCARD', KEYS[1]) >= limit then
    return 'concurrency_limit'
end
local rate = tonumber(ARGV[6])
local window = tonumber(ARGV[7])
if rate >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
    if redis.call('ZCARD', KEYS[3]) >= rate then
        return 'rate_limit'
    end
end
if ARGV[8] ~= '1' then
    return ''
end
if rate >= 0 then
    redis.call('ZADD', KEYS[3], now, ARGV[1])
    redis.call('PEXPIRE', KEYS[3], window)
end
if counts_speaker then
    redis.call('SADD', KEYS[2], user)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if ARGV[9] ~= '' then
    redis.call('SET', KEYS[4], ARGV[9], 'PX', ARGV[2])
end
return ''
"""

_RENEW = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
    redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
end
for i = 2, #KEYS do
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return 0
"""

_POP_FAULT = """
local uses = redis.call('LINDEX', KEYS[2], 0)
if not uses then
    return false
end
local payload = redis.call('LINDEX', KEYS[1], 0)
if tonumber(uses) <= 1 then
    redis.call('LPOP', KEYS[1])
    redis.call('LPOP', KEYS[2])
else
    redis.call('LSET', KEYS[2], 0, tonumber(uses) - 1)
end
return payload
"""

_PUSH_FAULT = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
return 0
"""

_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = 0
for i = 1, #KEYS do
    total = total + redis.call('ZCOUNT', KEYS[i], '(' .. now, '+inf')
end
return total
"""

_INTERACTION = """
local quota = tonumber(ARGV[1])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if quota >= 0 and used >= quota then
    return 0
end
redis.call('INCR', KEYS[1])
return 1
"""


_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_MINT = _NOW + """
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'k', ARGV[1], 'exp', now + ttl, 'c', 0, 'r', 0)
redis.call('PEXPIREAT', KEYS[1], now + 2 * ttl)
return now + ttl
"""

_USE_TOKEN = _NOW + """
local entry = redis.call('HMGET', KEYS[1], 'k', 'exp', 'c', 'r')
if not entry[1] then
    return 'unknown'
end
if entry[4] == '1' then
    return 'revoked'
end
if now >= tonumber(entry[2]) then
    return 'expired'
end
if entry[3] == '1' then
    return 'consumed'
end
if ARGV[1] == '1' then
    redis.call('HSET', KEYS[1], 'c', 1)
end
return 'key:' .. entry[1]
"""

_EXTEND_TOKEN = _NOW + """
local entry = redis.call('HMGET', KEYS[1], 'k', 'exp', 'r')
if entry[1] ~= ARGV[1] or entry[3] == '1' or now >= tonumber(entry[2]) then
    return false
end
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'exp', now + ttl)
redis.call('PEXPIREAT', KEYS[1], now + 2 * ttl)
return now + ttl
"""

_REVOKE_TOKEN = """
if redis.call('HGET', KEYS[1], 'k') ~= ARGV[1] then
    return 0
end
redis.call('HSET', KEYS[1], 'r', 1)
return 1
"""

_ADD_MEMORIES = """
local known = {}
for _, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    known[cjson.decode(raw).norm] = true
end
local added = {}
local duplicates = 0
for i = 6, #ARGV, 2 do
    local norm = ARGV[i]
    if known[norm] then
        duplicates = duplicates + 1
    else
        known[norm] = true
        local entry = cjson.encode({memory_id = 'mem-' .. redis.call('INCR', KEYS[3]), text = ARGV[i + 1],
                                    end_user_id = ARGV[1], character_id = ARGV[2], created_at = ARGV[3], norm = norm})
        redis.call('RPUSH', KEYS[1], entry)
        table.insert(added, entry)
    end
end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[4]), -1)
if #added > 0 then
    redis.call('SADD', KEYS[2], ARGV[5])
end
return {duplicates, added}
"""

_DELETE_MEMORY = """
for _, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    if cjson.decode(raw).memory_id == ARGV[1] then
        redis.call('LREM', KEYS[1], 1, raw)
        return 1
    end
end
return 0
"""

# The pair keys are built here from the index (so one script forgets an end user's memories with every character):
# fine on one Redis instance, which the store requires anyway.
_DELETE_MEMORIES = """
local characters = {ARGV[2]}
if ARGV[2] == '' then
    characters = redis.call('SMEMBERS', KEYS[1])
end
local removed = 0
for _, character in ipairs(characters) do
    local key = ARGV[1] .. character
    removed = removed + redis.call('LLEN', key)
    redis.call('DEL', key)
    redis.call('SREM', KEYS[1], character)
end
return removed
"""

#: Key patterns :meth:`RedisStore.reset` deletes besides each API key's counters (slots and workers stay).
_RESET_PATTERNS = ("token:*", "memories:*", "memory-characters:*", "memory-ids")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc).isoformat()


def _stored(raw: bytes) -> StoredMemory:
    entry = json.loads(raw)
    return StoredMemory(entry["memory_id"], entry["text"], entry["end_user_id"], entry["character_id"],
                        entry["created_at"])


def _limit(value: int | None) -> int:
    return -1 if value is None else value


class RedisStore:
    """Plan state in Redis at ``url`` (``redis://HOST:PORT/DB``); limits are read from ``accounts.limits`` at
    each check, and the slots this process holds are mirrored in ``accounts`` (for its own stats and waits).

    Args:
        url: the Redis URL (no credentials are logged).
        accounts: this process's accounts (keys, limits, local slot and interaction counts).
        lease: seconds a slot lives without renewal (> 0); renewed every ``lease / 3`` seconds.
        token_ttl: seconds a minted or extended auth token lives (> 0; Redis's clock).
        single_use_tokens: the first ``/connect`` presenting a token consumes it, on whichever worker.

    Raises (from :meth:`start`): ``redis.exceptions.RedisError`` / ``OSError`` when Redis cannot be reached.
    """

    def __init__(self, url: str, accounts: Accounts, lease: float = DEFAULT_LEASE, *, token_ttl: float = DEFAULT_TTL,
                 single_use_tokens: bool = True) -> None:
        if not lease > 0:
            raise ValueError(f"lease must be > 0 seconds, got {lease!r}")
        if not token_ttl > 0:
            raise ValueError(f"token_ttl must be > 0 seconds, got {token_ttl!r}")
        self._token_ttl_ms = max(1, int(token_ttl * 1000))
        self._single_use = single_use_tokens
        self._client: Any = aioredis.Redis.from_url(url, socket_timeout=CALL_TIMEOUT,
                                                    socket_connect_timeout=CALL_TIMEOUT)
        self._accounts = accounts
        self._lease_ms = int(lease * 1000)
        self._admit = self._client.register_script(_ADMIT)
        self._renew = self._client.register_script(_RENEW)
        self._count = self._client.register_script(_COUNT)
        self._interaction = self._client.register_script(_INTERACTION)
        self._push_fault = self._client.register_script(_PUSH_FAULT)
        self._pop_fault = self._client.register_script(_POP_FAULT)
        self._mint = self._client.register_script(_MINT)
        self._use_token = self._client.register_script(_USE_TOKEN)
        self._extend_token = self._client.register_script(_EXTEND_TOKEN)
        self._revoke_token = self._client.register_script(_REVOKE_TOKEN)
        self._add_memories = self._client.register_script(_ADD_MEMORIES)
        self._delete_memory = self._client.register_script(_DELETE_MEMORY)
        self._delete_memories = self._client.register_script(_DELETE_MEMORIES)
        self._worker_key = f"{PREFIX}worker:{uuid.uuid4().hex}"
        self._url = ""
        #: Slots this process holds: session id -> API key.
        self._held: dict[str, str] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        #: Writes not waited for (slot releases, a session's memories); close() waits for them (bounded).
        self._releases: set[asyncio.Task[None]] = set()
        self.round_trips = 0

    shared = True

    def __repr__(self) -> str:
        return f"RedisStore(lease={self._lease_ms / 1000:g} s, held={len(self._held)})"

    @staticmethod
    def _key(kind: str, api_key: str) -> str:
        return f"{PREFIX}{kind}:{_digest(api_key)}"

    async def start(self) -> None:
        self.round_trips += 1
        await self._client.ping()
        self._heartbeat = asyncio.get_running_loop().create_task(self._renew_forever())

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        if self._releases:
            await asyncio.wait(self._releases, timeout=CALL_TIMEOUT)
        try:
            by_key: dict[str, list[str]] = {}
            for session_id, api_key in self._held.items():
                by_key.setdefault(api_key, []).append(session_id)
            for api_key, sessions in by_key.items():
                await self._client.zrem(self._key("slots", api_key), *sessions)
            await self._client.delete(self._worker_key, *(f"{PREFIX}owner:{s}" for s in self._held))
        except (RedisError, OSError):
            logger.warning("could not release this worker's slots in Redis; they expire with their lease")
        self._held.clear()
        await self._client.aclose()

    async def admit(self, api_key: str, end_user_id: str | None, session_id: str, *, take: bool = True
                    ) -> Refusal | None:
        limits = self._accounts.limits
        self.round_trips += 1
        answer = await self._admit(
            keys=[self._key("slots", api_key), self._key("speakers", api_key), self._key("connects", api_key),
              f"{PREFIX}owner:{session_id}"],
            args=[session_id, self._lease_ms, _limit(limits.concurrency_limit), _limit(limits.speaker_limit),
                  end_user_id or "", _limit(limits.connect_rate_limit), int(limits.connect_rate_window * 1000),
                  1 if take else 0, self._url])
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        if text:
            return Refusal(text)
        if not take:
            return None
        self._held[session_id] = api_key
        self._accounts.take_slot(api_key)
        return None

    def release(self, api_key: str, session_id: str) -> None:
        if self._held.pop(session_id, None) is None:
            logger.error("slot release without a held slot (bookkeeping bug)")
            return
        self._accounts.release(api_key)
        self._background(self._release(api_key, session_id))

    def _background(self, write: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(write)
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, api_key: str, session_id: str) -> None:
        try:
            self.round_trips += 1
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zrem(self._key("slots", api_key), session_id)
                pipe.delete(f"{PREFIX}owner:{session_id}")
                await pipe.execute()
        except (RedisError, OSError):
            logger.warning("could not release a slot in Redis; it expires with its lease")

    async def try_interaction(self, api_key: str) -> bool:
        self.round_trips += 1
        counted = await self._interaction(keys=[self._key("interactions", api_key)],
                                          args=[_limit(self._accounts.limits.usage_quota)])
        if counted:
            self._accounts.try_interaction(api_key)  # this worker's share, for its state (never over the quota)
        return bool(counted)

    async def slots_in_use(self, api_key: str | None = None) -> int:
        keys = self._accounts.api_keys if api_key is None else (api_key,)
        self.round_trips += 1
        return int(await self._count(keys=[self._key("slots", key) for key in keys], args=[]))

    async def announce(self, url: str) -> None:
        self._url = url
        self.round_trips += 1
        await self._client.set(self._worker_key, url, px=self._lease_ms)

    async def peers(self) -> list[str]:
        self.round_trips += 1
        keys = [key async for key in self._client.scan_iter(f"{PREFIX}worker:*") if key.decode() != self._worker_key]
        if not keys:
            return []
        self.round_trips += 1
        return sorted(url.decode() for url in await self._client.mget(keys) if url is not None)

    async def owner(self, session_id: str) -> str | None:
        self.round_trips += 1
        url = await self._client.get(f"{PREFIX}owner:{session_id}")
        return None if url is None else str(url.decode())

    async def push_connect_fault(self, payload: str, times: int) -> None:
        self.round_trips += 1
        await self._push_fault(keys=[f"{PREFIX}connect-faults", f"{PREFIX}connect-fault-uses"], args=[payload, times])

    async def pop_connect_fault(self) -> str | None:
        self.round_trips += 1
        payload = await self._pop_fault(keys=[f"{PREFIX}connect-faults", f"{PREFIX}connect-fault-uses"], args=[])
        return None if payload is None else str(payload.decode())

    async def connect_faults(self) -> list[tuple[str, int]]:
        self.round_trips += 1
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.lrange(f"{PREFIX}connect-faults", 0, -1)
            pipe.lrange(f"{PREFIX}connect-fault-uses", 0, -1)
            payloads, uses = await pipe.execute()
        return [(payload.decode(), int(left)) for payload, left in zip(payloads, uses, strict=False)]

    async def reset(self, accounts: Accounts | None = None) -> None:
        keys = [self._key(kind, api_key) for api_key in self._accounts.api_keys
                for kind in ("connects", "speakers", "interactions")]
        keys += [f"{PREFIX}connect-faults", f"{PREFIX}connect-fault-uses"]
        for pattern in _RESET_PATTERNS:
            self.round_trips += 1
            keys += [key async for key in self._client.scan_iter(f"{PREFIX}{pattern}", count=1000)]
        self.round_trips += 1
        await self._client.delete(*keys)
        self._accounts.reset()
        if accounts is not None:
            self._accounts = accounts

    # ------------------------------------------------------------------ auth tokens

    @staticmethod
    def _token_key(token: str) -> str:
        return f"{PREFIX}token:{hashlib.sha256(token.encode()).hexdigest()}"

    async def mint_token(self, api_key: str) -> tuple[str, str]:
        token = new_token()
        self.round_trips += 1
        expires = await self._mint(keys=[self._token_key(token)], args=[_digest(api_key), self._token_ttl_ms])
        return token, _iso(int(expires))

    async def extend_token(self, api_key: str, token: str) -> str | None:
        self.round_trips += 1
        expires = await self._extend_token(keys=[self._token_key(token)], args=[_digest(api_key), self._token_ttl_ms])
        return None if expires is None else _iso(int(expires))

    async def revoke_token(self, api_key: str, token: str) -> bool:
        self.round_trips += 1
        return bool(await self._revoke_token(keys=[self._token_key(token)], args=[_digest(api_key)]))

    async def use_token(self, token: str) -> str | TokenRefusal:
        self.round_trips += 1
        answer = await self._use_token(keys=[self._token_key(token)], args=[1 if self._single_use else 0])
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        if not text.startswith("key:"):
            return TokenRefusal[text.upper()]
        by_digest = {_digest(key): key for key in self._accounts.api_keys}
        api_key = by_digest.get(text[4:])
        # A key another worker knows and this one does not: the workers were given different keys.
        return TokenRefusal.UNKNOWN if api_key is None else api_key

    async def token_counts(self) -> dict[str, int]:
        self.round_trips += 2
        seconds, micros = await self._client.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        tokens = active = 0
        async for key in self._client.scan_iter(f"{PREFIX}token:*", count=1000):  # diagnostics: one trip per token
            self.round_trips += 1
            expires, consumed, revoked = await self._client.hmget(key, "exp", "c", "r")
            if expires is None:
                continue
            tokens += 1
            active += int(consumed == b"0" and revoked == b"0" and now < int(expires))
        return {"tokens": tokens, "active": active}

    # ------------------------------------------------------------------ memories

    @staticmethod
    def _pair_prefix(api_key: str, end_user_id: str) -> str:
        return f"{PREFIX}memories:{_digest(api_key)}:{_digest(end_user_id)}:"

    @staticmethod
    def _index(api_key: str, end_user_id: str) -> str:
        return f"{PREFIX}memory-characters:{_digest(api_key)}:{_digest(end_user_id)}"

    async def memories(self, api_key: str, end_user_id: str, character_id: str) -> list[StoredMemory]:
        self.round_trips += 1
        key = self._pair_prefix(api_key, end_user_id) + _digest(character_id)
        return [_stored(raw) for raw in await self._client.lrange(key, 0, -1)]

    async def add_memories(self, api_key: str, end_user_id: str, character_id: str, texts: Sequence[str]
                           ) -> tuple[list[StoredMemory], int]:
        character = _digest(character_id)
        args: list[str | int] = [end_user_id, character_id, datetime.now(timezone.utc).isoformat(),
                                 memory.MAX_MEMORIES_PER_PAIR, character]
        for text in texts:
            args += [memory.dedup_key(text), text.strip()]
        self.round_trips += 1
        duplicates, added = await self._add_memories(
            keys=[self._pair_prefix(api_key, end_user_id) + character, self._index(api_key, end_user_id),
                  f"{PREFIX}memory-ids"], args=args)
        return [_stored(raw) for raw in added], int(duplicates)

    def remember(self, api_key: str, end_user_id: str, character_id: str, texts: Sequence[str]) -> None:
        self._background(self._remember(api_key, end_user_id, character_id, list(texts)))

    async def _remember(self, api_key: str, end_user_id: str, character_id: str, texts: list[str]) -> None:
        try:
            await self.add_memories(api_key, end_user_id, character_id, texts)
        except (RedisError, OSError):
            logger.warning("could not store a session's memories in Redis; they are lost")

    async def get_memory(self, api_key: str, end_user_id: str, character_id: str, memory_id: str
                         ) -> StoredMemory | None:
        for stored in await self.memories(api_key, end_user_id, character_id):
            if stored.memory_id == memory_id:
                return stored
        return None

    async def delete_memory(self, api_key: str, end_user_id: str, character_id: str, memory_id: str) -> bool:
        self.round_trips += 1
        key = self._pair_prefix(api_key, end_user_id) + _digest(character_id)
        return bool(await self._delete_memory(keys=[key], args=[memory_id]))

    async def delete_memories(self, api_key: str, end_user_id: str, character_id: str | None) -> int:
        self.round_trips += 1
        character = "" if character_id is None else _digest(character_id)
        return int(await self._delete_memories(keys=[self._index(api_key, end_user_id)],
                                               args=[self._pair_prefix(api_key, end_user_id), character]))

    async def _renew_forever(self) -> None:
        """Renew this worker's leases every third of a lease (a missed renewal is logged, then retried)."""
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            by_key: dict[str, list[str]] = {}
            for session_id, api_key in self._held.items():
                by_key.setdefault(api_key, []).append(session_id)
            owners = [f"{PREFIX}owner:{session_id}" for session_id in self._held] if self._url else []
            try:
                if self._url:
                    self.round_trips += 1
                    await self._client.set(self._worker_key, self._url, px=self._lease_ms)
            except (RedisError, OSError):
                logger.warning("could not renew this worker's registration in Redis")
            for api_key, sessions in by_key.items():
                try:
                    self.round_trips += 1
                    owned = [f"{PREFIX}owner:{s}" for s in sessions] if owners else []
                    await self._renew(keys=[self._key("slots", api_key), *owned], args=[self._lease_ms, *sessions])
                except (RedisError, OSError):
                    logger.warning("could not renew slot leases in Redis; retrying in %g s", self._lease_ms / 3000)
