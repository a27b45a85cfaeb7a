"""Every injectable fault on a LiveKit session, and what the real ``livekit`` client shows for it.

These expectations are the table in ``simulator/carriers/livekit/__init__.py`` and the README ("LiveKit in the
simulator"): a change in either the simulator or the pinned client shows up here first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from convai_sync.disconnect import DisconnectReason
from simulator import Simulator
from tests.livekit_helpers import HTTP_TIMEOUT, Participant, assert_only_routing_probes, connect_info, etype

Act = Callable[[Simulator, str], object]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator() as server:
        yield server


async def _joined(sim: Simulator) -> tuple[Participant, str]:
    info = connect_info(sim)
    client = Participant()
    await client.join(info)
    await client.wait_message("bot-ready")
    return client, info["session_id"]


def _names(client: Participant) -> list[str]:
    return [name for _t, name, _v in client.events if name in ("reconnecting", "reconnected", "disconnected")]


@pytest.mark.timeout(60)
def test_every_disconnect_reason_reaches_the_client_as_a_leave(sim: Simulator) -> None:
    async def scenario() -> None:
        for reason in DisconnectReason:
            client, session_id = await _joined(sim)
            assert sim.inject(reason, session_id=session_id) == 1
            assert await client.wait_disconnected(5) == int(reason), reason.name
            assert _names(client) == ["disconnected"], reason.name  # no resume attempt: a leave is final
            await client.close()

    asyncio.run(scenario())
    sim.wait_for_slots(0)
    assert_only_routing_probes()


SERVER_ENDS: dict[str, tuple[Act, str | None]] = {
    "server.fatal_error": (lambda s, sid: s.inject("server.fatal_error", session_id=sid), "error"),
    "usage limit": (lambda s, sid: s.send_usage_limit(sid), "usage-limit-reached"),
    "session.token_expired": (lambda s, sid: s.inject("session.token_expired", session_id=sid), None),
    "POST /disconnect": (lambda s, sid: requests.post(f"{s.url}/disconnect", params={"session_id": sid},
                                                       timeout=HTTP_TIMEOUT), None),
}


@pytest.mark.timeout(60)
def test_server_side_ends_delete_the_room(sim: Simulator) -> None:
    async def scenario() -> None:
        for label, (act, last_message) in SERVER_ENDS.items():
            client, session_id = await _joined(sim)
            act(sim, session_id)
            assert await client.wait_disconnected(5) == DisconnectReason.ROOM_DELETED, label
            if last_message is not None:  # the message that explains the end arrives before the leave
                assert etype(client.messages[-1]) == last_message, label
            await client.close()
        client, session_id = await _joined(sim)
        mark = len(client.messages)
        await client.send({"type": "kill-pipeline", "data": {}})
        assert await client.wait_disconnected(5) == DisconnectReason.ROOM_DELETED
        assert client.names(mark)[0] == "server-response"

    asyncio.run(scenario())
    sim.wait_for_slots(0)


@pytest.mark.timeout(30)
def test_idle_timeout_deletes_the_room() -> None:
    with Simulator(idle_timeout=1.0, idle_warning_lead=0.5) as sim:
        async def scenario() -> None:
            client, _session_id = await _joined(sim)
            assert await client.wait_disconnected(10) == DisconnectReason.ROOM_DELETED
            assert "user-idle-warning" in client.names()

        asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_shutdown_is_server_shutdown() -> None:
    async def scenario() -> None:
        sim = Simulator().start()
        try:
            client, _session_id = await _joined(sim)
        finally:
            await asyncio.get_running_loop().run_in_executor(None, sim.stop)
        assert await client.wait_disconnected(5) == DisconnectReason.SERVER_SHUTDOWN

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_signal_loss_then_refused_resume(sim: Simulator) -> None:
    async def scenario() -> None:
        for code, reason in (("transport.signal_disconnected", DisconnectReason.STATE_MISMATCH),
                             ("transport.livekit_error", DisconnectReason.UNKNOWN_REASON)):
            client, session_id = await _joined(sim)
            started = time.monotonic()
            sim.inject(code, session_id=session_id)
            assert await client.wait_disconnected(10) == reason, code
            assert _names(client) == ["reconnecting", "disconnected"], code
            assert time.monotonic() - started < 5, code
            await client.close()

    asyncio.run(scenario())


# Withheld connectivity (transport.ice_failed / peer_connection_failed): tests/test_livekit_ice_faults.py.


@pytest.mark.timeout(30)
def test_injected_join_refusals() -> None:
    expected = {401: "401 Unauthorized", 403: "403 Forbidden", 429: "429 Too Many Requests",
                404: "404 Not Found"}  # a 404 sends the client to the v0 /rtc, which repeats it

    async def scenario() -> None:
        for status, text in expected.items():
            with Simulator() as sim:
                info = connect_info(sim)
                sim.refuse_livekit_join(status, times=20)  # the client retries the signal connection
                client = Participant()
                with pytest.raises(Exception) as refused:
                    await client.join(info)
                assert text in str(refused.value), status
                await client.close()

    asyncio.run(scenario())
    with Simulator() as sim, pytest.raises(ValueError):
        sim.refuse_livekit_join(500)


@pytest.mark.timeout(20)
def test_an_expired_token_is_refused_on_join() -> None:
    with Simulator(token_ttl=1.0) as sim:
        info = connect_info(sim)

        async def scenario() -> None:
            await asyncio.sleep(2.1)  # the token's whole-second expiry must pass; nothing to wait on
            client = Participant()
            with pytest.raises(Exception) as refused:
                await client.join(info)
            assert "401 Unauthorized - invalid token: token is expired" in str(refused.value)

        asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_a_second_join_with_the_same_identity_takes_the_session_over(sim: Simulator) -> None:
    info = connect_info(sim)

    async def scenario() -> None:
        first = Participant()
        await first.join(info)
        await first.wait_message("bot-ready")
        second = Participant()
        await second.join(info)
        assert await first.wait_disconnected(5) == DisconnectReason.DUPLICATE_IDENTITY
        mark = len(second.messages)
        await second.send({"type": "user_text_message", "data": {"text": "still here?"}})
        await second.wait_message("bot-turn-completed", mark)
        assert len(sim.sessions) == 1 and sim.slots_in_use() == 1
        await second.close()
        await first.close()

    asyncio.run(scenario())
    sim.wait_for_slots(0)
