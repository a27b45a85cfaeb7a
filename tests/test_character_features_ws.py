"""The simulated character's game features on the ``/chat`` WebSocket, at the wire (raw JSON, no SDK):
narrative triggers and sections, actions, lip-sync frames, turn delays and ``metrics``."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from simulator import Simulator
from simulator.carriers.websocket import pipecat
from simulator.core.characters import shipped_character
from simulator.core.features import FORMAT_VALUES
from simulator.core.lipsync import MOUTH_INDEX
from simulator.core.speech import VOICE_RATE, tone, voice_seconds
from tests.sim_helpers import close_all_sockets, etype, open_session, post_connect, send

pytestmark = pytest.mark.timeout(60)

KEYS = {"player_name": "Ada", "sword_price": "30"}
JSON = dict[str, Any]


@pytest.fixture(autouse=True)
def _sockets() -> Iterator[None]:
    yield
    close_all_sockets()


@pytest.fixture(scope="module")
def shop() -> Iterator[Simulator]:
    with Simulator(characters_file=shipped_character("shopkeeper")) as sim:
        sim.define_characters(["plain"])
        yield sim


class Reader:
    """Reads a session's frames: JSON texts in order, binary Pipecat audio counted (bytes, by arrival)."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws
        self.frames: list[JSON] = []
        self.audio_bytes = 0

    def next(self) -> JSON:
        while True:
            raw = self.ws.recv()
            if isinstance(raw, bytes):
                parsed = pipecat.parse(raw)
                if isinstance(parsed, pipecat.Audio):
                    self.audio_bytes += len(parsed.pcm)
                continue
            frame = json.loads(raw)
            assert isinstance(frame, dict)
            self.frames.append(frame)
            return frame

    def until(self, wanted: str) -> list[JSON]:
        start = len(self.frames)
        while etype(self.next()) != wanted:
            pass
        return self.frames[start:]


def session(sim: Simulator, **body: Any) -> Reader:
    _info, ws = open_session(sim, **body)
    return Reader(ws)


def of(frames: list[JSON], wanted: str) -> list[JSON]:
    return [f["data"] for f in frames if etype(f) == wanted]


def text_of(frames: list[JSON]) -> str:
    return "".join(d["text"] for d in of(frames, "bot-llm-text"))


# ------------------------------------------------------------------ narrative


def test_triggers_move_the_story_through_its_sections(shop: Simulator) -> None:
    reader = session(shop, narrative_template_keys=KEYS)
    live = shop.wait_for_session()
    assert live.narrative_section_id == "greeting"
    send(reader.ws, "user_text_message", {"text": "What is this place?"})
    turn = reader.until("bot-turn-completed")
    # The echo shows where the story is and the section's objective, its template keys filled.
    assert text_of(turn).endswith("(Greeting: Greet Ada and invite them to browse the shop.)")

    send(reader.ws, "trigger-message", {"trigger_name": "enter_shop"})
    frames = reader.until("bot-turn-completed")
    ack, moved = frames[0], frames[1]
    assert ack == {"type": "server-response", "event_type": "trigger-message", "status": "success",
                   "message": "Trigger message processed successfully",
                   "extras": {"trigger_name": "enter_shop", "has_speak_tag": False}}
    assert moved["type"] == "server-message" and moved["data"] == {
        "type": "behavior-tree-response", "bt_code": "browse()", "bt_constants": "wares=sword,shield,potion",
        "narrative_section_id": "browsing"}
    assert text_of(frames) == "Take your time, Ada. The sword on the wall is my finest piece."
    assert of(frames, "final-user-transcription") == []  # a trigger is no user speech
    assert live.narrative_section_id == "browsing"

    send(reader.ws, "update-template-keys", {"template_keys": {"player_name": "Bo"}})
    assert reader.until("server-response")[-1]["status"] == "success"
    send(reader.ws, "trigger-message", {"trigger_name": "show_sword"})
    frames = reader.until("bot-turn-completed")
    assert of(frames, "behavior-tree-response")[0]["narrative_section_id"] == "haggling"
    assert text_of(frames) == "Ah, the sword! For you, Bo, 30 gold."

    # A section without speech: the story moves silently.
    send(reader.ws, "trigger-message", {"trigger_name": "deal_done"})
    ack = reader.next()
    assert ack["message"] == "Trigger message processed without response"
    assert ack["extras"] == {"trigger_name": "deal_done"}  # no context text: no has_speak_tag
    assert etype(reader.next()) == "behavior-tree-response"
    assert live.narrative_section_id == "greeting"


def test_an_unknown_trigger_changes_nothing(shop: Simulator) -> None:
    reader = session(shop)
    for name in ("dance", "show_sword"):  # unknown, and not a way out of the greeting
        send(reader.ws, "trigger-message", {"trigger_name": name})
        assert reader.next() == {"type": "server-response", "event_type": "trigger-message", "status": "success",
                                 "message": "Trigger message processed without response",
                                 "extras": {"trigger_name": name}}
    send(reader.ws, "user_text_message", {"text": "hm"})
    frames = reader.until("bot-turn-completed")
    assert of(frames, "behavior-tree-response") == []
    assert "(Greeting: " in text_of(frames)
    assert shop.wait_for_session().narrative_section_id == "greeting"


def test_inline_speak_trigger_is_said_as_written(shop: Simulator) -> None:
    reader = session(shop)
    send(reader.ws, "trigger-message", {"trigger_message": "<speak>The north gate is open.</speak>"})
    frames = reader.until("bot-turn-completed")
    assert frames[0]["extras"] == {"trigger_name": None, "has_speak_tag": True}
    assert text_of(frames) == "The north gate is open."


# ------------------------------------------------------------------ actions

ACTIONS = {"actions": ["Pick Up", {"value": "Move To"}, "Give"],
           "objects": [{"name": "sword", "description": "rusty"}, {"name": "table", "description": "oak"}],
           "characters": [{"name": "Guard", "bio": "at the door"}], "current_attention_object": "table"}


def actions_for(reader: Reader, text: str) -> list[JSON]:
    send(reader.ws, "user_text_message", {"text": text})
    frames = reader.until("bot-turn-completed")
    (response,) = of(frames, "action-response")
    actions: list[JSON] = response["actions"]
    return actions


def test_actions_follow_the_documented_rules(shop: Simulator) -> None:
    reader = session(shop, character_id="plain", action_config=ACTIONS, end_user_id="p-1",
                     end_user_metadata={"name": "Ada"})
    assert actions_for(reader, "please PICK UP the sword") == [{"name": "Pick Up", "target": "sword"}]
    assert actions_for(reader, "Move to the guard, then give me the sword") == [
        {"name": "Move To", "target": "Guard"}, {"name": "Give", "target": "Ada"}]
    assert actions_for(reader, "pick that up") == [{"name": "Pick Up", "target": "table"}]
    assert actions_for(reader, "pick up the dragon") == []  # targets only from objects and characters
    assert actions_for(reader, "dance with the sword") == []  # only configured action names
    assert actions_for(reader, "hello") == []

    send(reader.ws, "context-update", {"action_config": {"objects": [{"name": "dragon"}]},
                                       "current_attention_object": ""})
    ack = reader.next()
    assert ack["event_type"] == "context-update" and ack["status"] == "success", ack
    assert actions_for(reader, "pick up the dragon") == [{"name": "Pick Up", "target": "dragon"}]
    assert actions_for(reader, "pick up the sword") == []  # the objects were replaced
    assert actions_for(reader, "pick it up") == []  # attention cleared: "it" resolves to nothing
    assert actions_for(reader, "move to the guard") == [{"name": "Move To", "target": "Guard"}]  # kept

    send(reader.ws, "context-update", {"action_config": {"actions": 5}})
    assert reader.next()["status"] == "error"


def test_the_character_s_actions_apply_without_an_action_config(shop: Simulator) -> None:
    reader = session(shop)
    assert actions_for(reader, "Could you pick up the potion?") == [{"name": "Pick Up", "target": "potion"}]
    assert actions_for(reader, "come here") == []  # "come" is no action
    assert actions_for(reader, "move to here") == [{"name": "Move To", "target": "Player"}]


# ------------------------------------------------------------------ lip-sync


def blendshape_turn(sim: Simulator, text: str, **config: Any) -> tuple[list[JSON], Reader]:
    reader = session(sim, blendshape_config=config)
    send(reader.ws, "user_text_message", {"text": text})
    return reader.until("bot-turn-completed"), reader


@pytest.mark.parametrize("fmt", list(FORMAT_VALUES))
def test_frames_in_every_format_cover_the_voice(fmt: str) -> None:
    reply = "The sword is thirty gold, take it or leave it."
    with Simulator(responder=lambda text: reply, websocket_audio=True) as sim:
        frames, reader = blendshape_turn(sim, "price?", format=fmt.upper() if fmt == "mha" else fmt,
                                         chunk_size=7, output_fps=50)
    chunks = of(frames, "chunked-neurosync-blendshapes")
    (stats,) = of(frames, "blendshape-turn-stats")
    seconds = voice_seconds(reply)
    expected = math.ceil(seconds * 50) if FORMAT_VALUES[fmt] else 0
    values = [frame for chunk in chunks for frame in chunk["blendshapes"]]
    assert len(values) == expected
    assert all(len(chunk["blendshapes"]) == 7 for chunk in chunks[:-1])
    assert all(len(frame) == FORMAT_VALUES[fmt] for frame in values)
    assert [c["sequence"] for c in chunks] == list(range(len(chunks)))
    assert {c["response_id"] for c in chunks} <= {stats["response_id"]}
    # The frames span the audio the client received, within one frame.
    audio_seconds = reader.audio_bytes / (2 * VOICE_RATE)
    if expected:
        assert abs(len(values) / 50 - audio_seconds) <= 1 / 50 + 0.02  # + the last 20 ms audio frame's padding
        mouth = MOUTH_INDEX[fmt]
        assert all(0.5 < frame[mouth] <= 1.0 for frame in values)  # the tone opens the mouth
    assert stats["stats"] == {"total_blendshapes": expected, "total_audio_bytes": round(seconds * VOICE_RATE) * 2,
                              "total_turn_duration_ms": stats["stats"]["total_turn_duration_ms"],
                              "total_audio_duration_ms": round(seconds * 1000), "fps": 50, "was_interrupted": False}
    names = [etype(f) for f in frames]
    assert names.index("blendshape-turn-stats") < names.index("bot-stopped-speaking")
    assert names.index("bot-started-speaking") < names.index("blendshape-turn-stats")


def test_mouth_opening_follows_loudness() -> None:
    silence_then_tone = bytes(2 * VOICE_RATE // 2) + tone(0.5)  # 0.5 s silent, 0.5 s loud

    with Simulator(responder=lambda text: "hm", synthesizer=lambda text: (silence_then_tone, VOICE_RATE)) as sim:
        frames, _reader = blendshape_turn(sim, "x", format="visemes", output_fps=60)
    values = [frame for chunk in of(frames, "chunked-neurosync-blendshapes") for frame in chunk["blendshapes"]]
    assert len(values) == 60
    assert all(f[10] == 0 and f[0] == 1 for f in values[:30])  # silent: aa closed, sil full
    assert all(f[10] > 0.5 and f[0] < 0.5 for f in values[30:])


def test_unchunked_frames_and_disabled_lipsync() -> None:
    character = {"id": "mute-face", "lipsync": False}
    with Simulator(characters=["face", character], responder=lambda text: "Hi there.") as sim:
        frames, _reader = blendshape_turn(sim, "x", format="arkit", enable_chunking=False, output_fps=30)
        singles = of(frames, "neurosync-blendshapes")
        assert len(singles) == math.ceil(voice_seconds("Hi there.") * 30)
        assert all(len(s["blendshapes"]) == 61 for s in singles)
        assert of(frames, "chunked-neurosync-blendshapes") == []
        reader = session(sim, character_id="mute-face", blendshape_config={"format": "arkit"})
        send(reader.ws, "user_text_message", {"text": "x"})
        names = [etype(f) for f in reader.until("bot-turn-completed")]
        assert "blendshape-turn-stats" not in names and "chunked-neurosync-blendshapes" not in names


def test_an_unknown_format_refuses_connect() -> None:
    with Simulator() as sim:
        answer = post_connect(sim, blendshape_config={"format": "fbx", "chunk_size": 10})
        assert answer.status_code == 422
        (entry,) = answer.json()["detail"]
        assert entry["loc"] == ["body", "blendshape_config", "format"] and entry["input"] == "fbx"
        assert entry["msg"].endswith("Valid formats: mha, arkit, cc4_extended, visemes, cc5_hd")
        answer = post_connect(sim, blendshape_config={"format": "arkit", "output_fps": 0})
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"][-1] == "output_fps"
        assert sim.slots_in_use() == 0


def test_barge_in_cancels_the_rest_of_the_frames() -> None:
    reply = "la " * 150  # 9 s of voice, sent at twice real time
    with Simulator(responder=lambda text: reply, websocket_audio=True) as sim:
        reader = session(sim, blendshape_config={"format": "arkit", "chunk_size": 5, "output_fps": 60})
        send(reader.ws, "user_text_message", {"text": "talk"})
        reader.until("chunked-neurosync-blendshapes")
        send(reader.ws, "interrupt-bot")
        frames = reader.until("bot-turn-completed")
    sent = 5 + sum(len(c["blendshapes"]) for c in of(frames, "chunked-neurosync-blendshapes"))
    (cancel,) = of(frames, "neurosync-blendshapes-cancel")
    (stats,) = of(frames, "blendshape-turn-stats")
    assert cancel["reason"] == "interruption"
    assert isinstance(cancel["valid_through_frame_index"], int) and 0 <= cancel["valid_through_frame_index"] < sent
    assert sent < math.ceil(voice_seconds(reply) * 60)
    assert stats["stats"]["was_interrupted"] is True and stats["stats"]["total_blendshapes"] == sent
    assert of(frames, "bot-turn-completed")[0]["was_interrupted"] is True


# ------------------------------------------------------------------ delays and metrics


def test_debug_sends_metrics_with_the_character_s_delays() -> None:
    slow = {"id": "slow", "delays": {"stt": 0.05, "llm_first_token": 0.1, "tts_first_audio": 0.08}}
    with Simulator(characters=[slow]) as sim:
        reader = session(sim, debug=True)
        send(reader.ws, "user_text_message", {"text": "hello"})
        frames = reader.until("bot-turn-completed")
        metrics = of(frames, "metrics")
        assert all(f["label"] == "rtvi-ai" for f in frames if f["type"] == "metrics")  # Form A
        first, tts, processing = metrics
        stt_ttfb, llm_ttfb = first["ttfb"]
        assert stt_ttfb["processor"] == "ConvaiSTTService" and stt_ttfb["value"] >= 0.05
        assert llm_ttfb["processor"] == "ConvaiLLMService" and llm_ttfb["model"] and llm_ttfb["value"] >= 0.1
        assert tts["ttfb"][0]["processor"] == "ConvaiTTSService" and tts["ttfb"][0]["value"] >= 0.08
        assert [p["processor"] for p in processing["processing"]] == [
            "ConvaiSTTService", "ConvaiLLMService", "ConvaiTTSService"]
        names = [etype(f) for f in frames]
        assert names.index("bot-llm-text") < names.index("metrics") and names[-2] == "metrics"
        quiet = session(sim)
        send(quiet.ws, "user_text_message", {"text": "hello"})
        assert "metrics" not in [etype(f) for f in quiet.until("bot-turn-completed")]
        assert post_connect(sim, debug="yes").status_code == 422


def test_connect_settings_seed_the_session_and_are_checked() -> None:
    with Simulator() as sim:
        reader = session(sim, dynamic_info={"text": "The lamp is lit.", "static_text": "A dark cave.",
                                            "keep_in_context": False},
                         vad_params={"confidence": 0.5}, turn_detection_config={"type": "smart_turn"})
        send(reader.ws, "context-update", {"text": "A bat flies by.", "run_llm": "false"})
        extras = reader.next()["extras"]
        assert extras["content"] == "The lamp is lit.\nA bat flies by."  # dynamic_info's text came first
        assert extras["static_token_count"] == math.ceil(len("A dark cave.") / 4)
        bad: list[tuple[str, dict[str, Any]]] = [
            ("vad_params", {"confidence": "high"}), ("turn_detection_config", {"type": "vad"}),
            ("action_config", {"actions": "Give"}), ("narrative_template_keys", {"a": 1})]
        for field, value in bad:
            body: dict[str, Any] = {field: value}
            answer = post_connect(sim, None, **body)
            assert answer.status_code == 422 and answer.json()["detail"][0]["loc"][:2] == ["body", field], field
        assert sim.slots_in_use() == 1
