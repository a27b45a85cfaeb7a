"""The simulator's LiveKit side without a client: /connect answers, tokens, validation, the missing extra."""

from __future__ import annotations

import jwt
import pytest
import requests

import simulator.carriers.livekit
from simulator import Simulator
from tests.livekit_helpers import HTTP_TIMEOUT


def _connect(sim: Simulator, **body: object) -> requests.Response:
    payload: dict[str, object] = {"character_id": sim.character_id}
    payload.update(body)
    return requests.post(f"{sim.url}/connect", json=payload, headers={"x-api-key": sim.api_key},
                         timeout=HTTP_TIMEOUT)


@pytest.mark.timeout(20)
def test_connect_answers_a_livekit_room_and_token() -> None:
    with Simulator(token_ttl=120) as sim:
        for transport in (None, "livekit", "internal", "external"):
            body = {} if transport is None else {"transport": transport}
            answer = _connect(sim, end_user_id="player-7", **body)
            assert answer.status_code == 200, answer.text
            info = answer.json()
            assert info["room_url"] == sim.livekit_url and info["room_name"].startswith("convai-room-")
            claims = jwt.decode(info["token"], options={"verify_signature": False})
            assert claims["sub"] == "player-7"
            assert claims["video"] == {"roomJoin": True, "room": info["room_name"], "canPublish": True,
                                       "canSubscribe": True, "canPublishData": True}
            assert 115 <= claims["exp"] - claims["nbf"] <= 121
        anonymous = jwt.decode(_connect(sim).json()["token"], options={"verify_signature": False})
        assert anonymous["sub"].startswith("user-")
        assert sim.slots_in_use() == 5  # held until the join window passes or the session ends


@pytest.mark.timeout(20)
def test_transport_default_websocket() -> None:
    with Simulator(transport_default="websocket") as sim:
        info = _connect(sim).json()
        assert info["room_url"].startswith("ws://") and "/chat?session_id=" in info["room_url"]
        assert info["token"] == ""
    with pytest.raises(ValueError):
        Simulator(transport_default="sse")


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("audio_config", "field"), [
    ({"output": {"audio_routing": "loud"}}, "audio_routing"),
    ({"output": {"max_chunk_duration_ms": 5}}, "max_chunk_duration_ms"),
    ({"output": {"sample_rate": 1234}}, "sample_rate"),
    ({"output": {"add_wav_header": "yes"}}, "add_wav_header"),
    ({"output": {"volume": 3}}, "volume"),
    ({"input": {}}, "input"),
    ("loud", "audio_config"),
])
def test_audio_config_is_validated(audio_config: object, field: str) -> None:
    with Simulator() as sim:
        answer = _connect(sim, transport="livekit", audio_config=audio_config)
        assert answer.status_code == 422
        assert field in answer.json()["detail"][0]["msg"]
        assert sim.slots_in_use() == 0
        websocket = _connect(sim, transport="websocket", audio_config={"output": {}})
        assert websocket.status_code == 400 and "only supported with LiveKit" in websocket.json()["detail"]


def test_audio_config_defaults_and_rounding() -> None:
    checked = simulator.carriers.livekit.check_audio_config({"output": {"max_chunk_duration_ms": 95}})
    assert checked == {"add_wav_header": False, "sample_rate": None, "max_chunk_duration_ms": 100,
                       "audio_routing": "audio_only"}


@pytest.mark.timeout(20)
def test_bad_join_requests_are_refused_before_the_upgrade() -> None:
    with Simulator() as sim:
        info = _connect(sim).json()
        headers = {"Authorization": f"Bearer {info['token']}"}
        garbage = requests.get(f"{sim.url}/rtc/v1", params={"join_request": "!!!"}, headers=headers,
                               timeout=HTTP_TIMEOUT)
        assert garbage.status_code == 400
        missing = requests.get(f"{sim.url}/rtc/v1", headers=headers, timeout=HTTP_TIMEOUT)
        assert missing.status_code == 400 and "join_request" in missing.text
        other = Simulator()
        with other:
            foreign = requests.get(f"{other.url}/rtc/v1/validate", headers=headers, timeout=HTTP_TIMEOUT)
            assert foreign.status_code == 401 and "invalid token" in foreign.text


@pytest.mark.timeout(20)
def test_without_the_extra_livekit_requests_name_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulator.carriers.livekit, "missing_modules", lambda: ["aiortc"])
    with Simulator() as sim:
        assert sim.livekit_available is False
        answer = _connect(sim, transport="livekit")
        assert answer.status_code == 400 and "simulator-livekit" in answer.json()["detail"]
        signal = requests.get(f"{sim.url}/rtc/v1", timeout=HTTP_TIMEOUT)
        assert signal.status_code == 503 and "simulator-livekit" in signal.json()["detail"]
        assert _connect(sim, transport="websocket").status_code == 200
        with pytest.raises(RuntimeError, match="simulator-livekit"):
            sim.refuse_livekit_join(401)


BLOCKED_IMPORT_CHECK = r'''
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("aiortc", "aioice", "av") or name.startswith(("livekit.protocol", "livekit.api")):
            raise ModuleNotFoundError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, Block())
import requests, websocket
from simulator import Simulator
with Simulator() as sim:
    body = {"character_id": sim.character_id, "transport": "websocket"}
    info = requests.post(sim.url + "/connect", json=body, headers={"x-api-key": sim.api_key}, timeout=5).json()
    ws = websocket.create_connection(info["room_url"], timeout=5)
    assert "interaction-created" in ws.recv()
    ws.close()
    lk = requests.post(sim.url + "/connect", json={"character_id": sim.character_id},
                       headers={"x-api-key": sim.api_key}, timeout=5)
    assert lk.status_code == 400 and "simulator-livekit" in lk.json()["detail"], lk.text
print("ok")
'''


@pytest.mark.timeout(60)
def test_websocket_sessions_work_without_the_livekit_packages() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT_CHECK], capture_output=True, text=True,
                          timeout=50, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
