"""``convai-sim --workers N --state redis://...``: one plan across worker processes, against a real redis-server on
127.0.0.1 (tests/redis_helpers.py) over real sockets; and the Redis store itself, two stores as two workers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import requests

from simulator.__main__ import main as sim_main
from simulator.core.accounts import Accounts, Limits
from simulator.core.redis_store import PREFIX, RedisStore
from simulator.core.store import Refusal
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
from tests.sim_helpers import connect_ws, etype, recv, recv_until, send


@pytest.mark.timeout(120)
def test_concurrency_limit_holds_exactly_under_a_race_spread_over_workers(
        redis_url: str, run_workers: Callable[..., Workers]) -> None:  # noqa: F811
    sim = run_workers(2, redis_url, "--concurrency-limit", "5")
    targets = [sim.url, *sim.workers.values()]  # the shared port, and each worker's own
    racers = 40
    barrier = threading.Barrier(racers, timeout=TIMEOUT)

    def race(index: int) -> tuple[str, requests.Response]:
        target = targets[index % len(targets)]
        barrier.wait()
        return target, connect(target)

    with concurrent.futures.ThreadPoolExecutor(racers) as pool:
        answers = list(pool.map(race, range(racers)))
    admitted = [(target, r) for target, r in answers if r.status_code == 200]
    refused = [r for _, r in answers if r.status_code != 200]
    assert len(admitted) == 5
    assert {(r.status_code, r.json()["error_code"]) for r in refused} == {(429, "concurrency_limit")}
    assert slots_in_redis(redis_url) == 5
    # A connect sent to one worker's own port is owned there: its room_url names that worker.
    own = [(target, r) for target, r in admitted if target != sim.url]
    for target, answer in own:
        assert urlsplit(answer.json()["room_url"]).netloc == urlsplit(target).netloc
    # Every admitted session opens on the worker its room_url names.
    for _, answer in admitted:
        ws = connect_ws(answer.json()["room_url"])
        assert etype(recv(ws)) == "interaction-created"


@pytest.mark.timeout(120)
def test_connect_rate_window_is_shared(redis_url: str, run_workers: Callable[..., Workers]) -> None:  # noqa: F811
    sim = run_workers(2, redis_url, "--connect-rate-limit", "3")
    first, second = sim.workers.values()
    statuses = [connect(url) for url in (first, second, first)]
    assert [r.status_code for r in statuses] == [200, 200, 200]
    for url in (second, first):
        refused = connect(url)
        assert (refused.status_code, refused.json()["detail"]) == (429, "Rate limit exceeded")


@pytest.mark.timeout(120)
def test_usage_quota_is_shared(redis_url: str, run_workers: Callable[..., Workers]) -> None:  # noqa: F811
    sim = run_workers(2, redis_url, "--usage-quota", "2")
    sockets = []
    for url in sim.workers.values():
        answer = connect(url)
        assert answer.status_code == 200, answer.text
        ws = connect_ws(answer.json()["room_url"])
        recv_until(ws, "bot-ready")
        sockets.append(ws)
    for ws in sockets:  # one interaction on each worker spends the quota of 2
        send(ws, "user_text_message", {"text": "hello"})
        recv_until(ws, "bot-turn-completed")
    send(sockets[0], "user_text_message", {"text": "one more"})
    ack = recv(sockets[0])
    assert (ack["status"], ack["message"]) == ("error", "Usage limit exceeded")
    assert etype(recv(sockets[0])) == "usage-limit-reached"


@pytest.mark.timeout(120)
def test_a_killed_workers_slots_are_released_when_their_lease_ends(
        redis_url: str, run_workers: Callable[..., Workers]) -> None:  # noqa: F811
    lease = 1.0
    sim = run_workers(2, redis_url, "--concurrency-limit", "2", "--slot-lease", str(lease))
    (doomed, doomed_url), (_, survivor_url) = sim.workers.items()
    assert [connect(doomed_url).status_code for _ in range(2)] == [200, 200]
    refused = connect(survivor_url)
    assert (refused.status_code, refused.json()["error_code"]) == (429, "concurrency_limit")
    os.kill(doomed, signal.SIGKILL)  # no goodbye: only the lease frees its slots
    client: Any = redis.Redis.from_url(redis_url)
    try:
        (key,) = list(client.scan_iter(f"{PREFIX}slots:*"))
        expiry_ms = max(score for _, score in client.zrange(key, 0, -1, withscores=True))
        seconds, micros = client.time()
    finally:
        client.close()
    remaining = expiry_ms / 1000 - (seconds + micros / 1e6)
    assert remaining <= lease  # a lease never outlasts its length from the last heartbeat
    threading.Event().wait(max(0.0, remaining) + 0.05)  # the known end of the lease, on Redis's clock
    assert connect(survivor_url).status_code == 200
    assert slots_in_redis(redis_url) == 1


def _stores(url: str, limits: Limits, count: int = 2) -> list[RedisStore]:
    return [RedisStore(url, Accounts([KEY], ["sim-character"], limits), lease=5.0) for _ in range(count)]


@pytest.mark.timeout(60)
def test_two_stores_never_both_take_the_last_slot(redis_url: str) -> None:  # noqa: F811
    async def scenario() -> None:
        stores = _stores(redis_url, Limits(concurrency_limit=3))
        for store in stores:
            await store.start()
        try:
            answers = await asyncio.gather(*(stores[i % 2].admit(KEY, None, f"s{i}") for i in range(50)))
            taken = [f"s{i}" for i, answer in enumerate(answers) if answer is None]
            assert len(taken) == 3 and set(answers) == {None, Refusal.CONCURRENCY}
            assert await stores[0].slots_in_use() == await stores[1].slots_in_use(KEY) == 3
            stores[int(taken[0][1:]) % 2].release(KEY, taken[0])
        finally:
            for store in stores:
                await store.close()
        assert slots_in_redis(redis_url) == 0  # closing a store frees the slots it held

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_a_reset_clears_the_plan_state_of_every_worker(redis_url: str) -> None:  # noqa: F811
    async def scenario() -> None:
        first, second = _stores(redis_url, Limits(usage_quota=1, speaker_limit=1, connect_rate_limit=1))
        for store in (first, second):
            await store.start()
        try:
            assert await first.try_interaction(KEY) is True
            assert await second.try_interaction(KEY) is False  # the quota is shared
            assert await first.admit(KEY, "player-1", "a") is None
            first.release(KEY, "a")
            assert await second.admit(KEY, "player-2", "b") is Refusal.SPEAKER
            assert await second.admit(KEY, "player-1", "b") is Refusal.RATE
            await second.reset()
            assert await first.try_interaction(KEY) is True
            assert await first.admit(KEY, "player-2", "c") is None
        finally:
            for store in (first, second):
                await store.close()

    asyncio.run(scenario())


def test_workers_without_a_shared_state_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        sim_main(["--workers", "2"])
    assert exit_info.value.code == 2
    assert "--workers needs --state redis://HOST:PORT/DB" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_the_control_api_of_any_worker_acts_on_the_whole_simulator(
        redis_url: str, run_workers: Callable[..., Workers]) -> None:  # noqa: F811
    sim = run_workers(2, redis_url)
    first, second = sim.workers.values()
    opened = {}
    for url in (first, second):
        answer = connect(url)
        ws = connect_ws(answer.json()["room_url"])
        recv_until(ws, "bot-ready")
        opened[url] = (answer.json()["session_id"], ws)
    # A request naming a session held by the other worker is forwarded to it.
    session_id, ws = opened[first]
    sent = control(sim, second, "POST", "send", {"session_id": session_id, "frame": {"type": "sim-probe"}})
    assert sent.status_code == 200, sent.text
    assert recv(ws)["type"] == "sim-probe"
    # Any worker lists every worker's sessions.
    listed = control(sim, second, "GET", "sessions").json()["sessions"]
    assert {s["session_id"] for s in listed} == {opened[first][0], opened[second][0]}
    # A limit changed through one worker holds on every worker.
    assert control(sim, first, "POST", "limits", {"concurrency_limit": 2}).status_code == 200
    for url in (first, second):
        assert control(sim, url, "GET", "limits").json()["limits"]["concurrency_limit"] == 2
        refused = connect(url)
        assert (refused.status_code, refused.json()["error_code"]) == (429, "concurrency_limit")
    assert control(sim, second, "POST", "limits", {"concurrency_limit": None}).status_code == 200
    # A connect fault injected through one worker is met once, by whichever worker the next connect reaches.
    injected = control(sim, first, "POST", "inject", {"code": "connection.rate_limited"})
    assert injected.json()["target"] == "connect"
    assert connect(second).status_code == 429
    assert connect(first).status_code == 200
    assert connect(second).status_code == 200
