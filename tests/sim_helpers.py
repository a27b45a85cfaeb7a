"""Raw-socket helpers for the simulator tests (``requests`` + websocket-client; no convai_sync client)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
import websocket

from simulator import Simulator

JSON = dict[str, Any]
WS_TIMEOUT = 5.0


_sockets: list[websocket.WebSocket] = []


def close_all_sockets() -> None:
    """Shut every socket :func:`connect_ws` opened (call after each test)."""
    while _sockets:
        _sockets.pop().shutdown()  # type: ignore[no-untyped-call]


def connect_ws(url: str, timeout: float = WS_TIMEOUT) -> websocket.WebSocket:
    ws = websocket.create_connection(url, timeout=timeout)
    _sockets.append(ws)
    return ws



def post_connect(sim: Simulator, key: str | None = None, **body: Any) -> requests.Response:
    payload: JSON = {"character_id": sim.character_id, "transport": "websocket"}
    payload.update(body)
    headers = {"x-api-key": sim.api_key if key is None else key}
    return requests.post(f"{sim.url}/connect", json=payload, headers=headers, timeout=WS_TIMEOUT)


def recv(ws: websocket.WebSocket) -> JSON:
    frame = json.loads(ws.recv())
    assert isinstance(frame, dict)
    return frame


def etype(frame: JSON) -> str:
    """PROTOCOL.md §1.7 demux rule."""
    data = frame.get("data")
    if frame.get("type") == "server-message" and isinstance(data, dict) and data.get("type"):
        return str(data["type"])
    return str(frame["type"])


def recv_until(ws: websocket.WebSocket, wanted: str) -> list[JSON]:
    frames = [recv(ws)]
    while etype(frames[-1]) != wanted:
        frames.append(recv(ws))
    return frames


def send(ws: websocket.WebSocket, msg_type: str, data: JSON | None = None) -> None:
    ws.send(json.dumps({"label": "rtvi-ai", "type": msg_type, "id": str(uuid.uuid4()), "data": data or {}}))


def open_session(sim: Simulator, **body: Any) -> tuple[JSON, websocket.WebSocket]:
    """/connect, open the WebSocket, read interaction-created and bot-ready."""
    response = post_connect(sim, **body)
    assert response.status_code == 200, response.text
    info = response.json()
    ws = connect_ws(info["room_url"], timeout=WS_TIMEOUT)
    created = recv(ws)
    assert etype(created) == "interaction-created"
    assert created["data"]["interaction_id"].startswith("int_")
    assert created["data"]["character_session_id"] == info["character_session_id"]
    ready = recv(ws)
    assert ready["type"] == "bot-ready" and ready["label"] == "rtvi-ai" and len(ready["id"]) == 8
    return info, ws


def close_of(ws: websocket.WebSocket) -> tuple[int, str]:
    """Read frames until the server's close frame; returns (code, reason)."""
    while True:
        opcode, frame = ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(frame.data[:2], "big"), frame.data[2:].decode()


def assert_dropped(ws: websocket.WebSocket) -> None:
    """The TCP connection ends with no close frame."""
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while True:
            opcode, _ = ws.recv_data_frame(True)
            assert opcode != websocket.ABNF.OPCODE_CLOSE, "got a close frame, expected a TCP drop"


def assert_connection_ended(ws: websocket.WebSocket, within: float = 10.0) -> None:
    """The server closed or reset the client's TCP connection (pending data is read and discarded)."""
    sock = ws.sock
    assert sock is not None
    sock.settimeout(within)
    try:
        while sock.recv(1 << 20):
            pass
    except ConnectionError:
        pass
    except TimeoutError:
        raise AssertionError(f"the server left the stalled connection open for {within} s") from None
