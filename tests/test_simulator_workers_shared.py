"""What workers share besides slots and quotas: auth tokens and memories live in the shared store, and reset,
state, stats and the dashboard's feed answer for every worker. Real redis-server on 127.0.0.1, real worker
processes (``convai-sim --workers 2 --state redis://...``), real sockets; and the Redis store itself."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from convai_sync import ConvaiClient, ConvaiConfig, RetryPolicy
from simulator import Simulator
from simulator.core.accounts import Accounts, Limits
from simulator.core.memory import MAX_MEMORIES_PER_PAIR
from simulator.core.redis_store import RedisStore
from simulator.core.tokens import Refusal as TokenRefusal
from tests.redis_helpers import (  # noqa: F401 (fixtures)
    KEY,
    TIMEOUT,
    Workers,
    connect,
    control,
    redis_server,
    redis_url,
    run_workers,
    slots_in_redis,
)
from tests.sim_helpers import close_of, connect_ws, recv_until, send

pytestmark = pytest.mark.timeout(120)

LTM = "ltm-character"


def _rest(url: str, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{url}{path}", json=body, headers={"CONVAI-API-KEY": KEY}, timeout=TIMEOUT)


def _connect_with_token(url: str, token: str) -> requests.Response:
    body = {"character_id": "sim-character", "transport": "websocket"}
    return requests.post(f"{url}/connect", json=body, headers={"API-AUTH-TOKEN": token}, timeout=TIMEOUT)


def _open(url: str) -> tuple[str, Any]:
    """A session admitted and opened on the worker at ``url``: its id and WebSocket."""
    answer = connect(url)
    assert answer.status_code == 200, answer.text
    ws = connect_ws(answer.json()["room_url"])
    recv_until(ws, "bot-ready")
    return str(answer.json()["session_id"]), ws


def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for a condition another process makes true without telling this one."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {TIMEOUT} s: {what}")
        threading.Event().wait(0.05)


def test_a_token_minted_on_one_worker_authenticates_and_is_revoked_on_another(
        redis_url: str, run_workers: Callable[..., Workers]) -> None:  # noqa: F811
    sim = run_workers(2, redis_url)
    first, second = sim.workers.values()
    minted = _rest(first, "/user/connect", {})
    assert minted.status_code == 200, minted.text
    token = minted.json()["apiAuthToken"]
    admitted = _connect_with_token(second, token)
    assert admitted.status_code == 200, admitted.text
    again = _connect_with_token(first, token)  # single use across workers: consumed on the second
    assert (again.status_code, again.json()["detail"]) == (401, TokenRefusal.CONSUMED.value)
    # Extended on one worker, revoked on the other: no worker accepts it any more.
    other = _rest(first, "/user/connect", {}).json()
    extended = _rest(second, "/user/extend-token", {"apiAuthToken": other["apiAuthToken"]})
    assert extended.status_code == 200, extended.text
    assert datetime.fromisoformat(extended.json()["expirationTime"]) >= datetime.fromisoformat(
        other["expirationTime"])
    assert _rest(second, "/user/revoke-token", {"apiAuthToken": other["apiAuthToken"]}).status_code == 200
    for url in (first, second):
        refused = _connect_with_token(url, other["apiAuthToken"])
        assert (refused.status_code, refused.json()["detail"]) == (401, TokenRefusal.REVOKED.value)
    unknown = _connect_with_token(first, "sim-token-never-minted")
    assert (unknown.status_code, unknown.json()["detail"]) == (401, TokenRefusal.UNKNOWN.value)


def test_a_memory_written_via_one_worker_is_read_and_deleted_via_another(
        redis_url: str, run_workers: Callable[..., Workers], tmp_path: Path) -> None:  # noqa: F811
    characters = tmp_path / "characters.json"
    characters.write_text(json.dumps({"characters": [{"id": LTM, "long_term_memory": True}]}))
    sim = run_workers(2, redis_url, "--characters", str(characters))
    first, second = sim.workers.values()
    pair = {"end_user_id": "ada", "character_id": LTM}
    added = _rest(first, "/memory/add", {**pair, "memories": ["Your name is Ada."]})
    assert added.status_code == 200, added.text
    memory_id = added.json()["added"][0]["memory_id"]
    listed = _rest(second, "/memory/list", pair).json()
    assert [m["text"] for m in listed["memories"]] == ["Your name is Ada."]
    assert _rest(second, "/memory/get", {**pair, "memory_id": memory_id}).json()["text"] == "Your name is Ada."
    duplicate = _rest(second, "/memory/add", {**pair, "memories": ["your name is   ADA"]}).json()
    assert (duplicate["added"], duplicate["duplicates"]) == ([], 1)  # deduplicated against the other's write
    assert _rest(second, "/memory/delete", {**pair, "memory_id": memory_id}).status_code == 200
    assert _rest(first, "/memory/get", {**pair, "memory_id": memory_id}).status_code == 404
    # The cap per (end user, character) holds over writes through both workers.
    for batch in range(MAX_MEMORIES_PER_PAIR // 100 + 1):
        texts = [f"You like thing {batch}-{n}." for n in range(100)]
        assert _rest((first, second)[batch % 2], "/memory/add", {**pair, "memories": texts}).status_code == 200
    listed = _rest(first, "/memory/list", {**pair, "page": 1, "page_size": 1}).json()
    assert listed["total_count"] == MAX_MEMORIES_PER_PAIR
    assert listed["memories"][0]["text"] == "You like thing 1-0."  # the oldest hundred were dropped
    assert _rest(second, "/memory/delete-all", {"end_user_id": "ada"}).json()["deleted"] == MAX_MEMORIES_PER_PAIR
    # Long-Term Memory: what a session on one worker heard, a session on the other recalls.
    def client(url: str) -> ConvaiClient:
        return ConvaiClient(ConvaiConfig(api_key=KEY, url=url, character_id=LTM, end_user_id="bob",
                                         transport="websocket", connection_timeout=TIMEOUT,
                                         retry_policy=RetryPolicy(delays=(0.0,))))
    with client(first) as talker:
        talker.connect(timeout=TIMEOUT)
        talker.ask("Hi, my name is Bob and I like dragons.", timeout=TIMEOUT)
    bob = {"end_user_id": "bob", "character_id": LTM}
    _until(lambda: _rest(second, "/memory/list", bob).json()["total_count"] == 2, "bob's memories stored")
    with client(second) as listener:
        listener.connect(timeout=TIMEOUT)
        answer = listener.ask("Do you remember me?", timeout=TIMEOUT).text
    assert answer == "You told me your name is Bob and that you like dragons."


def test_a_reset_via_one_worker_clears_every_worker(
        redis_url: str, run_workers: Callable[..., Workers]) -> None:  # noqa: F811
    sim = run_workers(2, redis_url, "--usage-quota", "1")
    first, second = sim.workers.values()
    sockets = [_open(url)[1] for url in (first, second)]
    send(sockets[1], "user_text_message", {"text": "hello"})  # spends the shared quota of 1
    recv_until(sockets[1], "bot-turn-completed")
    token = _rest(second, "/user/connect", {}).json()["apiAuthToken"]
    pair = {"end_user_id": "ada", "character_id": "sim-character"}
    assert _rest(second, "/memory/add", {**pair, "memories": ["Your name is Ada."]}).status_code == 200
    assert slots_in_redis(redis_url) == 2
    reset = control(sim, first, "POST", "reset")
    assert reset.status_code == 200, reset.text
    assert reset.json()["ended"] == 2  # each worker ended its own session
    assert [close_of(ws) for ws in sockets] == [(1012, "Simulator reset")] * 2
    assert control(sim, second, "GET", "sessions").json()["sessions"] == []
    _until(lambda: slots_in_redis(redis_url) == 0, "every worker's slots released in Redis")
    refused = _connect_with_token(first, token)
    assert (refused.status_code, refused.json()["detail"]) == (401, TokenRefusal.UNKNOWN.value)
    assert _rest(first, "/memory/list", pair).json()["total_count"] == 0
    state = control(sim, second, "GET", "state").json()
    assert state["keys"][0]["interactions"] == 0 and state["slots"]["in_use"] == 0
    _, ws = _open(second)  # the quota is whole again
    send(ws, "user_text_message", {"text": "hello again"})
    assert recv_until(ws, "bot-turn-completed")


def test_state_stats_and_the_dashboard_feed_via_one_worker_show_every_worker(
        redis_url: str, run_workers: Callable[..., Workers]) -> None:  # noqa: F811
    sim = run_workers(2, redis_url)
    first, second = sim.workers.values()
    owned = {url: _open(url) for url in (first, second)}
    ws = owned[second][1]
    send(ws, "user_text_message", {"text": "hello"})
    recv_until(ws, "bot-turn-completed")
    injected = control(sim, second, "POST", "inject", {"code": "connection.rate_limited", "times": 2}).json()
    state = control(sim, first, "GET", "state").json()
    assert state["faults"]["connect"] == [{"code": injected["code"], "times": 2}]  # queued in Redis, for all
    assert {(s["session_id"], s["worker"]) for s in state["sessions"]} == {
        (owned[url][0], url) for url in (first, second)}
    assert sorted(state["workers"]) == sorted([first, second]) and state["unreachable"] == []
    assert state["slots"]["in_use"] == 2
    assert (state["keys"][0]["slots_in_use"], state["keys"][0]["interactions"]) == (2, 1)
    stats = control(sim, first, "GET", "stats").json()
    assert stats["sessions"]["open"] == 2 and stats["slots_in_use"] == 2 and stats["queued_connect_faults"] == 2
    assert {url: part["sessions"]["open"] for url, part in stats["workers"].items()} == {first: 1, second: 1}
    assert stats["max_recent_sessions"] == stats["workers"][first]["max_recent_sessions"]  # bounds are not summed
    # The dashboard's server-sent events carry the same whole-simulator state.
    with requests.get(f"{second}/_sim/events", headers={"X-Sim-Control-Token": sim.control_token},
                      stream=True, timeout=TIMEOUT) as events:
        assert events.status_code == 200
        data = next(line for line in events.iter_lines(decode_unicode=True) if line.startswith("data: "))
    fed = json.loads(data[len("data: "):])
    assert {(s["session_id"], s["worker"]) for s in fed["sessions"]} == {
        (owned[url][0], url) for url in (first, second)}


def test_a_stalled_worker_costs_a_merged_answer_its_deadline_and_is_named(
        redis_url: str, run_workers: Callable[..., Workers]) -> None:  # noqa: F811
    sim = run_workers(2, redis_url)
    (stalled, stalled_url), (_, survivor) = sim.workers.items()
    session_id, _ = _open(survivor)
    os.kill(stalled, signal.SIGSTOP)  # it still accepts connections (the kernel does) but never answers
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            state, stats = pool.map(lambda route: control(sim, survivor, "GET", route), ("state", "stats"))
    finally:
        os.kill(stalled, signal.SIGKILL)
    assert state.status_code == 200 and state.json()["unreachable"] == [stalled_url]
    assert [s["session_id"] for s in state.json()["sessions"]] == [session_id]
    assert stats.status_code == 200 and list(stats.json()["workers"]) == [survivor]


def _stores(url: str, count: int = 2, **options: Any) -> list[RedisStore]:
    return [RedisStore(url, Accounts([KEY], ["sim-character"], Limits()), **options) for _ in range(count)]


@pytest.mark.timeout(60)
def test_two_stores_never_both_consume_one_token_and_expiry_is_shared(redis_url: str) -> None:  # noqa: F811
    async def scenario() -> None:
        first, second = _stores(redis_url, token_ttl=0.5)
        for store in (first, second):
            await store.start()
        try:
            token, _ = await first.mint_token(KEY)
            answers = await asyncio.gather(*((first, second)[i % 2].use_token(token) for i in range(20)))
            assert answers.count(KEY) == 1 and set(answers) == {KEY, TokenRefusal.CONSUMED}
            assert await second.token_counts() == {"tokens": 1, "active": 0}
            late, expires = await second.mint_token(KEY)
            assert await first.extend_token("another-key", late) is None  # only the minting key extends it
            client: Any = redis.asyncio.Redis.from_url(redis_url)
            seconds, micros = await client.time()
            await client.aclose()
            remaining = datetime.fromisoformat(expires).timestamp() - (seconds + micros / 1e6)
            await asyncio.sleep(max(0.0, remaining) + 0.05)  # the token's known end, on Redis's clock
            assert await first.use_token(late) is TokenRefusal.EXPIRED
            assert await first.extend_token(KEY, late) is None
        finally:
            for store in (first, second):
                await store.close()

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_two_stores_adding_one_memory_at_once_store_it_once(redis_url: str) -> None:  # noqa: F811
    async def scenario() -> None:
        stores = _stores(redis_url)
        for store in stores:
            await store.start()
        try:
            answers = await asyncio.gather(*(stores[i % 2].add_memories(KEY, "ada", "sim-character",
                                                                        ["You like tea."]) for i in range(20)))
            assert sorted(len(added) for added, _ in answers) == [0] * 19 + [1]
            assert [m.text for m in await stores[1].memories(KEY, "ada", "sim-character")] == ["You like tea."]
            await stores[0].reset()
            assert await stores[1].memories(KEY, "ada", "sim-character") == []
        finally:
            for store in stores:
                await store.close()

    asyncio.run(scenario())


def test_limits_set_after_a_reset_are_enforced() -> None:
    """A reset gives the simulator fresh accounts; the plan store must check the new ones, not the old."""
    with Simulator() as sim:
        sim.reset()
        sim.set_limits(concurrency_limit=1)
        first = connect(sim.url, character_id=sim.character_id)
        assert first.status_code == 200, first.text
        second = connect(sim.url, character_id=sim.character_id)
        assert (second.status_code, second.json()["error_code"]) == (429, "concurrency_limit")
