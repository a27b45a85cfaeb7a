"""Reset, state and network faults (toxics) of the simulator, seen by raw sockets on the ``/chat`` WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websocket

from simulator import Simulator
from simulator.carriers.toxiclink import ToxicLink
from simulator.core.toxics import ToxicRegistry, make_toxic
from tests.sim_helpers import close_all_sockets, etype, open_session, post_connect, recv_until, send

pytestmark = pytest.mark.timeout(30)

HEADER = "X-Sim-Control-Token"
TIMEOUT = 5.0


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(concurrency_limit=2, usage_quota=5) as simulator:
        yield simulator
    close_all_sockets()


def control(sim: Simulator, method: str, route: str, body: Any = None) -> Any:
    response = requests.request(method, f"{sim.url}/_sim/{route}", json=body,
                                headers={HEADER: sim.control_token}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def say(ws: websocket.WebSocket, text: str) -> str:
    """Send one user text; the character's whole reply text."""
    send(ws, "user_text_message", {"text": text})
    frames = recv_until(ws, "bot-llm-stopped")
    return "".join(str(f["data"]["text"]) for f in frames if etype(f) == "bot-llm-text")


def ended_with(ws: websocket.WebSocket) -> type[BaseException] | int:
    """How the WebSocket ended: the close code of a close frame, or the exception of a dropped connection."""
    try:
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return int.from_bytes(data[:2], "big")
    except (websocket.WebSocketConnectionClosedException, ConnectionError) as exc:
        return type(exc)


# ---------------------------------------------------------------------------------------------- reset and state

def test_state_shows_keys_sessions_slots_quotas_without_the_key(sim: Simulator) -> None:
    info, ws = open_session(sim)
    say(ws, "hello")
    sim.inject("connection.connect_concurrency_limit_reached", times=2)
    state = sim.state()
    over_http = control(sim, "GET", "state")
    assert over_http.pop("sessions")[0]["age"] >= state["sessions"][0]["age"]  # read later
    assert {k: v for k, v in state.items() if k != "sessions"} == over_http
    assert sim.api_key not in json.dumps(state)
    assert state["keys"] == [{"key": "key-1", "slots_in_use": 1, "concurrency_limit": 2, "interactions": 1,
                              "usage_quota": 5, "quota_left": 4}]
    [session] = state["sessions"]
    assert session["session_id"] == info["session_id"] and session["transport"] == "websocket"
    assert session["state"] == "open" and session["key"] == "key-1" and session["age"] >= 0
    assert state["slots"]["in_use"] == 1
    assert state["faults"]["connect"] == [{"code": "connection.connect_concurrency_limit_reached", "times": 2}]


def test_reset_ends_sessions_and_restores_the_configured_start(sim: Simulator) -> None:
    _info, ws = open_session(sim)
    say(ws, "hello")
    sim.set_limits(usage_quota=1, concurrency_limit=1)
    sim.inject("connection.connect_concurrency_limit_reached", times=3)
    sim.toxic("latency", latency=0.01)
    assert sim.reset() == 1
    assert ended_with(ws) == 1012
    state = control(sim, "GET", "state")
    assert state["sessions"] == [] and state["slots"]["in_use"] == 0 and state["toxics"] == []
    assert state["faults"]["connect"] == []
    assert state["keys"][0]["interactions"] == 0
    assert state["limits"]["usage_quota"] == 5 and state["limits"]["concurrency_limit"] == 2
    # The control API's reset does the same; a fresh connect succeeds (no queued fault left).
    _info, ws = open_session(sim)
    assert control(sim, "POST", "reset") == {"status": "ok", "ended": 1}
    assert ended_with(ws) == 1012
    assert post_connect(sim).status_code == 200


# ---------------------------------------------------------------------------------------------- toxics

def test_toxic_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="'latency'"):
        make_toxic("t", "latency")
    with pytest.raises(ValueError, match="unknown toxic kind"):
        make_toxic("t", "jam")
    with pytest.raises(ValueError, match="direction"):
        make_toxic("t", "latency", latency=1, direction="sideways")
    with pytest.raises(ValueError, match="probability"):
        make_toxic("t", "abort", probability=2)
    with pytest.raises(ValueError, match="no parameters"):
        make_toxic("t", "abort", rate=3)


def test_control_api_adds_lists_and_removes_toxics(sim: Simulator) -> None:
    added = control(sim, "POST", "toxics", {"kind": "latency", "latency": 0.05, "seed": 3})["toxic"]
    assert added["kind"] == "latency" and added["seed"] == 3 and added["direction"] == "both"
    assert [t["id"] for t in control(sim, "GET", "toxics")["toxics"]] == [added["id"]]
    bad = requests.post(f"{sim.url}/_sim/toxics", json={"kind": "latency"}, headers={HEADER: sim.control_token},
                        timeout=TIMEOUT)
    assert bad.status_code == 400 and "'latency'" in bad.json()["detail"]
    assert control(sim, "POST", "toxics/remove", {"id": added["id"]})["removed"] == [added["id"]]
    assert sim.toxics() == []


def test_seeded_probability_replays_the_same_draws() -> None:
    def draws(seed: int) -> list[bool]:
        toxic = make_toxic("t", "abort", probability=0.5, seed=seed)
        return [toxic.holds(f"link-{n}") for n in range(32)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert 0 < sum(draws(7)) < 32


def test_latency_delays_replies_by_at_least_the_latency(sim: Simulator) -> None:
    _info, ws = open_session(sim)
    with sim.toxic("latency", latency=0.3, direction="downstream"):
        started = time.monotonic()
        assert say(ws, "hi")
        # At least bot-llm-started, the text and bot-llm-stopped were each held 0.3 s.
        assert time.monotonic() - started >= 0.9
    assert say(ws, "again")


@pytest.mark.parametrize("kind, expected", [("reset_peer", ConnectionResetError),
                                             ("abort", websocket.WebSocketConnectionClosedException)])
def test_connection_faults_drop_without_a_close_frame(sim: Simulator, kind: str, expected: type) -> None:
    info, ws = open_session(sim)
    sim.toxic(kind, session_id=info["session_id"])
    assert ended_with(ws) is expected
    sim.wait_for_slots(0)


def test_limit_data_cuts_mid_frame(sim: Simulator) -> None:
    info, ws = open_session(sim)
    sim.toxic("limit_data", session_id=info["session_id"], direction="downstream", bytes=10)
    send(ws, "user_text_message", {"text": "hello"})
    assert ended_with(ws) is websocket.WebSocketConnectionClosedException
    sim.wait_for_slots(0)


def test_slicer_delivers_whole_frames_in_pieces(sim: Simulator) -> None:
    _info, ws = open_session(sim)
    with sim.toxic("slicer", size=3, delay=0.001, direction="downstream"):
        assert say(ws, "hi")  # the client reassembles every frame from its pieces
    # A second session, so no piece of the first one's last frames (sliced by 3) can be in its socket.
    _info, fresh = open_session(sim)
    with sim.toxic("slicer", size=4, delay=1.0, direction="downstream"):
        send(fresh, "user_text_message", {"text": "hello"})
        # On the socket itself the first read gets one piece: the next is a second behind it (a margin
        # for a test process that a busy machine leaves waiting between the two).
        first = fresh.sock.recv(65536)  # type: ignore[union-attr]
        assert 0 < len(first) <= 4


def test_stall_holds_traffic_until_removed(sim: Simulator) -> None:
    _info, ws = open_session(sim)
    stall = sim.toxic("stall")
    send(ws, "user_text_message", {"text": "hello"})
    ws.settimeout(0.3)
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv()
    stall.remove()
    ws.settimeout(TIMEOUT)
    assert recv_until(ws, "bot-llm-stopped")


def test_stall_with_timeout_drops_the_connection(sim: Simulator) -> None:
    _info, ws = open_session(sim)
    sim.toxic("stall", timeout=0.2)
    assert ended_with(ws) is websocket.WebSocketConnectionClosedException


def test_slow_close_delays_the_close_frame(sim: Simulator) -> None:
    info, ws = open_session(sim)
    sim.toxic("slow_close", delay=0.3)
    started = time.monotonic()
    requests.post(f"{sim.url}/disconnect", params={"session_id": info["session_id"]}, timeout=TIMEOUT)
    assert ended_with(ws) == 1000
    assert time.monotonic() - started >= 0.3


def test_a_global_toxic_takes_hold_of_later_sessions(sim: Simulator) -> None:
    with sim.toxic("abort", seed=1):
        response = post_connect(sim)
        url = response.json()["room_url"]
        ws = websocket.create_connection(url, timeout=TIMEOUT)
        try:
            assert ended_with(ws) is websocket.WebSocketConnectionClosedException
        finally:
            ws.shutdown()  # type: ignore[no-untyped-call]


def test_upstream_bandwidth_and_latency_still_answer(sim: Simulator) -> None:
    _info, ws = open_session(sim)
    with sim.toxic("bandwidth", rate=10_000, direction="upstream"), sim.toxic("latency", latency=0.01, jitter=0.01,
                                                                             direction="upstream"):
        assert say(ws, "hello")


def test_reset_restores_the_scenario_it_started_with() -> None:
    with Simulator(scenario="idle_user") as sim:
        sim.load_scenario("flaky_network")
        assert sim.state()["scenario"] == "flaky_network"
        sim.reset()
        assert sim.state()["scenario"] == "idle_user"
        assert sim.scenario is not None and sim.scenario.name == "idle_user"


def test_cli_toxics_are_parsed_and_checked() -> None:
    from simulator.__main__ import build_parser

    args = build_parser().parse_args(["--toxic", "latency:latency=0.2,jitter=0.05,seed=7",
                                      "--toxic", "abort", "--replay", "x.jsonl", "--replay-speed", "2"])
    assert args.toxics == [("latency", {"latency": 0.2, "jitter": 0.05, "seed": 7}), ("abort", {})]
    assert args.replay == "x.jsonl" and args.replay_speed == 2.0
    for bad in ("latency", "jam", "latency:latency", "abort:session_id=abc"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--toxic", bad])



class FakeWire:
    """What a toxic did to a connection (a stand-in for a carrier)."""

    def __init__(self) -> None:
        self.actions: list[str] = []

    def reset_connection(self) -> None:
        self.actions.append("reset")

    def drop_connection(self) -> None:
        self.actions.append("drop")

    def pause_reading(self, paused: bool) -> None:
        self.actions.append(f"pause={paused}")

    def leave(self, action: str) -> None:
        self.actions.append(f"leave={action}")


def test_a_toxic_link_slices_cuts_and_resets_on_its_wire() -> None:
    async def scenario() -> None:
        registry = ToxicRegistry()
        wire = FakeWire()
        link = ToxicLink(registry, "s1", "websocket", wire, asyncio.get_running_loop())
        pieces: list[bytes] = []
        whole: list[bool] = []

        async def write() -> bool:
            whole.append(True)
            return True

        assert await link.outbound(b"abcdefgh", pieces.append, write) and whole == [True]  # no toxic: whole
        slicer = registry.add_from("slicer", size=3, delay=0.0)
        assert await link.outbound(b"abcdefgh", pieces.append, write)
        assert pieces == [b"abc", b"def", b"gh"] and whole == [True]
        registry.remove(slicer.id)
        registry.add_from("limit_data", direction="downstream", bytes=5)
        pieces.clear()
        assert not await link.outbound(b"abcdefgh", pieces.append, write)  # cut after 5 bytes, mid-message
        assert pieces == [b"abcde"] and wire.actions == ["drop"]
        other = ToxicLink(registry, "s2", "websocket", FakeWire(), asyncio.get_running_loop())
        registry.add_from("reset_peer", "s2")
        assert other._wire.actions == ["reset"] and wire.actions == ["drop"]  # type: ignore[attr-defined]
        registry.add_from("stall", direction="upstream")
        assert wire.actions == ["drop", "pause=True"]
        link.close()
        other.close()
        assert registry.holding(registry.active()[0]) == 0

    asyncio.run(scenario())
