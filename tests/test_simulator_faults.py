"""The simulator's live-session faults, timers and control API, driven over raw sockets.

Expected statuses, texts and frames are written here from PROTOCOL.md and the wire contract, not read
from the simulator's own tables, so a wrong table fails these tests.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator

import pytest

from simulator import DisconnectReason, ErrorCode, Simulator
from tests.sim_helpers import (
    WS_TIMEOUT,
    assert_dropped,
    close_all_sockets,
    close_of,
    connect_ws,
    etype,
    open_session,
    recv,
    recv_until,
    send,
)


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    close_all_sockets()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


# ------------------------------------------------------------------ live-session faults


def _close_expectation(target: ErrorCode | DisconnectReason) -> tuple[int, str] | None:
    if isinstance(target, DisconnectReason):
        return None if target == 0 else (4000 + target.value, target.message)
    return {
        ErrorCode.TRANSPORT_ICE_FAILED: (4100, "transport.ice_failed"),
        ErrorCode.TRANSPORT_PEER_CONNECTION_FAILED: (4100, "transport.peer_connection_failed"),
        ErrorCode.TRANSPORT_LIVEKIT_ERROR: (4100, "transport.livekit_error"),
        ErrorCode.SESSION_TOKEN_EXPIRED: (1008, "Session expired. Please reconnect via /connect"),
    }.get(target)


CLOSING_TARGETS: list[ErrorCode | DisconnectReason] = [
    *DisconnectReason,
    ErrorCode.TRANSPORT_ICE_FAILED,
    ErrorCode.TRANSPORT_PEER_CONNECTION_FAILED,
    ErrorCode.TRANSPORT_LIVEKIT_ERROR,
    ErrorCode.TRANSPORT_SIGNAL_DISCONNECTED,
    ErrorCode.SESSION_TOKEN_EXPIRED,
]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("target", CLOSING_TARGETS, ids=str)
def test_live_injection_closes(sim: Simulator, target: ErrorCode | DisconnectReason) -> None:
    info, ws = open_session(sim)
    assert sim.inject(target, session_id=info["session_id"]) == 1
    expected = _close_expectation(target)
    if expected is None:
        assert_dropped(ws)
    else:
        assert close_of(ws) == expected
    assert sim.slots_in_use() == 0 and sim.sessions == []


@pytest.mark.timeout(10)
def test_live_injection_frames(sim: Simulator) -> None:
    _, ws = open_session(sim)
    sim.inject(ErrorCode.SERVER_ERROR, error="hiccup")
    assert recv(ws) == {"label": "rtvi-ai", "type": "error", "data": {"error": "hiccup", "fatal": False}}
    sim.inject("protocol.parse_failed")
    with pytest.raises(ValueError):
        json.loads(ws.recv())
    sim.inject("protocol.message_invalid")
    assert "type" not in recv(ws)
    send(ws, "reset-idle-timer")  # the session is still alive
    assert recv(ws)["event_type"] == "reset-idle-timer"
    sim.inject(ErrorCode.SERVER_USAGE_LIMIT_REACHED, quota_type="tts")
    usage = recv(ws)
    assert etype(usage) == "usage-limit-reached" and usage["data"]["quota_type"] == "tts"
    assert isinstance(usage["data"]["message"], str)
    assert close_of(ws) == (1008, "Usage limit exceeded")
    _, ws = open_session(sim)
    sim.inject("server.fatal_error", error="boom")
    assert recv(ws)["data"] == {"error": "boom", "fatal": True}
    assert close_of(ws) == (1011, "boom")


@pytest.mark.timeout(10)
def test_usage_quota_flow() -> None:
    with Simulator(usage_quota=1) as sim:
        _, ws = open_session(sim)
        send(ws, "user_text_message", {"text": "one"})
        recv_until(ws, "bot-turn-completed")
        send(ws, "user_text_message", {"text": "two"})
        ack = recv(ws)
        assert (ack["status"], ack["message"]) == ("error", "Usage limit exceeded")
        frame = recv(ws)
        assert etype(frame) == "usage-limit-reached" and frame["data"]["quota_type"] == "interaction"
        assert close_of(ws) == (1008, "Usage limit exceeded")
        assert sim.slots_in_use() == 0


@pytest.mark.timeout(10)
def test_idle_warning_then_close() -> None:
    with Simulator(idle_timeout=0.3, idle_warning_lead=0.2) as sim:
        _, ws = open_session(sim)
        warning = recv(ws)
        assert etype(warning) == "user-idle-warning"
        assert warning["data"]["remaining_seconds"] == 1 and "idle" in warning["data"]["message"]
        send(ws, "reset-idle-timer")
        assert recv(ws)["event_type"] == "reset-idle-timer"
        assert etype(recv(ws)) == "user-idle-warning"  # the reset restarted the countdown
        assert close_of(ws) == (1000, "Idle timeout")
        sim.wait_for_slots(0)


@pytest.mark.timeout(10)
def test_token_ttl_and_ws_refusals() -> None:
    with Simulator(token_ttl=0.3) as sim:
        info, ws = open_session(sim)
        dup = connect_ws(info["room_url"], timeout=WS_TIMEOUT)
        duplicate = "Session already has an active connection. Only one WebSocket per session allowed."
        assert close_of(dup) == (1008, duplicate)
        assert close_of(ws) == (1008, "Session expired. Please reconnect via /connect")
        late = connect_ws(info["room_url"], timeout=WS_TIMEOUT)
        assert close_of(late)[0] == 1008
        ghost = connect_ws(f"ws://127.0.0.1:{sim.port}/chat?session_id={uuid.uuid4()}",
                                            timeout=WS_TIMEOUT)
        assert close_of(ghost) == (1008, "Session not found in cache or database")


@pytest.mark.timeout(10)
def test_stop_closes_sessions_with_1001() -> None:
    sim = Simulator().start()
    _, ws = open_session(sim)
    sim.stop()
    sim.stop()  # idempotent
    assert close_of(ws) == (1001, "Server shutting down")
    assert not any(t.name == "sim-loop" and t.is_alive() for t in threading.enumerate())


@pytest.mark.timeout(10)
def test_inject_rejects_unknown_and_client_side(sim: Simulator) -> None:
    with pytest.raises(ValueError):
        sim.inject("no.such_code")
    with pytest.raises(ValueError, match="no DisconnectReason has the number 99"):
        sim.inject(99)  # a reason by number is accepted (3 is SERVER_SHUTDOWN); this number is none
    with pytest.raises(ValueError, match="client-side"):
        sim.inject(ErrorCode.CONFIG_API_KEY_MISSING)
    with pytest.raises(ValueError):
        sim.inject(DisconnectReason.SERVER_SHUTDOWN, session_id=str(uuid.uuid4()))
    with pytest.raises(TimeoutError):
        sim.wait_for_session(timeout=0.05)
    client_side = {"config", "audio"}
    for code in ErrorCode:  # every code is either injectable or explained
        if code.category in client_side:
            with pytest.raises(ValueError, match="client-side"):
                sim.inject(code)


@pytest.mark.timeout(10)
def test_every_code_is_injectable_or_explained(sim: Simulator) -> None:
    client_side = {
        "config.", "audio.", "session.invalid_state", "session.cancelled", "session.duration_limit_reached",
        "session.idle_timeout", "connection.auth_token_fetch_failed",
    }
    for code in ErrorCode:
        if any(code.value.startswith(prefix) for prefix in client_side):
            with pytest.raises(ValueError, match="client-side"):
                sim.inject(code)
        else:
            assert sim.inject(code.value) == 0  # connect faults queue; live faults find no session
    for reason in DisconnectReason:
        assert sim.inject(reason) == 0


@pytest.mark.timeout(10)
def test_send_helpers(sim: Simulator) -> None:
    info, ws = open_session(sim)
    sim.send_idle_warning(info["session_id"], 300)
    warning = recv(ws)["data"]
    assert warning == {"type": "user-idle-warning", "remaining_seconds": 300,
                       "message": "You've been idle. You will be disconnected in 5 minutes."}
    sim.send_usage_limit(info["session_id"], "minutes")
    assert recv(ws)["data"]["quota_type"] == "minutes"
    assert close_of(ws) == (1008, "Usage limit exceeded")
    with pytest.raises(ValueError):
        sim.send_idle_warning(info["session_id"], 5)
