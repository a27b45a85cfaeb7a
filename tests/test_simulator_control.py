"""The ``/_sim/*`` control API, ``Simulator.set_limits`` and the signal helpers, seen by a real client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from convai_sync import (
    ConcurrencyLimitError,
    ConvaiClient,
    ConvaiConfig,
    ConvaiError,
    DisconnectReason,
    EventDeliveryPolicy,
    ParticipantType,
    ReconnectPolicy,
    RetryPolicy,
    RoomOwnershipRebindStatus,
    UsageLimitError,
)
from convai_sync.testing import Recorder
from simulator import Simulator

pytestmark = pytest.mark.timeout(20)

TIMEOUT = 5.0
HEADER = "X-Sim-Control-Token"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


def _config(sim: Simulator, **overrides: Any) -> ConvaiConfig:
    fields: dict[str, Any] = {"retry_policy": RetryPolicy(max_attempts=1),
                              "reconnect_policy": ReconnectPolicy(delays=(0.0,), server_shutdown_delay=0.0)}
    fields.update(overrides)
    return sim.client_config(**fields)


def _record(channel: Any) -> Recorder[Any]:
    recorder: Recorder[Any] = Recorder()
    channel.subscribe(recorder, EventDeliveryPolicy.IMMEDIATE)
    return recorder


def call(sim: Simulator, method: str, route: str, body: Any = None, token: str | None = "") -> requests.Response:
    headers = {} if token is None else {HEADER: token or sim.control_token}
    return requests.request(method, f"{sim.url}/_sim/{route}", json=body, headers=headers, timeout=TIMEOUT)


def ok(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


ROUTES = [("GET", "sessions"), ("POST", "inject"), ("GET", "limits"), ("POST", "limits"), ("POST", "idle-warning"),
          ("POST", "usage-limit"), ("POST", "participant"), ("POST", "rebind-state"), ("POST", "send"),
          ("GET", "scenario"), ("POST", "scenario")]


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_every_route_needs_the_control_token(sim: Simulator, method: str, route: str) -> None:
    for token in (None, "wrong-token"):
        response = call(sim, method, route, {"code": "SERVER_SHUTDOWN"}, token=token)
        assert response.status_code == 401
        assert HEADER in response.json()["detail"]


def test_control_token_is_random_unless_given() -> None:
    first, second = Simulator(), Simulator()
    assert first.control_token and first.control_token != second.control_token
    with Simulator(control_token="let-me-in") as sim:
        assert sim.control_token == "let-me-in"
        assert ok(call(sim, "GET", "sessions", token="let-me-in")) == {"sessions": []}
    with pytest.raises(ValueError):
        Simulator(control_token=" ")


def test_sessions_lists_live_sessions_without_keys(sim: Simulator) -> None:
    with ConvaiClient(_config(sim, end_user_id="player-7")) as client:
        client.connect(timeout=TIMEOUT)
        client.reset_idle_timer(wait=True)
        response = call(sim, "GET", "sessions")
        (listed,) = ok(response)["sessions"]
        assert listed == {"session_id": client.session_id, "character_session_id": client.character_session_id,
                          "character_id": sim.character_id, "end_user_id": "player-7", "received": 1,
                          "open": True, "narrative_section_id": None}
        assert sim.api_key not in response.text


def test_inject_connect_and_live_codes(sim: Simulator) -> None:
    answer = ok(call(sim, "POST", "inject", {"code": "connection.connect_concurrency_limit_reached"}))
    assert answer == {"status": "ok", "code": "connection.connect_concurrency_limit_reached", "target": "connect",
                      "affected": 0}
    with ConvaiClient(_config(sim)) as blocked, pytest.raises(ConcurrencyLimitError):
        blocked.connect(timeout=TIMEOUT)
    with ConvaiClient(_config(sim)) as client:
        reconnecting = _record(client.events.on_reconnecting)
        reconnected = _record(client.events.on_reconnected)
        client.connect(timeout=TIMEOUT)
        body = {"code": "MIGRATION", "session_id": client.session_id}
        assert ok(call(sim, "POST", "inject", body))["affected"] == 1
        reconnected.wait(1)
        assert reconnecting.events[0].reason is DisconnectReason.MIGRATION
        errors = _record(client.events.on_pipeline_error)
        answer = ok(call(sim, "POST", "inject", {"code": "server.error", "error": "hiccup", "times": 2}))
        assert answer["affected"] == 1
        assert [e.message for e in errors.wait(2)] == ["hiccup", "hiccup"]


def test_inject_takes_every_documented_form_of_a_code(sim: Simulator) -> None:
    assert ok(call(sim, "POST", "inject", {"code": "CONNECTION_RATE_LIMITED"}))["code"] == "connection.rate_limited"
    assert ok(call(sim, "POST", "inject", {"code": "connection.rate_limited"}))["code"] == "connection.rate_limited"
    with ConvaiClient(_config(sim, retry_policy=RetryPolicy(max_attempts=3, delays=(0.0,)))) as client:
        client.connect(timeout=TIMEOUT)  # the two 429s above, then a slot
        assert client.diagnostics()["connect_attempts"] == 3
        for code in (int(DisconnectReason.MIGRATION), str(int(DisconnectReason.MIGRATION)), "migration"):
            reconnected = _record(client.events.on_reconnected)
            answer = ok(call(sim, "POST", "inject", {"code": code, "session_id": client.session_id}))
            assert answer["code"] == "MIGRATION" and answer["affected"] == 1
            reconnected.wait(1)


def test_a_client_side_code_is_refused_in_http_terms(sim: Simulator) -> None:
    detail = call(sim, "POST", "inject", {"code": "session.idle_timeout"}).json()["detail"]
    assert "POST /_sim/idle-warning" in detail and "send_idle_warning(" not in detail
    with pytest.raises(ValueError, match=r"send_idle_warning\(\.\.\.\)"):  # Python callers get the method
        sim.inject("session.idle_timeout")


ACCEPTED = "an ErrorCode value"


@pytest.mark.parametrize(("body", "status", "detail"), [
    ({"code": "no.such_code"}, 400, ACCEPTED),
    ({"code": True}, 400, ACCEPTED),
    ({"code": 1.5}, 400, ACCEPTED),
    ({"code": 99}, 400, "no DisconnectReason has the number 99"),
    ({}, 400, ACCEPTED),
    ({"code": "config.api_key_missing"}, 400, "client-side"),
    ({"code": "session.idle_timeout"}, 400, "client-side"),
    ({"code": "SERVER_SHUTDOWN", "times": 0}, 400, "times must be a positive int up to 1000"),
    ({"code": "SERVER_SHUTDOWN", "colour": "red"}, 400, "does not take details"),
    ({"code": "SERVER_SHUTDOWN", "session_id": "nope"}, 404, "no live session"),
])
def test_inject_rejects_bad_requests(sim: Simulator, body: dict[str, Any], status: int, detail: str) -> None:
    response = call(sim, "POST", "inject", body)
    assert response.status_code == status and detail in response.json()["detail"]


def test_bad_bodies(sim: Simulator) -> None:
    headers = {HEADER: sim.control_token, "Content-Type": "application/json"}
    response = requests.post(f"{sim.url}/_sim/inject", data="{nope", headers=headers, timeout=TIMEOUT)
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]
    assert call(sim, "POST", "limits", [1, 2]).status_code == 400
    assert call(sim, "POST", "idle-warning", {"remaining_seconds": 3}).status_code == 400
    assert call(sim, "POST", "scenario", {"steps": []}).status_code == 400


def test_limits_route_reads_and_sets_limits(sim: Simulator) -> None:
    limits = ok(call(sim, "GET", "limits"))["limits"]
    assert limits == {"concurrency_limit": None, "speaker_limit": None, "connect_rate_limit": None,
                      "usage_quota": None, "idle_timeout": None, "idle_warning_lead": None, "token_ttl": None,
                      "realtime_allowed": True, "bot_ready_delay": 0.0, "chunk_delay": 0.0}
    changed = ok(call(sim, "POST", "limits", {"concurrency_limit": 1, "chunk_delay": 0}))["limits"]
    assert changed["concurrency_limit"] == 1 and sim.limits == changed
    with ConvaiClient(_config(sim)) as first:
        first.connect(timeout=TIMEOUT)
        with ConvaiClient(_config(sim)) as second, pytest.raises(ConcurrencyLimitError):
            second.connect(timeout=TIMEOUT)
        ok(call(sim, "POST", "limits", {"concurrency_limit": None}))
        with ConvaiClient(_config(sim)) as third:
            third.connect(timeout=TIMEOUT)
    for bad in ({"concurrency_limit": 0}, {"usage_quota": -1}, {"idle_timeout": "soon"}, {"realtime_allowed": 1},
                {"bot_ready_delay": None}, {"nonsense": 1}):
        response = call(sim, "POST", "limits", bad)
        assert response.status_code == 400, bad
        assert next(iter(bad)) in response.json()["detail"]


def test_set_limits_changes_behaviour(sim: Simulator) -> None:
    sim.set_limits(realtime_allowed=False)
    with ConvaiClient(_config(sim)) as client, pytest.raises(ConvaiError) as refused:
        client.connect(timeout=TIMEOUT)
    assert refused.value.error.error_code.value == "connection.connect_realtime_not_allowed"
    sim.set_limits(realtime_allowed=True, usage_quota=1)
    with ConvaiClient(_config(sim)) as client:
        warnings = _record(client.events.on_user_idle_warning)
        disconnected = _record(client.events.on_disconnected)
        client.connect(timeout=TIMEOUT)
        assert client.ask("the one allowed interaction", timeout=TIMEOUT).text
        sim.set_limits(idle_timeout=0.3, idle_warning_lead=0.2)  # restarts the live session's countdown
        assert warnings.wait(1)[0].remaining_seconds == 1
        disconnected.wait(1)
        sim.wait_for_slots(0)
    sim.set_limits(idle_timeout=None)
    with ConvaiClient(_config(sim)) as client:
        client.connect(timeout=TIMEOUT)
        with pytest.raises(UsageLimitError):
            client.send_text("over quota", wait=True)


def test_set_limits_validates_and_works_before_start() -> None:
    sim = Simulator()
    assert sim.set_limits(concurrency_limit=2, token_ttl=30)["token_ttl"] == 30.0
    for bad in ({"concurrency_limit": 0}, {"concurrency_limit": 1.5}, {"chunk_delay": None}, {"speed": 1},
                {"idle_warning_lead": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            sim.set_limits(**bad)
    with sim:
        assert sim.limits["concurrency_limit"] == 2 and sim.limits["token_ttl"] == 30.0


def test_signal_routes_reach_the_client(sim: Simulator) -> None:
    with ConvaiClient(_config(sim)) as client:
        warnings = _record(client.events.on_user_idle_warning)
        joined = _record(client.events.on_participant_joined)
        left = _record(client.events.on_participant_left)
        rebinds = _record(client.events.on_room_ownership_rebind_state_changed)
        usage = _record(client.events.on_usage_limit_reached)
        client.connect(timeout=TIMEOUT)
        sid = client.session_id
        ok(call(sim, "POST", "idle-warning", {"session_id": sid, "remaining_seconds": 120}))
        assert warnings.wait(1)[0].remaining_seconds == 120
        pid = ok(call(sim, "POST", "participant", {"session_id": sid, "display_name": "Bard",
                                                    "participant_type": "character"}))["participant_id"]
        ok(call(sim, "POST", "participant", {"session_id": sid, "joined": False, "participant_id": pid}))
        assert (joined.wait(1)[0].display_name, left.wait(1)[0].participant_id) == ("Bard", pid)
        assert call(sim, "POST", "participant", {"session_id": sid, "participant_type": "dragon"}).status_code == 400
        ok(call(sim, "POST", "rebind-state", {"session_id": sid, "outcome": 1, "active_character_id": "c1"}))
        ok(call(sim, "POST", "send", {"session_id": sid, "frame": {
            "label": "rtvi-ai", "type": "server-message",
            "data": {"type": "room-ownership-rebind-state-changed", "outcome": 4}}}))
        first, second = rebinds.wait(2)
        assert (first.outcome, first.active_character_id) == (RoomOwnershipRebindStatus.APPLIED_IMMEDIATELY, "c1")
        assert second.outcome is RoomOwnershipRebindStatus.REJECTED_INVALID_OWNERSHIP
        ok(call(sim, "POST", "usage-limit", {"session_id": sid, "quota_type": "tts"}))
        assert usage.wait(1)[0].quota_type == "tts"
        sim.wait_for_slots(0)
        assert call(sim, "POST", "idle-warning", {"session_id": sid, "remaining_seconds": 1}).status_code == 404


def test_scenario_route(sim: Simulator) -> None:
    assert ok(call(sim, "GET", "scenario")) == {"scenario": None}
    assert ok(call(sim, "POST", "scenario", {"scenario": "idle_user"})) == {"scenario": "idle_user"}
    steps = [{"at": 0, "idle_warning": 9}]
    assert ok(call(sim, "POST", "scenario", {"scenario": steps})) == {"scenario": "inline"}
    with ConvaiClient(_config(sim)) as client:
        warnings = _record(client.events.on_user_idle_warning)
        client.connect(timeout=TIMEOUT)
        assert warnings.wait(1)[0].remaining_seconds == 9
    bad = call(sim, "POST", "scenario", {"scenario": [{"at": 0}]})
    assert bad.status_code == 400 and "step 0" in bad.json()["detail"]
    assert ok(call(sim, "POST", "scenario", {"scenario": None})) == {"scenario": None}


def test_python_signal_helpers(sim: Simulator) -> None:
    with ConvaiClient(_config(sim)) as client:
        joined = _record(client.events.on_participant_joined)
        left = _record(client.events.on_participant_left)
        rebinds = _record(client.events.on_room_ownership_rebind_state_changed)
        client.connect(timeout=TIMEOUT)
        sid = client.session_id
        assert sid is not None
        pid = sim.send_participant(sid, identity="ada", display_name="Ada", participant_type="remote_player")
        sim.send_participant(sid, joined=False, participant_id=pid, participant_type=ParticipantType.CHARACTER)
        event = joined.wait(1)[0]
        assert (event.participant_id, event.identity, event.display_name) == (pid, "ada", "Ada")
        assert event.participant_type is ParticipantType.REMOTE_PLAYER and not event.is_local
        assert left.wait(1)[0].participant_type is ParticipantType.CHARACTER
        sim.send_rebind_state(sid, 2, has_pending_reconnect=True, session_state=2, active_character_id="a",
                              requested_character_id="b", reconnect_required=True)
        sim.send_frame(sid, '{"label":"rtvi-ai","type":"server-message","data":'
                            '{"type":"room-ownership-rebind-state-changed","outcome":0}}')
        first, second = rebinds.wait(2)
        assert (first.outcome, first.has_pending_reconnect, first.reconnect_required) == (
            RoomOwnershipRebindStatus.PENDING_RECONNECT, True, True)
        assert (first.active_character_id, first.requested_character_id) == ("a", "b")
        assert second.outcome is RoomOwnershipRebindStatus.DEFERRED_UNTIL_STARTUP
        with pytest.raises(ValueError):
            sim.send_participant(sid, participant_type="dragon")
        with pytest.raises(ValueError):
            sim.send_rebind_state(sid, 7)
        with pytest.raises(ValueError):
            sim.send_rebind_state(sid, 1, colour="red")
        with pytest.raises(ValueError):
            sim.send_frame(sid, 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no live session"):
        sim.send_frame(sid, {"type": "x"})
