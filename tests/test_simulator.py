"""The simulator's HTTP endpoints, limits and conversation, driven over raw sockets.

Expected statuses, texts and frames are written here from PROTOCOL.md and the wire contract, not read
from the simulator's own tables, so a wrong table fails these tests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websocket

from simulator import ErrorCode, Simulator
from tests.sim_helpers import (
    WS_TIMEOUT,
    close_all_sockets,
    close_of,
    connect_ws,
    etype,
    open_session,
    post_connect,
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


# ------------------------------------------------------------------ /connect


@pytest.mark.timeout(10)
def test_connect_ok_body(sim: Simulator) -> None:
    response = post_connect(sim, end_user_id="  player-1 ", end_user_metadata={"name": "Ann"})
    assert response.status_code == 200
    body = response.json()
    uuid.UUID(body["session_id"])
    uuid.UUID(body["character_session_id"])
    assert body["request_trace_id"].startswith("req_") and len(body["request_trace_id"]) == 36
    assert body["room_url"] == f"ws://127.0.0.1:{sim.port}/chat?session_id={body['session_id']}"
    assert body["room_name"] is None and body["token"] == ""
    assert body["end_user_id"] == "player-1" and body["end_user_metadata"] == {"name": "Ann"}
    assert sim.url == f"http://127.0.0.1:{sim.port}"
    assert requests.get(f"{sim.url}/healthz", timeout=WS_TIMEOUT).json()["status"] == "ok"


CONNECT_ROWS: dict[str, tuple[int, str | None]] = {
    "connection.connect_invalid_api_key": (401, "Invalid API key"),
    "connection.invalid_token": (401, None),
    "connection.auth_failed": (403, None),
    "connection.connect_invalid_session_id": (400, "Invalid session ID format"),
    "connection.connect_character_not_found": (404, "Character not found or doesn't belong to user"),
    "connection.not_found": (404, None),
    "connection.connect_realtime_not_allowed": (403, None),
    "connection.connect_multi_character_not_allowed": (403, "multi_character_v0_disabled"),
    "connection.connect_multi_character_roster_limit": (403, "multi_character_roster_limit_exceeded"),
    "connection.connect_concurrency_limit_reached": (429, "Concurrency limit reached for your plan"),
    "connection.connect_speaker_limit_reached": (429, "Speaker limit reached"),
    "connection.rate_limited": (429, None),
    "connection.connect_bot_start_failed": (500, "Failed to start bot"),
    "connection.connect_unhandled_server_exception": (500, "Internal server error"),
    "connection.connect_validation_error": (422, None),
    "connection.service_unavailable": (503, None),
    "connection.server_error": (502, None),
    "connection.bad_request": (400, None),
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("code", sorted(CONNECT_ROWS))
def test_connect_injection_rows(sim: Simulator, code: str) -> None:
    status, text = CONNECT_ROWS[code]
    assert sim.inject(code, times=2) == 0
    for _ in range(2):
        response = post_connect(sim)
        assert response.status_code == status
        detail = response.json()["detail"]
        if status == 422:
            assert isinstance(detail, list) and {"type", "loc", "msg", "input"} <= set(detail[0])
            continue
        assert isinstance(detail, str) and detail
        if text is not None:
            assert text in detail
        lowered = detail.lower()
        if status == 429 and code != "connection.connect_speaker_limit_reached":
            assert "speaker" not in lowered
        if status == 403 and "multi_character" not in code:
            assert "multi_character" not in lowered
        if code == "connection.bad_request":
            assert "invalid session" not in lowered and "invalid uuid" not in lowered
    assert post_connect(sim).status_code == 200


@pytest.mark.timeout(10)
def test_connect_special_injections(sim: Simulator) -> None:
    sim.inject(ErrorCode.CONNECTION_NETWORK_ERROR)
    with pytest.raises(requests.ConnectionError):
        post_connect(sim)
    sim.inject(ErrorCode.CONNECTION_FAILED)
    body = post_connect(sim).json()
    assert "session_id" not in body and "room_url" not in body
    sim.inject("connection.timeout")
    info = post_connect(sim).json()
    ws = connect_ws(info["room_url"], timeout=0.3)
    assert etype(recv(ws)) == "interaction-created"
    with pytest.raises(websocket.WebSocketTimeoutException):
        recv(ws)  # bot-ready never comes
    ws.close()
    sim.wait_for_slots(0)


@pytest.mark.timeout(10)
def test_connect_auth_and_validation_errors() -> None:
    with Simulator(realtime_allowed=False) as sim:
        assert post_connect(sim).status_code == 403
    with Simulator() as sim:
        bare = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id}, timeout=WS_TIMEOUT)
        assert bare.status_code == 401
        assert bare.json()["detail"] == "Authentication required: provide X-API-Key or API-AUTH-TOKEN"
        wrong = post_connect(sim, key="nope")
        assert (wrong.status_code, wrong.json()["detail"]) == (401, "Invalid API key")
        missing = post_connect(sim, character_id="ghost")
        assert (missing.status_code, missing.json()["detail"]) == (
            404, "Character not found or doesn't belong to user")
        bad_audio = post_connect(sim, transport="livekit", audio_config={"output": {"audio_routing": "radio"}})
        assert bad_audio.status_code == 422 and "audio_routing" in bad_audio.json()["detail"][0]["msg"]
        assert post_connect(sim, transport="sse").status_code == 422
        bad_csid = post_connect(sim, character_session_id="not-a-uuid")
        assert bad_csid.status_code == 400 and "invalid character_session_id" in bad_csid.json()["detail"].lower()
        assert sim.slots_in_use() == 0


@pytest.mark.timeout(10)
def test_disconnect_endpoint(sim: Simulator) -> None:
    bad = requests.post(f"{sim.url}/disconnect", params={"session_id": "x"}, timeout=WS_TIMEOUT)
    assert (bad.status_code, bad.json()["detail"]) == (400, "Invalid session ID format")
    unknown = requests.post(f"{sim.url}/disconnect", params={"session_id": str(uuid.uuid4())}, timeout=WS_TIMEOUT)
    assert unknown.status_code == 200
    assert unknown.json() == {"status": "success", "message": "Session disconnected successfully"}


# ------------------------------------------------------------------ limits and slots


@pytest.mark.timeout(10)
def test_concurrency_slot_held_and_freed() -> None:
    with Simulator(concurrency_limit=1) as sim:
        first = post_connect(sim).json()
        refused = post_connect(sim)
        assert (refused.status_code, refused.json()["detail"]) == (429, "Concurrency limit reached for your plan")
        requests.post(f"{sim.url}/disconnect", params={"session_id": first["session_id"]}, timeout=WS_TIMEOUT)
        assert sim.slots_in_use() == 0
        _, ws = open_session(sim)
        assert post_connect(sim).status_code == 429
        ws.close()  # client closes the WebSocket: the slot frees
        sim.wait_for_slots(0, timeout=3)
        assert post_connect(sim).status_code == 200


@pytest.mark.timeout(10)
def test_join_window_frees_slot() -> None:
    with Simulator(concurrency_limit=1, join_window=0.2) as sim:
        assert post_connect(sim).status_code == 200
        assert sim.slots_in_use() == 1
        sim.wait_for_slots(0, timeout=3)
        assert post_connect(sim).status_code == 200


@pytest.mark.timeout(10)
def test_speaker_and_rate_limits() -> None:
    with Simulator(speaker_limit=1) as sim:
        assert post_connect(sim, end_user_id="a").status_code == 200
        assert post_connect(sim, end_user_id="a").status_code == 200
        refused = post_connect(sim, end_user_id="b")
        assert (refused.status_code, refused.json()["detail"]) == (429, "Speaker limit reached")
    with Simulator(connect_rate_limit=2) as sim:
        assert [post_connect(sim).status_code for _ in range(3)] == [200, 200, 429]
        assert "speaker" not in post_connect(sim).json()["detail"].lower()


# ------------------------------------------------------------------ WebSocket conversation


@pytest.mark.timeout(10)
def test_reply_sequence_and_resume(sim: Simulator) -> None:
    info, ws = open_session(sim)
    ws.send(json.dumps({"label": "rtvi-ai", "type": "user_text_message", "id": "m1",
                        "data": {"text": "hello", "message_id": "m1"}}))
    frames = recv_until(ws, "bot-turn-completed")
    types = [etype(f) for f in frames]
    # The typed text comes back as the user's final transcription (the Web SDK shows it from that) first.
    assert types == ["server-response", "user-transcription", "final-user-transcription", "bot-llm-started"] + [
        "bot-llm-text"] * (
        types.count("bot-llm-text")) + ["bot-llm-stopped", "action-response", "bot-emotion", "bot-tts-started",
                                        "bot-started-speaking", "bot-stopped-speaking", "bot-turn-completed"]
    assert frames[0] == {"type": "server-response", "event_type": "user_text_message", "status": "success",
                         "message": "User text message processed", "extras": {"text": "hello"}}
    assert frames[1] == {"label": "rtvi-ai", "type": "user-transcription", "data": {"text": "hello", "final": True}}
    assert frames[2]["data"]["message_id"] == "m1" and frames[2]["data"]["text"] == "hello"
    chunks = [f["data"]["text"] for f in frames if f["type"] == "bot-llm-text"]
    assert len(chunks) >= 3
    assert "".join(chunks) == "You said: hello. This is turn 1 of our conversation. I am a simulated Convai character."
    assert frames[-1]["data"]["was_interrupted"] is False
    session = sim.wait_for_session()
    assert session.session_id == info["session_id"] and "sim-api-key" not in repr(session)
    assert sim.wait_for_received(session.session_id, "user_text_message")["data"]["text"] == "hello"
    ws.close()
    _, ws2 = open_session(sim, character_session_id=info["character_session_id"])
    send(ws2, "user_text_message", {"text": "again"})
    text = "".join(f["data"]["text"] for f in recv_until(ws2, "bot-llm-stopped") if f["type"] == "bot-llm-text")
    assert "turn 2" in text
    ws2.close()


@pytest.mark.timeout(10)
def test_responder_none_and_tts_off() -> None:
    with Simulator(responder=lambda text: None if text == "quiet" else text.upper()) as sim:
        _, ws = open_session(sim, default_tts_enabled=False)
        send(ws, "user_text_message", {"text": "quiet"})
        frames = recv_until(ws, "llm-no-response")
        assert frames[-1]["data"]["reason"] == "abstain"
        assert "bot-llm-started" not in [etype(f) for f in frames]
        send(ws, "user_text_message", {"text": "loud"})
        frames = recv_until(ws, "bot-turn-completed")
        assert "".join(f["data"]["text"] for f in frames if f["type"] == "bot-llm-text") == "LOUD"
        assert "bot-tts-started" not in [etype(f) for f in frames]


@pytest.mark.timeout(10)
def test_interrupt_stops_streaming_reply() -> None:
    with Simulator(chunk_delay=0.2) as sim:
        _, ws = open_session(sim)
        send(ws, "user_text_message", {"text": "tell me a long story"})
        recv_until(ws, "bot-llm-text")
        send(ws, "interrupt-bot")
        frames = recv_until(ws, "bot-turn-completed")
        assert {"type": "server-response", "event_type": "interrupt-bot", "status": "success"} in frames
        assert frames[-1]["data"]["was_interrupted"] is True
        assert "bot-started-speaking" not in [etype(f) for f in frames]


@pytest.mark.timeout(10)
def test_bad_frames_get_protocol_acks(sim: Simulator) -> None:
    _, ws = open_session(sim)
    ws.send("{not json")
    assert recv(ws) == {"type": "server-response", "event_type": "parse-error", "status": "error",
                        "message": "Failed to parse message: invalid JSON or UTF-8 encoding", "extras": None}
    ws.send(json.dumps({"label": "rtvi-ai", "data": {"x": 1}}))
    ack = recv(ws)
    assert (ack["event_type"], ack["status"], ack["message"]) == (
        "validation-error", "error", "Message missing required 'type' field")
    assert ack["extras"]["received_message"] == {"label": "rtvi-ai", "data": {"x": 1}}
    send(ws, "send-text", {"text": "x"})
    ack = recv(ws)
    assert (ack["event_type"], ack["status"]) == ("send-text", "error")
    assert ack["message"] == "Unknown message type: send-text"
    assert len(ack["extras"]["supported_types"]) == 12 and "user_text_message" in ack["extras"]["supported_types"]
    ws.send(json.dumps({"type": "client-message", "data": {"t": "tts-toggle", "d": {"enabled": False}}}))
    assert recv(ws) == {"type": "server-response", "event_type": "tts-toggle", "status": "success",
                        "message": "TTS disabled", "extras": {"enabled": False}}
    ws.send(json.dumps({"type": "stt-toggle", "data": {"muted": True}}))
    assert recv(ws)["message"] == "STT muted"


@pytest.mark.timeout(10)
def test_control_message_acks(sim: Simulator) -> None:
    _, ws = open_session(sim)
    send(ws, "context-update", {"text": "x" * 40, "update_id": "u1"})
    ack = recv(ws)
    extras = ack["extras"]
    assert ack["status"] == "success" and extras["runtime_token_count"] == 10 and extras["token_count"] == 10
    assert (extras["max_tokens"], extras["static_max_tokens"], extras["runtime_max_tokens"]) == (50000, 20000, 30000)
    assert extras["remaining_tokens"] == 49990 and extras["update_id"] == "u1" and extras["duplicate"] is False
    send(ws, "context-update", {"text": "x" * 40, "update_id": "u1"})
    assert recv(ws)["extras"]["duplicate"] is True
    send(ws, "context-update", {"text": "y" * 100_000})  # 25,000 tokens: oldest entries are trimmed
    send(ws, "context-update", {"text": "z" * 40_000})
    recv(ws)
    assert recv(ws)["extras"]["runtime_token_count"] == 10_000
    send(ws, "context-update", {"mode": "reset"})
    assert recv(ws)["extras"]["token_count"] == 0
    send(ws, "trigger-message", {"trigger_name": "a", "trigger_message": "b"})
    assert recv(ws)["status"] == "error"
    send(ws, "trigger-message", {"trigger_message": "<speak>Welcome!</speak>"})
    ack = recv(ws)
    assert (ack["message"], ack["extras"]["has_speak_tag"]) == ("Trigger message processed successfully", True)
    text = "".join(f["data"]["text"] for f in recv_until(ws, "bot-llm-stopped") if f["type"] == "bot-llm-text")
    assert text == "Welcome!"
    recv_until(ws, "bot-turn-completed")
    expected: dict[str, tuple[dict[str, Any], str | None]] = {
        "update-template-keys": ({"template_keys": {"a": "b"}}, "Template keys updated successfully"),
        "update-scene-metadata": ({"scene_metadata": []}, "Scene metadata updated successfully"),
        "update-dynamic-info": ({"dynamic_info": {}}, "No text provided in dynamic info"),
        "tts-toggle": ({"enabled": True}, "TTS enabled"),
        "reset-idle-timer": ({}, None),
        "force-user-stopped-speaking": ({}, None),
        "usage-toggle": ({"enabled": True}, None),
    }
    for msg_type, (data, message) in expected.items():
        send(ws, msg_type, data)
        ack = recv(ws)
        assert (ack["event_type"], ack.get("message")) == (msg_type, message)
    send(ws, "kill-pipeline")
    ack = recv(ws)
    assert (ack["message"], ack["extras"]) == ("Pipeline killed successfully", {"room_name": None})
    assert close_of(ws) == (1000, "Pipeline killed")
