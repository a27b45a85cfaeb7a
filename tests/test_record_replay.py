"""Record a session with ``ConvaiConfig(record_to=...)`` and replay it with ``Simulator(replay=...)``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from convai_sync import (
    BotTurnCompleted,
    ConfigurationError,
    ConvaiClient,
    ConvaiConfig,
    EventDeliveryPolicy,
    ServerMessage,
)
from convai_sync.recorder import SessionRecorder
from convai_sync.testing import Recorder
from simulator import Simulator
from simulator.core.replay import ReplayError, load_replay

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0
INPUTS = ("hello there", "what is your name?", "goodbye")
KEY = "recorded-secret-key-1234"


def _converse(config: ConvaiConfig, inputs: tuple[str, ...] = INPUTS) -> tuple[list[str], list[tuple[str, str]]]:
    """Ask each input; the replies, and every message the client saw as (event type, its text if any)."""
    seen: Recorder[ServerMessage] = Recorder()
    completed: Recorder[BotTurnCompleted] = Recorder()
    with ConvaiClient(config) as client:
        client.events.on_message.subscribe(seen, EventDeliveryPolicy.IMMEDIATE)
        client.events.raw.subscribe(BotTurnCompleted, completed, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=WAIT)
        replies = [client.ask(text, timeout=WAIT).text for text in inputs]
        completed.wait(len(inputs), timeout=WAIT)  # ask() may return before its turn's last message
    return replies, [(type(m).__name__, str(getattr(m, "text", ""))) for m in seen.events]


def test_a_recording_replays_with_the_same_messages(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    with Simulator(api_keys=(KEY,), chunk_delay=0.01) as sim:
        recorded, recorded_messages = _converse(sim.client_config(record_to=str(path)))
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert KEY not in path.read_text(encoding="utf-8")
    assert [line["frame"]["data"]["text"] for line in lines
            if line.get("dir") == "out" and line["frame"]["type"] == "user_text_message"] == list(INPUTS)
    assert {line["dir"] for line in lines if "dir" in line} == {"in", "out"}
    times = [line["t"] for line in lines]
    assert times == sorted(times)

    # The replaying simulator's own character would answer differently: a responder that says so.
    with Simulator(replay=path, replay_speed=4.0, responder=lambda text: "not from the recording") as replayer:
        replayed, replayed_messages = _converse(replayer.client_config())
        assert replayer.state()["replay"]["mismatches"] == []
    assert replayed == recorded
    assert replayed_messages == recorded_messages
    assert all(reply != "not from the recording" for reply in replayed)


def test_an_input_off_the_recording_is_reported_and_answered_by_the_default_character(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    with Simulator() as sim:
        recorded, _ = _converse(sim.client_config(record_to=path), INPUTS[:2])
    with Simulator(replay=path) as replayer:
        replies, _ = _converse(replayer.client_config(), (INPUTS[0], "something else"))
        state = replayer.state()["replay"]
    assert replies[0] == recorded[0]
    assert "turn" in replies[1]  # the default character names the turn
    [mismatch] = state["mismatches"]
    assert mismatch["index"] == 1 and mismatch["got"] == "something else" and mismatch["expected"] == INPUTS[1]


def test_a_recorder_object_on_a_stream_and_no_cost_when_off() -> None:
    stream = io.StringIO()
    recorder = SessionRecorder(stream)
    with Simulator() as sim:
        _converse(sim.client_config(record_to=recorder), INPUTS[:1])
        with ConvaiClient(sim.client_config()) as plain:
            assert plain._recorder is None  # no wrapper: the transport is the plain one
    recorder.close()
    assert sim.api_key not in stream.getvalue()
    assert '"user_text_message"' in stream.getvalue()


def test_bad_record_to_and_bad_recordings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="record_to"):
        ConvaiConfig(api_key="k", character_id="c", record_to=42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="record_to"):
        ConvaiConfig(api_key="k", character_id="c", record_to="  ")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 0, "dir": "out"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ReplayError, match="line 2"):
        load_replay(bad)
    with pytest.raises(ReplayError, match="cannot read"):
        load_replay(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="replay_speed"):
        Simulator(replay=bad, replay_speed=0)


def test_a_livekit_session_records_and_replays_on_either_transport(tmp_path: Path) -> None:
    path = tmp_path / "livekit.jsonl"
    with Simulator() as sim:
        recorded, _ = _converse(sim.client_config(transport="livekit", record_to=path), INPUTS[:2])
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert {line["transport"] for line in lines} == {"livekit"}
    assert "token" not in {key for line in lines for key in line}  # the room token is never written
    with Simulator(replay=path, replay_speed=4.0, responder=lambda text: "not from the recording") as replayer:
        assert _converse(replayer.client_config(transport="websocket"), INPUTS[:2])[0] == recorded
