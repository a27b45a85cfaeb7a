"""Scenarios end to end: each trigger and action reaches a real ``convai_sync`` client.

Waits are on events (``Recorder.wait``) with timeouts; scenario timings are short and only order
events, never synchronise the test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from convai_sync import (
    ConcurrencyLimitError,
    ConvaiClient,
    ConvaiConfig,
    Disconnected,
    DisconnectReason,
    EventDeliveryPolicy,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantType,
    ReconnectPolicy,
    RetryPolicy,
    RoomOwnershipRebindStateChanged,
    RoomOwnershipRebindStatus,
    ServerMessage,
    SessionState,
    UsageLimitError,
    UsageLimitReached,
    UserIdleWarningReceived,
)
from convai_sync.testing import Recorder
from simulator import Simulator
from simulator.core.scenario import SHIPPED_DIR, load_scenario, shipped_scenarios

pytestmark = pytest.mark.timeout(20)

SHIPPED = ("flaky_network", "concurrency_crunch", "idle_user", "quota_exhausted", "server_restart")
FAST_RECONNECT = ReconnectPolicy(delays=(0.0,), server_shutdown_delay=0.0)
IMMEDIATE = EventDeliveryPolicy.IMMEDIATE


def _config(sim: Simulator, **overrides: Any) -> ConvaiConfig:
    fields: dict[str, Any] = {"reconnect_policy": FAST_RECONNECT, "retry_policy": RetryPolicy(max_attempts=1)}
    fields.update(overrides)
    return sim.client_config(**fields)


def _record(channel: Any, predicate: Any = None) -> Recorder[Any]:
    recorder: Recorder[Any] = Recorder(predicate)
    channel.subscribe(recorder, IMMEDIATE)
    return recorder


# ------------------------------------------------------------------ loading and validation


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_scenario_loads_by_name_and_path(name: str) -> None:
    assert name in shipped_scenarios()
    by_name = load_scenario(name)
    by_path = load_scenario(SHIPPED_DIR / f"{name}.json")
    by_text = load_scenario((SHIPPED_DIR / f"{name}.json").read_text())
    assert by_name == by_path == by_text
    assert by_name.name == name and by_name.description and by_name.steps and by_name.chains
    with Simulator(scenario=name) as sim:
        assert sim.scenario == by_name


def test_scenario_sources(tmp_path: Path) -> None:
    steps = [{"at": 0, "idle_warning": 5}]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "steps": steps}))
    assert load_scenario(str(path)).name == "mine"
    assert load_scenario(steps).name == "inline"
    assert load_scenario({"steps": steps}).steps == load_scenario(json.dumps(steps)).steps
    sim = Simulator()
    assert sim.load_scenario("idle_user") is sim.scenario and sim.scenario is not None
    assert sim.load_scenario(None) is None and sim.scenario is None


BAD: list[tuple[Any, str]] = [
    (42, "JSON object with 'steps'"),
    ({"steps": []}, "non-empty list"),
    ({"steps": [{"at": 1}]}, r"step 0: a step needs exactly one action"),
    ({"steps": [{"at": 1, "delay": 1, "idle_warning": 3}]}, "step 0: a step needs exactly one action"),
    ([{"at": -1, "idle_warning": 3}], "step 0: 'at' must be a number of seconds >= 0"),
    ([{"at": 0, "after_messages": 1, "idle_warning": 3}], "step 0: a step has one trigger"),
    ([{"after_messages": 0, "idle_warning": 3}], "step 0: 'after_messages' must be a positive int"),
    ([{"after_messages": 1, "type": "user_txt", "idle_warning": 3}], "step 0: unknown client message type"),
    ([{"type": "user_text_message", "idle_warning": 3}], "step 0: 'type' needs 'after_messages'"),
    ([{"at": 0, "idle_warning": 3}, {"inject": "no.such_code"}], "step 1: unknown error code"),
    ([{"at": 0, "inject": "config.api_key_missing"}], "step 0: config.api_key_missing is produced client-side"),
    ([{"at": 0, "inject": "SERVER_SHUTDOWN", "colour": "red"}], "step 0: SERVER_SHUTDOWN does not take"),
    ([{"delay": 1}, {"at": 0, "idle_warning": 1}], "step 0: the first step needs a trigger"),
    ([{"at": 0, "idle_warning": 3, "times": 2}], "step 0: 'times' applies to 'inject' steps only"),
    ([{"at": 0, "idle_warning": 3, "extra": 1}], "step 0: unknown keys"),
    ([{"at": 0, "idle_warning": "3"}], "step 0: 'idle_warning' must be remaining seconds"),
    ([{"at": 0, "participant_joined": {"participant_type": "dragon"}}], "step 0: participant_type must be"),
    ([{"at": 0, "participant_left": {"joined": True}}], "step 0: 'joined' contradicts"),
    ([{"at": 0, "close": {"code": 1001}}], "step 0: close code must be"),
    ([{"at": 0, "delay": 0}], "step 0: 'delay' must be a number of seconds > 0"),
    ([{"at": 0, "rebind_state": {"outcome": 9}}], "step 0: outcome must be an int in 0..4"),
    ([{"at": 0, "once": "yes", "idle_warning": 1}], "step 0: 'once' must be true or false"),
    ("{not json", "not valid JSON"),
    ("no_such_scenario", "no shipped scenario of that name"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m for _, m in BAD])
def test_invalid_scenarios_name_the_step_and_problem(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_scenario(data)
    with pytest.raises(ValueError, match=message):
        Simulator(scenario=data)


def test_invalid_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"steps": [')
    with pytest.raises(ValueError, match="broken.json' is not valid JSON"):
        load_scenario(path)
    with pytest.raises(ValueError, match="cannot read scenario file"):
        load_scenario(tmp_path / "missing.json")


# ------------------------------------------------------------------ triggers and actions end to end


def test_at_trigger_drops_once_and_the_client_reconnects() -> None:
    with Simulator(scenario=[{"at": 0.05, "inject": "SIGNAL_CLOSE", "once": True}]) as sim, \
            ConvaiClient(_config(sim)) as client:
        reconnecting = _record(client.events.on_reconnecting)
        reconnected = _record(client.events.on_reconnected)
        client.connect(timeout=5)
        first_conversation = client.character_session_id
        event = reconnected.wait(1)[0]
        assert event.character_session_id == first_conversation
        assert reconnecting.events[0].reason is DisconnectReason.SIGNAL_CLOSE
        assert client.ask("still there?", timeout=5).text.startswith("You said: still there?")
        assert len(reconnected) == 1  # "once": the second session was not dropped


def test_after_messages_trigger_waits_for_the_reply_then_drops() -> None:
    steps = [{"after_messages": 2, "type": "user_text_message", "inject": "UNKNOWN_REASON", "once": True}]
    shipped = load_scenario("flaky_network").steps[1]  # the same step as in the shipped scenario
    assert (shipped.trigger, shipped.payload, shipped.once) == (
        load_scenario(steps).steps[0].trigger, load_scenario(steps).steps[0].payload, True)
    with Simulator(scenario=steps) as sim, ConvaiClient(_config(sim)) as client:
        reconnected = _record(client.events.on_reconnected)
        client.connect(timeout=5)
        assert "turn 1" in client.ask("one", timeout=5).text
        assert "turn 2" in client.ask("two", timeout=5).text  # the reply completes before the drop
        reconnected.wait(1)
        assert client.last_error is not None
        assert client.last_error.error_code.value == "transport.signal_disconnected"
        assert "turn 3" in client.ask("three", timeout=5).text  # resumed conversation
        assert "turn 4" in client.ask("four", timeout=5).text
        assert len(reconnected) == 1


def test_after_messages_of_any_type_and_delayed_chain() -> None:
    steps = [
        {"after_messages": 1, "idle_warning": 30},
        {"delay": 0.05},
        {"idle_warning": 10, "comment": "continues the chain"},
    ]
    with Simulator(scenario=steps) as sim, ConvaiClient(_config(sim)) as client:
        warnings = _record(client.events.on_user_idle_warning)
        client.connect(timeout=5)
        assert not warnings.events
        client.reset_idle_timer(wait=True)
        assert [w.remaining_seconds for w in warnings.wait(2)] == [30, 10]
        client.toggle_tts(False, wait=True)  # the 2nd message of any type starts nothing
        assert client.ask("hi", timeout=5).text


def test_shipped_idle_user_warns_then_closes() -> None:
    with Simulator(scenario="idle_user") as sim, ConvaiClient(_config(sim)) as client:
        warnings = _record(client.events.on_user_idle_warning)
        disconnected = _record(client.events.on_disconnected)
        client.connect(timeout=5)
        assert disconnected.wait(1, timeout=10)[0].reason is DisconnectReason.ROOM_DELETED
        assert [w.remaining_seconds for w in warnings.events] == [3, 2, 1]
        assert all(isinstance(w, UserIdleWarningReceived) for w in warnings.events)
        assert client.state is SessionState.DISCONNECTED
        assert sim.slots_in_use() == 0


def test_shipped_quota_exhausted_after_three_messages() -> None:
    with Simulator(scenario="quota_exhausted") as sim, ConvaiClient(_config(sim)) as client:
        usage = _record(client.events.on_usage_limit_reached)
        disconnected = _record(client.events.on_disconnected)
        client.connect(timeout=5)
        for n in (1, 2, 3):
            assert f"turn {n}" in client.ask(f"message {n}", timeout=5).text
        event: UsageLimitReached = usage.wait(1)[0]
        assert event.quota_type == "interaction" and "all interactions" in event.message
        disconnected.wait(1)
        with pytest.raises(UsageLimitError):
            client.send_text("one more")
        sim.wait_for_slots(0)


def test_shipped_concurrency_crunch_answers_429_even_with_a_free_slot() -> None:
    with Simulator(scenario="concurrency_crunch", concurrency_limit=1) as sim:
        with ConvaiClient(_config(sim)) as first:
            first.connect(timeout=5)
            assert first.ask("hi", timeout=5).text  # the at-0 step ran before this turn's frames
        for _ in range(3):  # the first session ended: a slot is free, yet 3 injected 429s answer
            sim.wait_for_slots(0)
            with ConvaiClient(_config(sim)) as blocked, pytest.raises(ConcurrencyLimitError):
                blocked.connect(timeout=5)
        for _ in range(2):  # "once": later sessions do not queue more
            with ConvaiClient(_config(sim)) as later:
                later.connect(timeout=5)
                assert later.ask("hello", timeout=5).text
            sim.wait_for_slots(0)


def test_shipped_server_restart_reconnects_after_shutdown() -> None:
    with Simulator(scenario="server_restart") as sim, ConvaiClient(_config(sim)) as client:
        reconnecting = _record(client.events.on_reconnecting)
        reconnected = _record(client.events.on_reconnected)
        client.connect(timeout=5)
        reconnected.wait(1, timeout=10)
        assert reconnecting.events[0].reason is DisconnectReason.SERVER_SHUTDOWN
        assert client.ask("back?", timeout=5).text


def test_participant_rebind_and_raw_send_actions() -> None:
    rebind = {"label": "rtvi-ai", "type": "server-message",
              "data": {"type": "room-ownership-rebind-state-changed", "outcome": 3}}
    steps = [
        {"at": 0, "participant_joined": {"participant_id": "npc-1", "display_name": "Guard",
                                         "participant_type": "character"}},
        {"participant_joined": {"participant_id": "p2", "identity": "ada", "participant_type": "remote_player",
                                "is_muted": True}},
        {"delay": 0.02},
        {"participant_left": {"participant_id": "npc-1"}},
        {"rebind_state": {"outcome": 2, "has_pending_reconnect": True, "requested_character_id": "c2"}},
        {"send": rebind},
        {"send": {"label": "rtvi-ai", "type": "server-message", "data": {"type": "custom-game-event", "x": 1}}},
    ]
    with Simulator(scenario=steps) as sim, ConvaiClient(_config(sim)) as client:
        joined = _record(client.events.on_participant_joined)
        left = _record(client.events.on_participant_left)
        rebinds = _record(client.events.on_room_ownership_rebind_state_changed)
        custom = _record(client.events.on_message, lambda m: getattr(m, "type", "") == "custom-game-event")
        client.connect(timeout=5)
        guard, player = joined.wait(2)
        assert isinstance(guard, ParticipantJoined)
        assert (guard.participant_id, guard.identity, guard.display_name) == ("npc-1", "npc-1", "Guard")
        assert guard.participant_type is ParticipantType.CHARACTER and not guard.is_local
        assert (player.identity, player.participant_type, player.is_muted) == (
            "ada", ParticipantType.REMOTE_PLAYER, True)
        gone = left.wait(1)[0]
        assert isinstance(gone, ParticipantLeft) and gone.participant_id == "npc-1"
        first, second = rebinds.wait(2)
        assert isinstance(first, RoomOwnershipRebindStateChanged)
        assert first.outcome is RoomOwnershipRebindStatus.PENDING_RECONNECT and first.has_pending_reconnect
        assert first.requested_character_id == "c2" and first.session_state is SessionState.CONNECTED
        assert second.outcome is RoomOwnershipRebindStatus.REJECTED_TRANSITION_STATE
        assert isinstance(custom.wait(1)[0], ServerMessage)


def test_scenario_loaded_at_runtime_applies_to_new_sessions() -> None:
    with Simulator() as sim, ConvaiClient(_config(sim)) as client:
        disconnected = _record(client.events.on_disconnected)
        client.connect(timeout=5)
        sim.load_scenario('[{"at": 0, "close": {"code": 1000, "reason": "Pipeline killed"}}]')
        assert client.ask("unaffected", timeout=5).text  # the live session started without it
        client.disconnect()
        disconnected.wait(1)
        client.connect(timeout=5)
        event: Disconnected = disconnected.wait(2)[1]
        assert event.reason is DisconnectReason.ROOM_DELETED
