"""The simulator against careless and hostile peers: pathological and oversized input, malformed bytes,
path tricks on the control API, unbounded state, and clients that stop reading.

Each test names the behaviour it pins. Expected texts and limits are written here from the simulator's
documented bounds (``simulator.core.bounds`` and the module docstrings), not read from its tables. Deadlines
are generous: a test asserts that something happens before a deadline, never how fast.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

from simulator import Simulator, load_scenario
from simulator.core.character import default_reply
from simulator.core.messages import speak_text
from tests.sim_helpers import (
    WS_TIMEOUT,
    assert_connection_ended,
    close_all_sockets,
    etype,
    open_session,
    post_connect,
    recv,
    recv_until,
    send,
)

pytestmark = pytest.mark.timeout(30)

JSON = dict[str, Any]
HEADER = "X-Sim-Control-Token"
#: The documented bounds (simulator.core.bounds), written out.
MAX_TEXT_LENGTH = 120_000
MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 64
SECRET = "SECRET-d41d8cd9"


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    close_all_sockets()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


def control(sim: Simulator, method: str, route: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{sim.url}/_sim/{route}", json=body, headers={HEADER: sim.control_token},
                            timeout=WS_TIMEOUT)


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth - 1):
        value = [value]
    return [value]


def reply_text(ws: websocket.WebSocket) -> str:
    """Read one whole turn; the concatenated ``bot-llm-text`` chunks."""
    frames = recv_until(ws, "bot-turn-completed")
    return "".join(f["data"]["text"] for f in frames if etype(f) == "bot-llm-text")


def assert_still_talking(ws: websocket.WebSocket, text: str = "still there?") -> None:
    send(ws, "user_text_message", {"text": text})
    ack = recv(ws)
    assert ack["event_type"] == "user_text_message" and ack["status"] == "success", ack
    assert f"You said: {text}" in reply_text(ws)


# ============================================================== 1. linear parsing, bounded text fields


@pytest.mark.timeout(10)
def test_speak_text_finds_the_first_tag_pair_in_linear_time() -> None:
    assert speak_text("<speak>Hello there</speak>") == "Hello there"
    assert speak_text("a <speak> x </speak> b <speak>y</speak>") == " x "
    assert speak_text("<speak><speak>hi</speak>") == "<speak>hi"  # what the non-greedy regex matched
    assert speak_text("no tags") is None
    assert speak_text("<speak>never closed") is None
    assert speak_text("</speak> closed before <speak>") is None
    # 7 MB of unclosed tags: the regex it replaces needs hours for this; str.find needs milliseconds.
    assert speak_text("<speak>" * 1_000_000) is None


def test_pathological_trigger_is_refused_at_once_and_other_sessions_keep_replying(sim: Simulator) -> None:
    _, healthy = open_session(sim)
    info, attacker = open_session(sim)
    attacker.send(json.dumps({"type": "trigger-message", "data": {"trigger_message": "<speak>" * 50_000}}))
    # The loop handled the 350 KB frame (it froze for a minute on a quadratic regex before the fix).
    sim.wait_for_received(info["session_id"], "trigger-message", timeout=WS_TIMEOUT)
    for n in range(3):
        assert_still_talking(healthy, f"turn check {n}")
    assert recv(attacker) == {
        "type": "server-response", "event_type": "trigger-message", "status": "error",
        "message": f"Failed to process trigger-message: trigger_message is longer than {MAX_TEXT_LENGTH} characters",
    }
    assert_still_talking(attacker)


def test_pathological_trigger_under_the_limit_is_accepted(sim: Simulator) -> None:
    _, healthy = open_session(sim)
    _, ws = open_session(sim)
    unclosed = "<speak>" * (MAX_TEXT_LENGTH // len("<speak>"))
    send(ws, "trigger-message", {"trigger_message": unclosed})
    assert_still_talking(healthy)
    ack = recv(ws)
    assert ack["status"] == "success" and ack["extras"] == {"trigger_name": None, "has_speak_tag": False}
    assert reply_text(ws).startswith("You said: <speak><speak>")


@pytest.mark.parametrize(("msg_type", "data", "field"), [
    ("user_text_message", {"text": "x" * (MAX_TEXT_LENGTH + 1)}, "text"),
    ("trigger-message", {"trigger_name": "n" * (MAX_TEXT_LENGTH + 1)}, "trigger_name"),
    ("update-template-keys", {"template_keys": {"k": "v" * (MAX_TEXT_LENGTH + 1)}}, "a template key or value"),
])
def test_text_over_the_limit_gets_a_failed_ack_and_the_session_goes_on(
    sim: Simulator, msg_type: str, data: JSON, field: str
) -> None:
    _, ws = open_session(sim)
    send(ws, msg_type, data)
    assert recv(ws) == {"type": "server-response", "event_type": msg_type, "status": "error",
                        "message": f"Failed to process {msg_type}: {field} is longer than {MAX_TEXT_LENGTH} "
                                   "characters"}
    assert_still_talking(ws)


def test_text_at_the_limit_is_accepted(sim: Simulator) -> None:
    _, ws = open_session(sim)
    send(ws, "user_text_message", {"text": "y" * MAX_TEXT_LENGTH})
    assert recv(ws)["status"] == "success"
    assert "y" * 100 in reply_text(ws)


# ============================================================== 3. malformed bytes and bodies


@pytest.mark.parametrize(("raw", "problem"), [
    (b"[" * 100_000, "nested deeper than 64 levels"),
    (json.dumps({"character_id": "sim-character", "x": nested(MAX_JSON_DEPTH + 1)}).encode(),
     "nested deeper than 64 levels"),
    (b'{"character_id": "\xff"}', "invalid UTF-8"),
    (b'{"character_id": ', "Expecting value"),
], ids=["deep-recursion", "deeper-than-limit", "invalid-utf8", "truncated"])
def test_connect_answers_undecodable_bodies_with_422_json_invalid(sim: Simulator, raw: bytes, problem: str) -> None:
    response = requests.post(f"{sim.url}/connect", data=raw, headers={"x-api-key": sim.api_key}, timeout=WS_TIMEOUT)
    assert response.status_code == 422, response.text
    [detail] = response.json()["detail"]
    assert detail["type"] == "json_invalid" and detail["msg"] == "JSON decode error" and detail["input"] == {}
    assert detail["loc"][0] == "body" and isinstance(detail["loc"][1], int)
    assert problem in detail["ctx"]["error"]
    assert post_connect(sim).status_code == 200  # the server goes on


def test_json_at_the_depth_limit_is_accepted(sim: Simulator) -> None:
    assert post_connect(sim, extra=nested(MAX_JSON_DEPTH - 1)).status_code == 200
    _, ws = open_session(sim)
    send(ws, "user_text_message", {"text": "deep", "extra": nested(MAX_JSON_DEPTH - 3)})
    assert recv(ws)["status"] == "success"


def test_connect_body_over_1_mib_is_413_and_leaves_the_fault_queued(sim: Simulator) -> None:
    sim.inject("connection.connect_concurrency_limit_reached")
    big = json.dumps({"character_id": sim.character_id, "transport": "websocket", "pad": "x" * MAX_BODY_BYTES})
    response = requests.post(f"{sim.url}/connect", data=big, headers={"x-api-key": sim.api_key},
                             timeout=WS_TIMEOUT)
    assert response.status_code == 413
    assert response.json() == {"detail": f"Request body is larger than {MAX_BODY_BYTES} bytes"}
    assert post_connect(sim).status_code == 429  # the injected fault was kept for this connect
    assert post_connect(sim).status_code == 200


@pytest.mark.parametrize("token", ["t\u00f6ken".encode("latin-1"), b"\xff\xfe", "t\u00f6ken".encode()],
                         ids=["latin-1", "invalid-utf8", "utf8"])
def test_control_token_with_any_bytes_is_401(sim: Simulator, token: bytes) -> None:
    response = requests.get(f"{sim.url}/_sim/sessions", headers={HEADER: token}, timeout=WS_TIMEOUT)
    assert response.status_code == 401
    assert response.json() == {"detail": f"missing or wrong {HEADER} header"}


def test_control_api_bounds_its_bodies(sim: Simulator) -> None:
    headers = {HEADER: sim.control_token}
    big = requests.post(f"{sim.url}/_sim/limits", data=b"{" + b" " * MAX_BODY_BYTES + b"}", headers=headers,
                        timeout=WS_TIMEOUT)
    assert big.status_code == 413
    deep = requests.post(f"{sim.url}/_sim/limits", data=b"[" * 100_000, headers=headers, timeout=WS_TIMEOUT)
    assert deep.status_code == 400 and "not valid JSON" in deep.json()["detail"]
    huge = requests.post(f"{sim.url}/_sim/limits", data=b'{"idle_timeout": 1' + b"0" * 400 + b"}",
                         headers=headers, timeout=WS_TIMEOUT)  # an int no float can hold
    assert huge.status_code == 400 and "idle_timeout must be" in huge.json()["detail"]
    bad_status = control(sim, "POST", "inject", {"code": "connection.connect_bot_start_failed", "status": 42})
    assert bad_status.status_code == 400 and "'status' must be an HTTP error status" in bad_status.json()["detail"]
    assert post_connect(sim).status_code == 200  # no fault with an impossible status was queued


def test_nested_json_frame_gets_parse_error_and_the_session_goes_on(sim: Simulator) -> None:
    _, ws = open_session(sim)
    parse_error = {"type": "server-response", "event_type": "parse-error", "status": "error",
                   "message": "Failed to parse message: invalid JSON or UTF-8 encoding", "extras": None}
    ws.send("[" * 100_000)
    assert recv(ws) == parse_error
    ws.send(json.dumps({"type": "user_text_message", "data": {"text": "hi", "x": nested(MAX_JSON_DEPTH + 1)}}))
    assert recv(ws) == parse_error
    assert_still_talking(ws)


def test_no_key_is_logged_or_echoed(caplog: pytest.LogCaptureFixture) -> None:
    key = f"key-{SECRET}"
    with caplog.at_level(logging.DEBUG, logger="simulator"), Simulator(api_keys=(key,)) as sim:
        wrong = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id},
                              headers={"x-api-key": f"wrong-{key}"}, timeout=WS_TIMEOUT)
        assert wrong.status_code == 401 and SECRET not in wrong.text
        _, ws = open_session(sim)
        assert_still_talking(ws)
        session = sim.wait_for_session()
        assert SECRET not in repr(session) + repr(sim) + json.dumps(sim.stats())
        assert SECRET not in control(sim, "GET", "sessions").text
    assert caplog.records and not [r for r in caplog.records if SECRET in r.getMessage()]


# ============================================================== 2. scenario files on the control API


def _secret_scenario(path: Path) -> Path:
    path.write_text(json.dumps({"steps": [{"at": 0, "inject": SECRET}]}))
    return path


def test_control_scenario_reads_no_file_without_a_scenario_dir(sim: Simulator, tmp_path: Path) -> None:
    secret = _secret_scenario(tmp_path / "secret.json")
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"at": 0, "idle_warning": 5}]))
    for source in (str(secret), str(good), "../" * 12 + str(good).lstrip("/"), "~/good.json"):
        response = control(sim, "POST", "scenario", {"scenario": source})
        assert response.status_code == 400, response.text
        assert SECRET not in response.text
        assert "no scenario directory is configured" in response.json()["detail"]
    assert control(sim, "GET", "scenario").json() == {"scenario": None}
    assert control(sim, "POST", "scenario", {"scenario": "idle_user"}).json() == {"scenario": "idle_user"}


def test_control_scenario_loads_files_only_under_scenario_dir(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "mine.json").write_text(json.dumps({"name": "mine", "steps": [{"at": 0, "idle_warning": 5}]}))
    (allowed / "sub" / "other.json").write_text(json.dumps([{"at": 0, "idle_warning": 6}]))
    _secret_scenario(allowed / "broken.json")
    outside = _secret_scenario(tmp_path / "outside.json")
    (allowed / "link.json").symlink_to(outside)
    with Simulator(scenario_dir=allowed) as sim:
        assert control(sim, "POST", "scenario", {"scenario": "mine"}).json() == {"scenario": "mine"}
        assert control(sim, "POST", "scenario", {"scenario": "sub/other.json"}).json() == {"scenario": "other"}
        refusals = {
            "../outside.json": "relative to the scenario directory",
            str(allowed / "mine.json"): "relative to the scenario directory",
            "link.json": "resolves outside the scenario directory",
            "broken.json": "step 0: 'inject' names no injectable",
            "missing": "no file of that name in the scenario directory",
        }
        for source, reason in refusals.items():
            response = control(sim, "POST", "scenario", {"scenario": source})
            assert response.status_code == 400 and reason in response.json()["detail"], (source, response.text)
            assert SECRET not in response.text
        assert control(sim, "GET", "scenario").json() == {"scenario": "other"}  # unchanged by refusals


def test_scenario_dir_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a directory"):
        Simulator(scenario_dir=tmp_path / "missing")


@pytest.mark.parametrize(("document", "where"), [
    ({"steps": [{"at": 0, "inject": SECRET}]}, "step 0: 'inject'"),
    ({"steps": [{"at": 0, "idle_warning": SECRET}]}, "step 0: 'idle_warning' must be"),
    ({"steps": [{"at": 0, "send": 1, SECRET: 1}]}, "step 0: 1 unknown key"),
    ({"steps": [{"at": 0, "participant_joined": {"participant_type": SECRET}}]}, "step 0: 'participant_joined'"),
    ({"steps": [{"at": 0, "close": {"code": 1000, "reason": [SECRET]}}]}, "step 0: close reason must be"),
    ({"steps": [{"at": 0, "idle_warning": 1}, SECRET]}, "step 1: a step must be a JSON object"),
    ({"steps": [{"at": 0, "idle_warning": 1}], SECRET: 1}, "1 unknown top-level key"),
    ([{"at": 0, "after_messages": 1, "type": SECRET, "idle_warning": 1}], "step 0: a step has one trigger"),
    ([{"after_messages": 1, "type": SECRET, "idle_warning": 1}], "step 0: 'type' is not a known"),
])
def test_scenario_file_errors_name_the_step_not_the_content(tmp_path: Path, document: Any, where: str) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=where) as from_file:
        load_scenario(path)
    assert SECRET not in str(from_file.value) and "mine.json" in str(from_file.value)
    if where.startswith("step 0: a step has one trigger"):
        return  # a problem that quotes nothing even inline
    with pytest.raises(ValueError, match=SECRET):  # what a caller passes inline is quoted back (it is theirs)
        load_scenario(document)


def test_explicit_scenario_paths_still_work_in_python(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([{"at": 0, "idle_warning": 5}]))
    with Simulator(scenario=str(path)) as sim:
        assert sim.scenario is not None and sim.scenario.name == "mine"
        assert sim.load_scenario(path) is sim.scenario
    big = tmp_path / "big.json"
    big.write_text(" " * (MAX_BODY_BYTES + 1))
    with pytest.raises(ValueError, match="is larger than"):
        load_scenario(big)
    with pytest.raises(ValueError, match="not a regular file"):
        load_scenario(tmp_path)


# ============================================================== 4. bounded conversation history


def _turn_of(sim: Simulator, character_session_id: str) -> int:
    """Resume ``character_session_id``, talk once, return the turn number the reply names."""
    info, ws = open_session(sim, character_session_id=character_session_id)
    send(ws, "user_text_message", {"text": "which turn?"})
    text = reply_text(ws)
    ws.close()
    sim.wait_for_slots(0)
    return int(text.split("This is turn ")[1].split()[0])


def test_conversations_are_forgotten_least_recently_used_first(sim: Simulator) -> None:
    with Simulator(max_conversations=2) as small:
        a, b, c = (str(uuid.uuid4()) for _ in range(3))
        assert [_turn_of(small, a), _turn_of(small, b), _turn_of(small, a)] == [1, 1, 2]
        assert _turn_of(small, c) == 1  # b is the least recently used: forgotten
        assert small.stats()["conversations"] == 2 and small.stats()["max_conversations"] == 2
        assert _turn_of(small, a) == 3  # a is remembered
        assert _turn_of(small, b) == 1  # b resumes like an unknown id: a fresh history
    with pytest.raises(ValueError, match="max_conversations"):
        Simulator(max_conversations=0)


def test_stats_route_shows_the_bounded_state(sim: Simulator) -> None:
    _, ws = open_session(sim)
    post_connect(sim)  # pending: its WebSocket never opens
    stats = control(sim, "GET", "stats").json()
    assert stats == sim.stats()
    assert stats["sessions"] == {"open": 1, "pending": 1}
    assert stats["conversations"] == 2 and stats["max_conversations"] == 10_000
    assert stats["slots_in_use"] == 2 and stats["send_timeout"] == 5.0
    assert requests.get(f"{sim.url}/_sim/stats", timeout=WS_TIMEOUT).status_code == 401


def test_recorded_client_frames_are_bounded(sim: Simulator) -> None:
    info, ws = open_session(sim)
    for n in range(30):  # ~3 MB in all; the record keeps about 1 MiB of the latest
        send(ws, "update-scene-metadata", {"scene_metadata": [{"name": f"n{n}", "description": "d" * 100_000}]})
        assert recv(ws)["status"] == "success"
    session = sim.wait_for_session()
    kept = session.received
    assert session.received_count == 30 and 5 <= len(kept) < 15
    assert [f["data"]["scene_metadata"][0]["name"] for f in kept][-1] == "n29"  # the latest are kept
    assert sum(len(json.dumps(f)) for f in kept) <= 1024 * 1024
    ws.close()
    sim.wait_for_slots(0)
    assert session.received == [] and session.received_count == 30  # an ended session keeps <= 64 KiB


# ============================================================== 5. faults wait for an authenticated, valid connect


def test_only_an_authenticated_valid_connect_consumes_an_injected_fault(sim: Simulator) -> None:
    sim.inject("connection.connect_concurrency_limit_reached")
    url = f"{sim.url}/connect"
    body = {"character_id": sim.character_id, "transport": "websocket"}
    assert requests.post(url, json=body, timeout=WS_TIMEOUT).status_code == 401
    assert post_connect(sim, key="not-a-key").status_code == 401
    assert requests.post(url, data="{", headers={"x-api-key": sim.api_key}, timeout=WS_TIMEOUT).status_code == 422
    assert post_connect(sim, character_id="no-such-character").status_code == 404
    assert post_connect(sim, transport="sse").status_code == 422
    assert post_connect(sim).status_code == 429  # the fault, for the client it was meant for
    assert post_connect(sim).status_code == 200


# ============================================================== 6. constructor checks (CLI: test_simulator_cli)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"idle_warning_lead": 5.0}, "idle_warning_lead needs idle_timeout"),
    ({"idle_timeout": 3.0, "idle_warning_lead": 5.0}, "must not be longer than idle_timeout"),
    ({"port": 99999}, "port must be an int in 0..65535"),
    ({"port": -1}, "port must be an int in 0..65535"),
    ({"send_timeout": 0}, "send_timeout must be"),
])
def test_simulator_refuses_inconsistent_settings(kwargs: JSON, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Simulator(**kwargs)


def test_set_limits_keeps_idle_settings_consistent() -> None:
    sim = Simulator(idle_timeout=3.0, idle_warning_lead=1.0)
    with pytest.raises(ValueError, match="must not be longer than idle_timeout"):
        sim.set_limits(idle_warning_lead=4.0)
    with sim:
        with pytest.raises(ValueError, match="must not be longer than idle_timeout"):
            sim.set_limits(idle_timeout=0.5)
        assert sim.limits["idle_timeout"] == 3.0  # a refused change changes nothing
        cleared = sim.set_limits(idle_timeout=None)  # idling off switches its warning off too
        assert cleared["idle_timeout"] is None and cleared["idle_warning_lead"] is None
        with pytest.raises(ValueError, match="idle_warning_lead needs idle_timeout"):
            sim.set_limits(idle_warning_lead=1.0)
        assert control(sim, "POST", "limits", {"idle_warning_lead": 1.0}).status_code == 400


# ============================================================== 7, 8. reply punctuation, packaging


@pytest.mark.parametrize(("text", "echo"), [
    ("Hello!", "You said: Hello! This is turn 1"),
    ("Hello", "You said: Hello. This is turn 1"),
    ("Who are you?", "You said: Who are you? This is turn 1"),
    ("Wait...", "You said: Wait... This is turn 1"),
    ('She said "hi."', 'You said: She said "hi." This is turn 1'),
    ("Hello,", "You said: Hello. This is turn 1"),
])
def test_default_reply_ends_the_echo_with_one_punctuation_mark(text: str, echo: str) -> None:
    assert default_reply(text, 1) == f"{echo} of our conversation. I am a simulated Convai character."


def test_reply_over_the_wire_has_no_doubled_punctuation(sim: Simulator) -> None:
    _, ws = open_session(sim)
    send(ws, "user_text_message", {"text": "Hello!"})
    assert reply_text(ws).startswith("You said: Hello! This is turn 1 of our conversation.")


def test_simulator_ships_py_typed() -> None:
    assert importlib.resources.files("simulator").joinpath("py.typed").is_file()


# ============================================================== 9. a client that stops reading


#: A receive buffer the kernel rounds up to a few KiB: the client's window closes almost at once.
TINY_RCVBUF = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]
#: A user text whose replies (ack, transcript, chunks) are about three times its size.
FLOOD = json.dumps({"type": "user_text_message", "data": {"text": "x" * 30_000}})


def stalled_client(sim: Simulator) -> websocket.WebSocket:
    """A client that opened its WebSocket and will never read again."""
    info = post_connect(sim).json()
    return websocket.create_connection(info["room_url"], timeout=1.0, sockopt=TINY_RCVBUF)


def stall(ws: websocket.WebSocket) -> None:
    """Send until a send blocks (the server stopped reading: its handler waits on a send to this client)
    or the server drops the connection."""
    for _ in range(5000):
        try:
            ws.send(FLOOD)
        except (websocket.WebSocketTimeoutException, websocket.WebSocketConnectionClosedException, OSError):
            return
    raise AssertionError("the server kept reading a client that never reads its replies")


def test_a_stalled_client_does_not_stall_others_inject_or_stop() -> None:
    sim = Simulator(send_timeout=30.0).start()  # long enough that the client stays stalled throughout
    stalled = stalled_client(sim)  # first, so every fan-out meets it before the healthy session
    try:
        _, healthy = open_session(sim)
        stall(stalled)
        for n in range(2):
            assert_still_talking(healthy, f"healthy {n}")
        # Frames bigger than the write buffer: sending them to the stalled client blocks (before the fix
        # the second of three injections waited on it, and so never reached the healthy session).
        for n in range(3):
            assert sim.inject("server.error", error=f"{n}" * 200_000) == 2
            assert recv_until(healthy, "error")[-1]["data"] == {"error": f"{n}" * 200_000, "fatal": False}
        assert sim.stats()["sessions"]["open"] == 2  # the stalled one is still waiting, not yet dropped
        started = time.monotonic()
        sim.stop()
        assert time.monotonic() - started < 10.0
        assert_connection_ended(stalled)
    finally:
        sim.stop()
        stalled.shutdown()  # type: ignore[no-untyped-call]


def test_a_stalled_client_is_dropped_as_a_slow_consumer(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="simulator"), Simulator(send_timeout=0.5) as sim:
        stalled = stalled_client(sim)
        try:
            _, healthy = open_session(sim)
            stall(stalled)
            sim.wait_for_slots(1, timeout=10.0)  # the stalled session's slot is freed
            assert sim.stats()["sessions"] == {"open": 1, "pending": 0}
            assert_connection_ended(stalled)
            assert_still_talking(healthy)
        finally:
            stalled.shutdown()  # type: ignore[no-untyped-call]
    dropped = [r.getMessage() for r in caplog.records if "slow consumer" in r.getMessage()]
    assert len(dropped) == 1 and "waited more than 0.5 s" in dropped[0]
