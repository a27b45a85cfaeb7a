"""What Convai's Web SDK needs from the simulator, checked without a browser: CORS, TURN (``turn=URL`` and
``turn="auto"``, and convai_sync's ``ice_transport_policy="relay"`` through it), ``POST /user/speaker/new`` and
the message forms (top-level by default, ``server-message`` on request, one form per event; convai_sync reads
both)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from convai_sync import ConvaiClient
from convai_sync.events import ActionResponse, BotStartedSpeaking, BotStoppedSpeaking, ServerMessage, UserTranscription
from convai_sync.testing import Recorder
from simulator import Simulator
from simulator.__main__ import _simulator, build_parser
from simulator.core.character import default_reply
from simulator.core.ice import TurnServer, TurnUnavailable, parse_turn
from simulator.core.wire import TOP_LEVEL_TYPES
from tests.sim_helpers import close_all_sockets, connect_ws, etype, post_connect, recv

TIMEOUT = 5.0
PAGE = "http://127.0.0.1:5173"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(speaker_limit=2) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _sockets() -> Iterator[None]:
    yield
    close_all_sockets()


def preflight(sim: Simulator, origin: str, path: str = "/connect") -> requests.Response:
    return requests.options(f"{sim.url}{path}", timeout=TIMEOUT, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key,content-type"})


# ============================================================================ CORS


@pytest.mark.parametrize("origin", ["http://localhost:5173", "http://127.0.0.1:8080", "http://[::1]:3000"])
def test_a_loopback_page_gets_its_preflight_and_its_answer(sim: Simulator, origin: str) -> None:
    answer = preflight(sim, origin)
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    allowed = {h.strip() for h in answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"x-api-key", "api-auth-token", "content-type", "convai-api-key"} <= allowed
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    connected = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id, "transport": "websocket"},
                              headers={"x-api-key": sim.api_key, "Origin": origin}, timeout=TIMEOUT)
    assert connected.status_code == 200 and connected.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in connected.headers["Vary"]
    requests.post(f"{sim.url}/disconnect", params={"session_id": connected.json()["session_id"]},
                  headers={"Origin": origin}, timeout=TIMEOUT)
    sim.wait_for_slots(0)


@pytest.mark.parametrize("origin", ["http://evil.example", "https://localhost:5173", "http://localhost.evil:80",
                                    "null"])
def test_any_other_page_is_refused_before_the_route(sim: Simulator, origin: str) -> None:
    assert preflight(sim, origin).status_code == 403
    refused = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id, "transport": "websocket"},
                            headers={"x-api-key": sim.api_key, "Origin": origin}, timeout=TIMEOUT)
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
    assert sim.slots_in_use() == 0


def test_listed_origins_and_the_wildcard(caplog: pytest.LogCaptureFixture) -> None:
    with Simulator(cors_origins=["https://game.example"]) as listed:
        assert preflight(listed, "https://game.example").status_code == 204
        assert preflight(listed, "https://other.example").status_code == 403
    with caplog.at_level(logging.WARNING, logger="simulator.http.cors"), Simulator(cors_origins=["*"]) as anyone:
        assert preflight(anyone, "https://other.example").headers["Access-Control-Allow-Origin"] == \
            "https://other.example"
    assert any("every origin" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("bad", [["game.example"], ["http://game.example/path"], "http://game.example", [3]])
def test_a_bad_origin_is_refused_at_construction(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="cors_origins"):
        Simulator(cors_origins=bad)


def test_the_cli_takes_turn_cors_origins_and_the_message_form() -> None:
    args = build_parser().parse_args(["--turn", "turn://u:p@127.0.0.1:3478", "--cors-origin", "https://a.example",
                                      "--cors-origin", "https://b.example", "--message-form", "server-message"])
    sim = _simulator(args)
    assert (args.turn, args.cors_origins, args.message_form) == (
        "turn://u:p@127.0.0.1:3478", ["https://a.example", "https://b.example"], "server-message")
    assert sim._config.ice_servers == (TurnServer(("turn:127.0.0.1:3478?transport=udp",), "u", "p"),)
    assert sim._config.cors_origins == ("https://a.example", "https://b.example")


# ============================================================================ TURN


def test_turn_urls_are_parsed_with_their_credentials() -> None:
    server = parse_turn("turn://user%40x:p%3Ass@127.0.0.1:3479?transport=tcp")
    assert server == TurnServer(("turn:127.0.0.1:3479?transport=tcp",), "user@x", "p:ss")
    assert "p:ss" not in repr(server)
    assert parse_turn("turns://u:p@[::1]").urls == ("turns:[::1]:5349?transport=udp",)
    for bad in ("stun://u:p@host:1", "turn://host:3478", "turn://u:p@host:99999", "turn://u:p@host?transport=sctp"):
        with pytest.raises(ValueError, match="turn") as refused:
            parse_turn(bad)
        assert ":p@" not in str(refused.value)


def test_turn_auto_without_coturn_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    sim = Simulator(turn="auto")
    with pytest.raises(TurnUnavailable, match="coturn"):
        sim.start()
    assert not sim.running


def test_turn_auto_runs_coturn_for_the_simulators_lifetime() -> None:
    with Simulator(turn="auto") as sim:
        assert sim._coturn is not None
        process = sim._coturn._process
        (server,) = sim._config.ice_servers
        assert server.urls == (f"turn:127.0.0.1:{sim._coturn.port}?transport=udp",) and server.credential
        assert process.poll() is None
    assert process.wait(timeout=TIMEOUT) is not None


def test_the_python_sdk_joins_relay_only_through_turn_auto() -> None:
    """convai_sync with ``ice_transport_policy="relay"`` (TURN candidates only, as the Web SDK joins) and the
    real ``livekit`` client: the JoinResponse's TURN server is the only way in."""
    with Simulator(turn="auto") as sim, ConvaiClient(sim.client_config(
            transport="livekit", ice_transport_policy="relay", connection_timeout=15.0)) as client:
        client.connect(timeout=20)
        assert client.ask("Hello there", timeout=20).text == default_reply("Hello there", 1)



# ============================================================================ POST /user/speaker/new


def new_speaker(sim: Simulator, device: Any, key: str | None = None) -> requests.Response:
    return requests.post(f"{sim.url}/user/speaker/new", json={"deviceId": device}, timeout=TIMEOUT,
                         headers={"CONVAI-API-KEY": sim.api_key if key is None else key})


def test_a_device_gets_one_speaker_id_within_the_speaker_limit(sim: Simulator) -> None:
    first = new_speaker(sim, "device-1")
    assert first.status_code == 200 and isinstance(first.json()["speakerId"], str)
    assert new_speaker(sim, "device-1").json() == first.json()
    assert new_speaker(sim, "device-2").status_code == 200
    over = new_speaker(sim, "device-3")
    assert (over.status_code, over.json()["detail"]) == (429, "Speaker limit reached")
    # The device counts as /connect's end_user_id does: it may connect, a third speaker may not.
    assert post_connect(sim, end_user_id="device-1").status_code == 200
    assert post_connect(sim, end_user_id="device-3").status_code == 429


def test_speaker_requests_are_checked(sim: Simulator) -> None:
    assert new_speaker(sim, "device-1", key="wrong").status_code == 401
    assert new_speaker(sim, "").status_code == 422
    assert new_speaker(sim, 7).status_code == 422
    assert preflight(sim, PAGE, "/user/speaker/new").status_code == 204


# ============================================================================ message forms


def turn_frames(sim: Simulator) -> list[dict[str, Any]]:
    """Every frame of one typed turn on the /chat WebSocket, up to bot-turn-completed."""
    info = post_connect(sim).json()
    ws = connect_ws(info["room_url"])
    frames = [recv(ws)]
    ws.send('{"type": "user_text_message", "data": {"text": "Hello there"}}')
    while etype(frames[-1]) != "bot-turn-completed":
        frames.append(recv(ws))
    return frames


def test_top_level_is_the_default_and_server_message_is_selectable() -> None:
    with Simulator() as top, Simulator(message_form="server-message") as wrapped:
        for server, expected in ((top, "top"), (wrapped, "wrapped")):
            frames = turn_frames(server)
            seen = [etype(f) for f in frames]
            for event in ("user-transcription", "bot-started-speaking", "bot-stopped-speaking", "action-response"):
                assert seen.count(event) == 1, (event, seen)  # one form only, never both
            for frame in frames:
                if etype(frame) in TOP_LEVEL_TYPES:
                    assert (frame["type"] == etype(frame)) is (expected == "top"), frame
                    assert "type" not in frame["data"] or expected == "wrapped"
            typed = next(f for f in frames if etype(f) == "user-transcription")
            data = typed["data"]
            assert (data["text"], data["final"]) == ("Hello there", True)
    with pytest.raises(ValueError, match="message_form"):
        Simulator(message_form="both")


@pytest.mark.parametrize("form", ["top-level", "server-message"])
def test_convai_sync_reads_both_forms(form: str) -> None:
    messages: Recorder[ServerMessage] = Recorder()
    with Simulator(message_form=form) as sim, ConvaiClient(sim.client_config(transport="websocket")) as client:
        client.events.on_message.subscribe(messages)
        client.connect(timeout=TIMEOUT)
        assert client.ask("Hello there", timeout=TIMEOUT).text == default_reply("Hello there", 1)
        client.disconnect()
    kinds = [type(m) for m in messages.of(ServerMessage)]
    for kind in (UserTranscription, BotStartedSpeaking, BotStoppedSpeaking, ActionResponse):
        assert kinds.count(kind) == 1, (kind, kinds)

