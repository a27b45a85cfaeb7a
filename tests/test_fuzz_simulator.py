"""Fuzzing the simulator's inputs: ``/connect`` bodies, control-API bodies, ``/chat`` frames, LiveKit data.

Careless and hostile input gets a documented 4xx (or, on a session, the documented error ack) and
never a 5xx, a dead session handler or a stalled loop: after every example the simulator still serves
a valid request. Bounded examples; loopback only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import Simulator
from tests.livekit_helpers import Participant, connect_info

GENEROUS = 10.0
FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
CONNECT_STATUSES = {200, 400, 401, 403, 404, 413, 415, 422, 429}
CONTROL_STATUSES = {200, 400, 401, 404, 413, 422}
#: Client types whose well-formed copies end a session on purpose; never sent by the fuzz.
ENDING_TYPES = {"kill-pipeline"}

numbers = st.one_of(st.integers(min_value=-(10**40), max_value=10**40),
                    st.floats(allow_nan=True, allow_infinity=True))
leaves = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=30))
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _ends_session(payload: bytes) -> bool:
    """True for a well-formed client message that ends the session on purpose (``kill-pipeline``)."""
    try:
        message = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    return isinstance(message, dict) and isinstance(message.get("type"), str) and message["type"] in ENDING_TYPES


def _nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


CONNECT_FIELDS = ("character_id", "transport", "connection_type", "character_session_id", "end_user_id",
                  "end_user_metadata", "audio_config", "dynamic_info", "narrative_template_keys", "mode")
connect_bodies = st.one_of(
    st.dictionaries(st.sampled_from(CONNECT_FIELDS), values, max_size=5).map(_json),
    values.map(_json),
    st.binary(max_size=300),
    st.integers(min_value=100, max_value=50_000).map(_nested),
    st.sampled_from([b"", b"{", b"\xff\xfe", b'{"character_id": "sim-character", "transport": NaN}',
                     b'{"character_id": "\xed\xa0\x80"}', b'{"character_id": 1e400}']),
)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(transport_default="websocket") as server:
        yield server


def _still_serves(sim: Simulator) -> None:
    answer = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id, "transport": "websocket"},
                           headers={"X-API-Key": sim.api_key}, timeout=GENEROUS)
    assert answer.status_code == 200, answer.text
    requests.post(f"{sim.url}/disconnect", params={"session_id": answer.json()["session_id"]}, timeout=GENEROUS)


@pytest.mark.timeout(120)
@FUZZ
@given(body=connect_bodies, content_type=st.sampled_from(["application/json", "text/plain", ""]),
       key=st.sampled_from(["sim-api-key", "wrong", ""]))
def test_connect_bodies_get_a_documented_answer(sim: Simulator, body: bytes, content_type: str, key: str) -> None:
    headers = {"X-API-Key": key} if key else {}
    if content_type:
        headers["Content-Type"] = content_type
    answer = requests.post(f"{sim.url}/connect", data=body, headers=headers, timeout=GENEROUS)
    assert answer.status_code in CONNECT_STATUSES, (answer.status_code, answer.text[:300])
    if answer.status_code == 200:
        requests.post(f"{sim.url}/disconnect", params={"session_id": answer.json()["session_id"]}, timeout=GENEROUS)
    else:
        assert "detail" in answer.json()
    _still_serves(sim)


ROUTES = ("inject", "limits", "idle-warning", "usage-limit", "participant", "rebind-state", "send")
CONTROL_FIELDS = ("code", "session_id", "times", "remaining_seconds", "quota_type", "message", "close",
                  "joined", "participant_id", "outcome", "frame", "reason")


@pytest.mark.timeout(120)
@FUZZ
@given(route=st.sampled_from(ROUTES), token=st.sampled_from(["good", "bad", "", "n\u00f6n-ascii"]),
       body=st.one_of(st.dictionaries(st.sampled_from(CONTROL_FIELDS), values, max_size=4).map(_json),
                      values.map(_json), st.binary(max_size=200),
                      st.integers(min_value=100, max_value=50_000).map(_nested)))
def test_control_api_bodies_get_a_documented_answer(sim: Simulator, route: str, token: str, body: bytes) -> None:
    headers = {"X-Sim-Control-Token": sim.control_token if token == "good" else token} if token else {}
    try:
        answer = requests.post(f"{sim.url}/_sim/{route}", data=body, headers=headers, timeout=GENEROUS)
    except (UnicodeEncodeError, ValueError):
        return  # requests itself refuses a non-Latin-1 header value: nothing was sent
    assert answer.status_code in CONTROL_STATUSES, (route, answer.status_code, answer.text[:300])
    if token != "good":
        assert answer.status_code == 401
    sim.set_limits(concurrency_limit=None, connect_rate_limit=None, usage_quota=None, idle_timeout=None,
                   idle_warning_lead=None, realtime_allowed=True)
    _still_serves(sim)


CLIENT_TYPES = ("user_text_message", "trigger-message", "update-template-keys", "update-dynamic-info",
                "context-update", "tts-toggle", "interrupt-bot", "reset-idle-timer", "no-such-type", "")
frames = st.one_of(
    st.builds(lambda t, d, extra: _json({"label": "rtvi-ai", "type": t, "data": d, **extra}),
              st.sampled_from(CLIENT_TYPES) | values, st.dictionaries(st.text(max_size=12), values, max_size=4)
              | values, st.dictionaries(st.sampled_from(["id", "label"]), values, max_size=2)),
    values.map(_json),
    st.binary(min_size=1, max_size=200),
    st.integers(min_value=100, max_value=20_000).map(_nested),
)


@pytest.fixture(scope="module")
def chat(sim: Simulator) -> Iterator[websocket.WebSocket]:
    answer = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id, "transport": "websocket"},
                           headers={"X-API-Key": sim.api_key}, timeout=GENEROUS)
    ws = websocket.create_connection(answer.json()["room_url"], timeout=GENEROUS)
    try:
        yield ws
    finally:
        ws.close(timeout=1.0)


def _acked(ws: websocket.WebSocket, event_type: str) -> None:
    while True:
        frame = json.loads(ws.recv())
        if frame.get("type") == "server-response" and frame.get("event_type") == event_type:
            return


@pytest.mark.timeout(120)
@FUZZ
@given(payload=frames, binary=st.booleans())
def test_chat_frames_never_kill_the_session(chat: websocket.WebSocket, payload: bytes, binary: bool) -> None:
    if _ends_session(payload):
        return
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        binary = True  # invalid UTF-8 in a text frame is a framing error: RFC 6455 closes with 1007
    opcode = websocket.ABNF.OPCODE_BINARY if binary else websocket.ABNF.OPCODE_TEXT
    chat.send(payload, opcode)
    chat.send(json.dumps({"label": "rtvi-ai", "type": "reset-idle-timer", "data": {}}))
    _acked(chat, "reset-idle-timer")  # the session still answers, in order


@pytest.mark.timeout(180)
@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(payloads=st.lists(st.one_of(st.binary(max_size=300), frames), min_size=1, max_size=4))
def test_livekit_data_garbage_never_kills_the_session(sim: Simulator, payloads: list[bytes]) -> None:
    async def scenario() -> None:
        client = Participant()
        try:
            await client.join(connect_info(sim))
            await client.wait_message("bot-ready")
            for payload in payloads:
                if not _ends_session(payload):
                    await client.room.local_participant.publish_data(payload, reliable=True)
            mark = len(client.messages)
            await client.send({"type": "reset-idle-timer", "data": {}})
            found = await client.wait_message("server-response", mark, timeout=GENEROUS)
            while found.get("event_type") != "reset-idle-timer":
                mark = client.messages.index(found, mark) + 1
                found = await client.wait_message("server-response", mark, timeout=GENEROUS)
        finally:
            await client.close()
    asyncio.run(scenario())
