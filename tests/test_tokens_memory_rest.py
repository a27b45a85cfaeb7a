"""``convai_sync.tokens`` and ``convai_sync.memory.MemoryClient`` against the simulator's REST routes over
127.0.0.1: typed results, the gateway's error envelope mapped to typed errors, injected 401/429/500,
bounded calls, client-side argument checks, 429 backoff."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import requests

from convai_sync import ConvaiError, ErrorCode
from convai_sync.memory import PATHS, Memory, MemoryClient
from convai_sync.rest import AuthenticationError, NotFoundError, RateLimitError, RestError, ServerError
from convai_sync.testing import FakeClock
from convai_sync.tokens import AuthToken, extend_token, mint_token, revoke_token
from simulator import Simulator

pytestmark = pytest.mark.timeout(30)

USER = "player-42"


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def sim(clock: FakeClock) -> Iterator[Simulator]:
    with Simulator(clock=clock.monotonic, characters=("sim-character", "other-character")) as server:
        yield server


# ============================================================================ tokens


def test_mint_gives_a_token_that_expires_in_an_hour(sim: Simulator) -> None:
    before = datetime.now(timezone.utc)
    minted = mint_token(sim.api_key, base_url=sim.url)
    assert isinstance(minted, AuthToken) and minted.token
    assert minted.expires_at.tzinfo is not None
    assert before + timedelta(minutes=59) < minted.expires_at < before + timedelta(minutes=61)
    assert minted.token not in repr(minted) and minted.token not in str(minted)


def test_extend_restarts_the_lifetime_and_revoke_stops_new_use(sim: Simulator, clock: FakeClock) -> None:
    minted = mint_token(sim.api_key, base_url=sim.url)
    clock.advance(1800.0)
    extended = extend_token(sim.api_key, minted.token, base_url=sim.url)
    assert extended.token == minted.token
    assert extended.expires_at > minted.expires_at + timedelta(minutes=29)
    clock.advance(3000.0)  # past the first hour, within the extended one
    extend_token(sim.api_key, minted.token, base_url=sim.url)
    revoke_token(sim.api_key, minted.token, base_url=sim.url)
    with pytest.raises(AuthenticationError) as raised:
        extend_token(sim.api_key, minted.token, base_url=sim.url)
    assert raised.value.status == 401 and minted.token not in str(raised.value)
    answer = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id, "transport": "websocket"},
                           headers={"API-AUTH-TOKEN": minted.token}, timeout=5)
    assert answer.status_code == 401 and "revoked" in answer.json()["detail"]


def test_an_expired_token_cannot_be_extended(sim: Simulator, clock: FakeClock) -> None:
    minted = mint_token(sim.api_key, base_url=sim.url)
    clock.advance(3600.0)
    with pytest.raises(AuthenticationError):
        extend_token(sim.api_key, minted.token, base_url=sim.url)


def test_a_token_is_accepted_in_convai_api_key_too(sim: Simulator) -> None:
    minted = mint_token(sim.api_key, base_url=sim.url)
    answer = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id, "transport": "websocket"},
                           headers={"CONVAI-API-KEY": minted.token}, timeout=5)
    assert answer.status_code == 200, answer.text
    requests.post(f"{sim.url}/disconnect", params={"session_id": answer.json()["session_id"]}, timeout=5)


def test_a_bad_key_is_an_authentication_error_without_the_key(sim: Simulator) -> None:
    with pytest.raises(AuthenticationError) as raised:
        mint_token("not-the-key-1234", base_url=sim.url)
    assert raised.value.error_code is ErrorCode.CONNECTION_CONNECT_INVALID_API_KEY
    assert "The request contains an invalid API key." in str(raised.value)
    assert "not-the-key-1234" not in str(raised.value)


@pytest.mark.parametrize(("operation", "status", "kind", "code"), [
    ("mint", 401, AuthenticationError, ErrorCode.CONNECTION_CONNECT_INVALID_API_KEY),
    ("mint", 429, RateLimitError, ErrorCode.CONNECTION_RATE_LIMITED),
    ("mint", 500, ServerError, ErrorCode.CONNECTION_SERVER_ERROR),
    ("extend", 429, RateLimitError, ErrorCode.CONNECTION_RATE_LIMITED),
    ("extend", 500, ServerError, ErrorCode.CONNECTION_SERVER_ERROR),
    ("revoke", 401, AuthenticationError, ErrorCode.CONNECTION_CONNECT_INVALID_API_KEY),
    ("revoke", 503, ServerError, ErrorCode.CONNECTION_SERVICE_UNAVAILABLE),
])
def test_injected_rest_faults_map_to_typed_errors(sim: Simulator, operation: str, status: int,
                                                  kind: type[RestError], code: ErrorCode) -> None:
    token = mint_token(sim.api_key, base_url=sim.url).token
    sim.inject_rest_fault(operation, status)
    with pytest.raises(kind) as raised:
        if operation == "mint":
            mint_token(sim.api_key, base_url=sim.url)
        elif operation == "extend":
            extend_token(sim.api_key, token, base_url=sim.url)
        else:
            revoke_token(sim.api_key, token, base_url=sim.url)
    assert raised.value.error_code is code and raised.value.status == status
    assert token not in str(raised.value)
    mint_token(sim.api_key, base_url=sim.url)  # the fault answered one call only


def test_inject_rest_fault_refuses_bad_arguments(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="operation"):
        sim.inject_rest_fault("mintt", 429)
    with pytest.raises(ValueError, match="status"):
        sim.inject_rest_fault("mint", 200)


def test_a_call_is_bounded_by_its_timeout_even_when_the_server_never_answers() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody ever answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(ServerError) as raised:
            mint_token("some-key-1234", base_url=url, timeout=0.3)
        assert time.monotonic() - started < 5.0  # bounded by the call's timeout, with slack for a loaded machine
    assert raised.value.error_code is ErrorCode.CONNECTION_TIMEOUT


def test_token_helpers_refuse_bad_arguments_before_sending() -> None:
    with pytest.raises(ValueError, match="api_key"):
        mint_token("", base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="base_url"):
        mint_token("key-1234", base_url="ftp://example")
    with pytest.raises(ValueError, match="timeout"):
        mint_token("key-1234", base_url="http://127.0.0.1:9", timeout=0)
    with pytest.raises(ValueError, match="token"):
        revoke_token("key-1234", "  ", base_url="http://127.0.0.1:9")


# ============================================================================ memory


@pytest.fixture
def memory(sim: Simulator) -> Iterator[MemoryClient]:
    with MemoryClient(sim.api_key, base_url=sim.url) as client:
        yield client
    with MemoryClient(sim.api_key, base_url=sim.url) as cleanup:
        cleanup.delete_all(USER)


def test_add_deduplicates_and_get_and_delete_work(memory: MemoryClient, sim: Simulator) -> None:
    first = memory.add(USER, sim.character_id, ["Your name is Ada.", "You like dragons."])
    assert [m.text for m in first.added] == ["Your name is Ada.", "You like dragons."] and first.duplicates == 0
    again = memory.add(USER, sim.character_id, ["your name is  ada", "You live in Paris."])
    assert [m.text for m in again.added] == ["You live in Paris."] and again.duplicates == 1
    one = memory.get(USER, sim.character_id, first.added[0].memory_id)
    assert isinstance(one, Memory) and one.text == "Your name is Ada." and one.created_at is not None
    memory.delete(USER, sim.character_id, one.memory_id)
    with pytest.raises(NotFoundError):
        memory.get(USER, sim.character_id, one.memory_id)
    with pytest.raises(NotFoundError):
        memory.delete(USER, sim.character_id, one.memory_id)
    assert [m.text for m in memory.list(USER, sim.character_id)] == ["You like dragons.", "You live in Paris."]


def test_list_pages_and_the_iterator_walks_them_all(memory: MemoryClient, sim: Simulator) -> None:
    texts = [f"You collected gem number {i}." for i in range(7)]
    memory.add(USER, sim.character_id, texts)
    page = memory.list_page(USER, sim.character_id, page=2, page_size=3)
    assert [m.text for m in page.memories] == texts[3:6]
    assert (page.total_count, page.has_more, page.page, page.page_size) == (7, True, 2, 3)
    last = memory.list_page(USER, sim.character_id, page=3, page_size=3)
    assert [m.text for m in last.memories] == texts[6:] and not last.has_more
    assert [m.text for m in memory.list(USER, sim.character_id, page_size=2)] == texts


def test_delete_all_for_one_character_or_every_character(memory: MemoryClient, sim: Simulator) -> None:
    memory.add(USER, sim.character_id, ["You like tea."])
    memory.add(USER, "other-character", ["You like coffee."])
    memory.delete_all(USER, sim.character_id)
    assert list(memory.list(USER, sim.character_id)) == []
    assert [m.text for m in memory.list(USER, "other-character")] == ["You like coffee."]
    memory.delete_all(USER)
    assert list(memory.list(USER, "other-character")) == []


def test_unknown_character_is_not_found(memory: MemoryClient) -> None:
    with pytest.raises(NotFoundError) as raised:
        memory.list_page(USER, "nobody")
    assert raised.value.status == 404


@pytest.mark.parametrize(("call", "field"), [
    (lambda m: m.list_page(USER, "c", page=0), "page"),
    (lambda m: m.list_page(USER, "c", page=1001), "page"),
    (lambda m: m.list_page(USER, "c", page_size=101), "page_size"),
    (lambda m: m.list_page(USER, "c", page_size=True), "page_size"),
    (lambda m: m.list(USER, "c", page_size=0), "page_size"),
    (lambda m: m.list_page(" ", "c"), "end_user_id"),
    (lambda m: m.add(USER, "", ["x"]), "character_id"),
    (lambda m: m.add(USER, "c", "not a list"), "texts"),
    (lambda m: m.add(USER, "c", []), "texts"),
    (lambda m: m.add(USER, "c", ["ok", ""]), "texts[1]"),
    (lambda m: m.get(USER, "c", ""), "memory_id"),
], ids=["page0", "page1001", "size101", "size-bool", "iter-size0", "user", "character", "str", "empty", "item",
        "memory_id"])
def test_bad_arguments_are_refused_client_side_naming_the_field(call: object, field: str) -> None:
    sent: list[float] = []
    client = MemoryClient("key-1234", base_url="http://127.0.0.1:9", sleep=sent.append)  # port 9: nothing listens
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        call(client)  # type: ignore[operator]
    client.close()


def test_429_is_retried_after_1_2_4_seconds_then_raised(sim: Simulator) -> None:
    waits: list[float] = []
    with MemoryClient(sim.api_key, base_url=sim.url, sleep=waits.append, max_retries=3) as client:
        sim.inject_rest_fault("memory.list", 429, times=2)
        assert client.list_page(USER, sim.character_id).total_count == 0
        assert waits == [1.0, 2.0]
        waits.clear()
        sim.inject_rest_fault("memory.add", 429, times=4)
        with pytest.raises(RateLimitError) as raised:
            client.add(USER, sim.character_id, ["You like tea."])
        assert waits == [1.0, 2.0, 4.0]
        assert raised.value.error_code is ErrorCode.CONNECTION_RATE_LIMITED
        assert list(client.list(USER, sim.character_id)) == []  # nothing was stored


def test_other_statuses_are_not_retried(sim: Simulator) -> None:
    waits: list[float] = []
    with MemoryClient(sim.api_key, base_url=sim.url, sleep=waits.append) as client:
        sim.inject_rest_fault("memory.get", 500)
        with pytest.raises(ServerError):
            client.get(USER, sim.character_id, "mem-1")
        sim.inject_rest_fault("memory.delete_all", 401)
        with pytest.raises(AuthenticationError):
            client.delete_all(USER)
    assert waits == []


def test_memory_client_refuses_a_bad_key_and_hides_it(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="api_key") as raised:
        MemoryClient("has space-1234", base_url=sim.url)
    assert "has space" not in str(raised.value)
    with MemoryClient("wrong-key-9876", base_url=sim.url) as client, pytest.raises(AuthenticationError) as denied:
        client.list_page(USER, sim.character_id)
    assert "wrong-key-9876" not in str(denied.value) and "wrong-key-9876" not in repr(client)


def test_the_memory_paths_are_one_proposed_table() -> None:
    assert set(PATHS) == {"list", "add", "get", "delete", "delete_all"}
    assert all(path.startswith("/memory/") for path in PATHS.values())
    assert issubclass(RestError, ConvaiError)


def test_rest_faults_can_be_injected_over_the_control_api(sim: Simulator) -> None:
    headers = {"X-Sim-Control-Token": sim.control_token}
    bad = requests.post(f"{sim.url}/_sim/rest-fault", json={"operation": "mint", "status": 42}, headers=headers,
                        timeout=5)
    assert bad.status_code == 400 and "status" in bad.text
    ok = requests.post(f"{sim.url}/_sim/rest-fault", json={"operation": "mint", "status": 429, "times": 1},
                       headers=headers, timeout=5)
    assert ok.status_code == 200, ok.text
    with pytest.raises(RateLimitError):
        mint_token(sim.api_key, base_url=sim.url)
    mint_token(sim.api_key, base_url=sim.url)
