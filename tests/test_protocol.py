"""Pure unit tests of the sans-I/O RTVI protocol: encoding client messages, decoding server frames.

Server message shapes follow PROTOCOL.md §1.7 (Forms A/B/C), §1.9 (every server type) and
§1.10 (server-response).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import pytest

from convai_sync import ErrorCode
from convai_sync import events as ev
from convai_sync.protocol import (
    MAX_FRAME_BYTES,
    context_update,
    decode,
    encode,
    simple,
    trigger_message,
    tts_toggle,
    update_dynamic_info,
    update_template_keys,
    user_text_message,
)

pytestmark = pytest.mark.timeout(10)


def _frame(text: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(text)
    assert set(obj) == {"label", "type", "id", "data"}
    assert obj["label"] == "rtvi-ai"
    return obj


# ---- encoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg_type", "data"),
    [("reset-idle-timer", None), ("interrupt-bot", {}), ("tts-toggle", {"enabled": True}),
     ("update-scene-metadata", {"scene_metadata": [{"name": "door", "description": "red"}]}),
     ("user_text_message", {"text": "héllo ✓"})],
)
def test_encode_envelope(msg_type: str, data: dict[str, Any] | None) -> None:
    mid, text = encode(msg_type, data)
    obj = _frame(text)
    assert obj["type"] == msg_type
    assert obj["id"] == mid
    assert isinstance(mid, str) and mid
    assert obj["data"] == (data or {})


def test_encode_uses_given_message_id() -> None:
    mid, text = encode("kill-pipeline", None, message_id="fixed-id")
    assert mid == "fixed-id"
    assert _frame(text)["id"] == "fixed-id"


def test_encode_generates_distinct_ids() -> None:
    assert len({encode("reset-idle-timer")[0] for _ in range(50)}) == 50


def test_encode_keeps_non_ascii_text() -> None:
    _, text = encode("user_text_message", {"text": "こんにちは"})
    assert "こんにちは" in text


def test_encode_non_serialisable_raises_value_error() -> None:
    with pytest.raises(ValueError):
        encode("update-template-keys", {"template_keys": {"a": object()}})


@pytest.mark.parametrize(("raw", "stripped"), [("hi", "hi"), ("  hello there \n", "hello there"), ("\tx\t", "x")])
def test_user_text_message(raw: str, stripped: str) -> None:
    mid, text = user_text_message(raw)
    obj = _frame(text)
    assert obj["type"] == "user_text_message"
    assert obj["id"] == mid
    assert obj["data"]["text"] == stripped
    assert obj["data"]["message_id"] == mid == obj["id"]


@pytest.mark.parametrize("bad", ["", "   ", "\n\t", None, 5, b"bytes"])
def test_user_text_message_rejects_empty(bad: object) -> None:
    with pytest.raises(ValueError):
        user_text_message(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "data"),
    [
        ({"name": "greet"}, {"trigger_name": "greet"}),
        ({"message": "<speak>Hello</speak>"}, {"trigger_message": "<speak>Hello</speak>"}),
        ({"name": "greet", "message": None}, {"trigger_name": "greet"}),
    ],
)
def test_trigger_message_one_of(kwargs: dict[str, str | None], data: dict[str, str]) -> None:
    _, text = trigger_message(**kwargs)
    obj = _frame(text)
    assert obj["type"] == "trigger-message"
    assert obj["data"] == data


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"name": None, "message": None}, {"name": "a", "message": "b"}, {"name": ""}, {"message": "  "},
     {"name": 5}],
    ids=str,
)
def test_trigger_message_requires_exactly_one(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        trigger_message(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["append", "replace", "reset"])
@pytest.mark.parametrize("run_llm", ["true", "false", "auto"])
def test_context_update_modes_and_run_llm(mode: str, run_llm: str) -> None:
    mid, text = context_update("The door is open.", mode=mode, run_llm=run_llm)
    obj = _frame(text)
    assert obj["type"] == "context-update"
    assert obj["data"]["mode"] == mode
    assert obj["data"]["run_llm"] == run_llm
    assert obj["data"]["text"] == "The door is open."
    assert obj["data"]["update_id"] == mid == obj["id"]


def test_context_update_defaults() -> None:
    _, text = context_update("x")
    data = _frame(text)["data"]
    assert (data["mode"], data["run_llm"]) == ("append", "auto")


@pytest.mark.parametrize("text", [None, ""])
def test_context_update_reset_without_text(text: str | None) -> None:
    _, raw = context_update(text, mode="reset")
    data = _frame(raw)["data"]
    assert data["mode"] == "reset"
    assert "text" not in data


@pytest.mark.parametrize(
    ("text", "kwargs"),
    [
        ("x", {"mode": "prepend"}),
        ("x", {"mode": "APPEND"}),
        ("x", {"run_llm": True}),
        ("x", {"run_llm": "yes"}),
        (None, {"mode": "append"}),
        ("   ", {"mode": "replace"}),
        ("", {}),
    ],
    ids=str,
)
def test_context_update_validation(text: str | None, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        context_update(text, **kwargs)  # type: ignore[arg-type]


def test_update_template_keys() -> None:
    _, text = update_template_keys({"name": "Ann", "place": "Paris"})
    obj = _frame(text)
    assert obj["type"] == "update-template-keys"
    assert obj["data"] == {"template_keys": {"name": "Ann", "place": "Paris"}}


@pytest.mark.parametrize("keys", [{}, {"a": 1}, {1: "a"}, {"a": None}, {"a": "ok", "b": ["x"]}], ids=str)
def test_update_template_keys_validation(keys: dict[object, object]) -> None:
    with pytest.raises(ValueError):
        update_template_keys(keys)  # type: ignore[arg-type]


def test_update_dynamic_info() -> None:
    obj = _frame(update_dynamic_info("It is raining.")[1])
    assert obj["type"] == "update-dynamic-info"
    assert obj["data"] == {"dynamic_info": {"text": "It is raining."}}
    with pytest.raises(ValueError):
        update_dynamic_info("  ")


@pytest.mark.parametrize(("enabled", "expected"), [(True, True), (False, False), (1, True), (0, False)])
def test_tts_toggle(enabled: int, expected: bool) -> None:
    obj = _frame(tts_toggle(enabled)[1])  # type: ignore[arg-type]  # ints too: the SDK coerces to bool
    assert obj["type"] == "tts-toggle"
    assert obj["data"] == {"enabled": expected}


@pytest.mark.parametrize("msg_type", ["interrupt-bot", "reset-idle-timer", "kill-pipeline",
                                      "force-user-stopped-speaking"])
def test_simple_messages_have_empty_data(msg_type: str) -> None:
    obj = _frame(simple(msg_type)[1])
    assert obj["type"] == msg_type
    assert obj["data"] == {}


# ---- decoding: every server type ------------------------------------------------------------

VISEMES = {k: 0.1 for k in ("sil", "pp", "ff", "th", "dd", "kk", "ch", "ss", "nn", "rr", "aa", "e", "ih", "oh", "ou")}

# (type, payload, class, expected attributes)
Case = tuple[str, dict[str, Any], type[object], dict[str, Any]]
CASES: list[Case] = [
    ("bot-ready", {"version": "1.0.0"}, ev.BotReady, {"version": "1.0.0"}),
    ("bot-ready", {}, ev.BotReady, {"version": None}),
    ("bot-llm-started", {}, ev.BotLLMStarted, {}),
    ("bot-llm-text", {"text": "Sure,"}, ev.BotText, {"text": "Sure,"}),
    ("bot-llm-text", {"text": ""}, ev.BotText, {"text": ""}),
    ("bot-llm-stopped", {}, ev.BotLLMStopped, {}),
    ("bot-tts-started", {}, ev.BotTTSStarted, {}),
    ("bot-tts-stopped", {}, ev.BotTTSStopped, {}),
    ("bot-tts-text", {"text": "Hello"}, ev.BotTTSText, {"text": "Hello"}),
    ("bot-transcription", {"text": "Hello there."}, ev.BotTTSText, {"text": "Hello there."}),
    ("user-transcription", {"text": "hel", "final": False}, ev.UserTranscription,
     {"text": "hel", "final": False, "user_id": None}),
    ("user-transcription", {"text": "hello", "final": True, "user_id": "u1", "timestamp": "t"},
     ev.UserTranscription, {"text": "hello", "final": True, "user_id": "u1"}),
    ("user-transcription", {"text": "hm"}, ev.UserTranscription, {"final": False}),
    ("user-started-speaking", {}, ev.UserStartedSpeaking, {}),
    ("user-stopped-speaking", {}, ev.UserStoppedSpeaking, {}),
    ("bot-started-speaking", {"response_id": "r1", "neurosync_turn_id": "n1", "epoch": 2, "sequence": 7},
     ev.BotStartedSpeaking, {"response_id": "r1"}),
    ("bot-started-speaking", {}, ev.BotStartedSpeaking, {"response_id": None}),
    ("bot-stopped-speaking", {"response_id": "r1"}, ev.BotStoppedSpeaking, {"response_id": "r1"}),
    ("bot-stopped-speaking", {"response_id": 42}, ev.BotStoppedSpeaking, {"response_id": "42"}),
    ("bot-turn-completed", {"was_interrupted": False}, ev.BotTurnCompleted,
     {"was_interrupted": False, "was_aborted": False, "error_reason": None}),
    ("bot-turn-completed", {"was_interrupted": True, "was_aborted": True, "error_reason": "audio_delivery_failed"},
     ev.BotTurnCompleted, {"was_interrupted": True, "was_aborted": True, "error_reason": "audio_delivery_failed"}),
    ("interaction-created", {"interaction_id": "int_ab12", "character_session_id": "cs-1"}, ev.InteractionCreated,
     {"interaction_id": "int_ab12", "character_session_id": "cs-1"}),
    ("usage-limit-reached", {"quota_type": "interaction", "message": "Usage limit exceeded"}, ev.UsageLimitReached,
     {"quota_type": "interaction", "message": "Usage limit exceeded"}),
    ("usage-limit-reached", {"quota_type": "tts"}, ev.UsageLimitReached, {"quota_type": "tts"}),
    ("user-idle-warning", {"remaining_seconds": 300,
                           "message": "You've been idle. You will be disconnected in 5 minutes."},
     ev.UserIdleWarningReceived,
     {"remaining_seconds": 300, "message": "You've been idle. You will be disconnected in 5 minutes."}),
    ("user-idle-warning", {"remaining_seconds": 30}, ev.UserIdleWarningReceived, {"remaining_seconds": 30}),
    ("llm-no-response", {"reason": "abstain"}, ev.LLMNoResponse, {"reason": "abstain"}),
    ("llm-no-response", {}, ev.LLMNoResponse, {"reason": None}),
    ("final-user-transcription", {"text": "hi", "message_id": "m1", "speaker_id": "s1", "speaker_name": "Ann",
                                  "participant_id": "p1"}, ev.FinalUserTranscription,
     {"text": "hi", "message_id": "m1", "speaker_id": "s1", "speaker_name": "Ann", "participant_id": "p1"}),
    ("final-user-transcription", {"text": "hi"}, ev.FinalUserTranscription,
     {"text": "hi", "message_id": None, "speaker_id": None, "speaker_name": None, "participant_id": None}),
    ("vad-stt-started", {"timestamp": "2025-01-01T00:00:00Z", "pre_roll_ms": 1500}, ev.VadSttEvent, {}),
    ("vad-stt-stopped", {"timestamp": "2025-01-01T00:00:01Z", "reason": "hangover_elapsed",
                         "audio_duration_ms": None}, ev.VadSttEvent, {}),
    ("moderation-response", {"result": True, "user_input": "hi", "reason": None}, ev.ModerationResponse,
     {"result": True, "user_input": "hi", "reason": None}),
    ("moderation-response", {"result": False, "user_input": "bad", "reason": "toxic"}, ev.ModerationResponse,
     {"result": False, "user_input": "bad", "reason": "toxic"}),
    ("behavior-tree-response", {"bt_code": "code", "bt_constants": "k", "narrative_section_id": "sec-1"},
     ev.BehaviorTreeResponse, {"bt_code": "code", "bt_constants": "k", "narrative_section_id": "sec-1"}),
    ("bot-emotion", {"emotion": "joy", "scale": 2}, ev.BotEmotion, {"emotion": "joy", "scale": 2}),
    ("bot-emotion", {"emotion": "calm"}, ev.BotEmotion, {"emotion": "calm", "scale": None}),
    ("action-response", {"actions": [{"name": "wave", "target": "player"}, {"name": "nod"}]}, ev.ActionResponse,
     {"actions": (ev.Action(name="wave", target="player"), ev.Action(name="nod"))}),
    ("action-response", {"actions": ["wave", "nod"]}, ev.ActionResponse,
     {"actions": (ev.Action(name="wave"), ev.Action(name="nod"))}),
    ("action-response", {"actions": []}, ev.ActionResponse, {"actions": ()}),
    ("action-response", {"actions": "None"}, ev.ActionResponse, {"actions": ()}),
    ("visemes", {"visemes": VISEMES}, ev.Visemes, {"visemes": VISEMES}),
    ("neurosync-blendshapes", {"blendshapes": [0.5] * 251, "response_id": "r1"}, ev.BlendshapeFrames, {}),
    ("chunked-neurosync-blendshapes", {"blendshapes": [[0.0] * 251] * 10}, ev.BlendshapeFrames, {}),
    ("neurosync-blendshapes-cancel", {"response_id": "r", "neurosync_turn_id": "n", "epoch": 1, "sequence": 3,
                                      "valid_through_frame_index": None, "reason": "interruption"},
     ev.BlendshapeFrames, {}),
    ("blendshape-turn-stats", {"stats": {"total_blendshapes": 120, "total_audio_bytes": 9600, "fps": 60,
                                         "was_interrupted": False}}, ev.BlendshapeFrames, {}),
    ("audio-data", {"sample_rate": 24000, "channels": 1, "audio": "AAD/fw==", "includes_wav_header": False},
     ev.AudioData, {"pcm": b"\x00\x00\xff\x7f", "sample_rate": 24000, "num_channels": 1}),
    ("metrics", {"ttfb": [{"processor": "llm", "model": "m", "value": 0.31}]}, ev.Metrics, {}),
    ("error", {"error": "pipeline crashed", "fatal": True}, ev.PipelineError,
     {"error": "pipeline crashed", "fatal": True}),
    ("error", {"error": "tts hiccup", "fatal": False}, ev.PipelineError, {"error": "tts hiccup", "fatal": False}),
    ("error", {"error": "no fatal key"}, ev.PipelineError, {"error": "no fatal key", "fatal": False}),
]

SERVER_MESSAGE_CLASSES = {c[2] for c in CASES if issubclass(c[2], ev.ServerMessage)}


def _case_id(case: Case) -> str:
    return f"{case[0]}-{'+'.join(sorted(case[1])) or 'empty'}"


def form_a(msg_type: str, payload: Mapping[str, Any]) -> str:
    return json.dumps({"label": "rtvi-ai", "type": msg_type, "data": payload})


def form_b(msg_type: str, payload: Mapping[str, Any]) -> str:
    return json.dumps({"label": "rtvi-ai", "type": "server-message", "data": {"type": msg_type, **payload}})


FORMS: dict[str, Callable[[str, Mapping[str, Any]], str]] = {"A": form_a, "B": form_b}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize(("msg_type", "payload", "cls", "attrs"), CASES, ids=[_case_id(c) for c in CASES])
def test_decode_server_type(form: str, msg_type: str, payload: dict[str, Any], cls: type[object],
                             attrs: dict[str, Any]) -> None:
    event = decode(FORMS[form](msg_type, payload))
    assert type(event) is cls
    for name, value in attrs.items():
        assert getattr(event, name) == value, name
    if cls in SERVER_MESSAGE_CLASSES:
        assert isinstance(event, ev.ServerMessage)
        assert event.type == msg_type
        assert dict(event.data) == payload


@pytest.mark.parametrize("msg_type", ["bot-started-speaking", "bot-stopped-speaking"])
def test_form_b_speaking_label_inside_data_is_stripped(msg_type: str) -> None:
    raw = json.dumps({"label": "rtvi-ai", "type": "server-message",
                      "data": {"type": msg_type, "label": "rtvi-ai", "response_id": "r9"}})
    event = decode(raw)
    assert isinstance(event, (ev.BotStartedSpeaking, ev.BotStoppedSpeaking))
    assert event.type == msg_type
    assert event.response_id == "r9"
    assert dict(event.data) == {"response_id": "r9"}


def test_form_a_and_b_give_equal_events() -> None:
    a = decode(form_a("bot-emotion", {"emotion": "joy", "scale": 3}))
    b = decode(form_b("bot-emotion", {"emotion": "joy", "scale": 3}))
    assert a == b


@pytest.mark.parametrize("msg_type", ["bot-llm-started", "bot-llm-stopped", "bot-tts-started", "user-started-speaking"])
def test_form_a_without_data_key_decodes(msg_type: str) -> None:
    event = decode(json.dumps({"label": "rtvi-ai", "type": msg_type}))
    assert isinstance(event, ev.ServerMessage)
    assert event.type == msg_type
    assert dict(event.data) == {}


def test_form_a_without_label_decodes() -> None:
    event = decode(json.dumps({"type": "bot-llm-text", "data": {"text": "x"}}))
    assert isinstance(event, ev.BotText) and event.text == "x"


@pytest.mark.parametrize("raw_type", [str, bytes])
def test_decode_accepts_bytes_and_str(raw_type: type[str] | type[bytes]) -> None:
    text = form_a("bot-llm-text", {"text": "héllo"})
    event = decode(text if raw_type is str else text.encode("utf-8"))
    assert isinstance(event, ev.BotText) and event.text == "héllo"


# ---- server-response (Form C and variants) -------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "server-response", "event_type": "user_text_message", "status": "success",
         "message": "User text message processed", "extras": {"text": "hi"}},
        {"label": "rtvi-ai", "type": "server-response", "event_type": "user_text_message", "status": "success",
         "message": "User text message processed", "extras": {"text": "hi"}},
        {"label": "rtvi-ai", "type": "server-response",
         "data": {"event_type": "user_text_message", "status": "success",
                  "message": "User text message processed", "extras": {"text": "hi"}}},
        {"label": "rtvi-ai", "type": "server-message",
         "data": {"type": "server-response", "event_type": "user_text_message", "status": "success",
                  "message": "User text message processed", "extras": {"text": "hi"}}},
    ],
    ids=["form-c", "form-c-labeled", "form-a-wrapped", "form-b"],
)
def test_decode_server_response_forms(frame: dict[str, Any]) -> None:
    event = decode(json.dumps(frame))
    assert type(event) is ev.ServerResponse
    assert event.event_type == "user_text_message"
    assert event.status == "success"
    assert event.message == "User text message processed"
    assert event.extras is not None
    assert dict(event.extras) == {"text": "hi"}
    assert event.is_error is False and event.is_final is True


@pytest.mark.parametrize(
    ("status", "is_error", "is_final"),
    [("success", False, True), ("error", True, True), ("processing", False, False), ("pending", False, False)],
)
def test_server_response_statuses(status: str, is_error: bool, is_final: bool) -> None:
    event = decode(json.dumps({"type": "server-response", "event_type": "context-update", "status": status}))
    assert isinstance(event, ev.ServerResponse)
    assert event.status == status
    assert event.is_error is is_error
    assert event.is_final is is_final
    assert event.message is None
    assert event.extras is None


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "server-response", "event_type": "parse-error", "status": "error",
         "message": "Failed to parse message: invalid JSON or UTF-8 encoding", "extras": None},
        {"type": "server-response", "event_type": "validation-error", "status": "error",
         "message": "Message missing required 'type' field", "extras": {"received_message": {"x": 1}}},
        {"type": "server-response", "event_type": "client-ready", "status": "error",
         "message": "Unknown message type: client-ready", "extras": {"supported_types": ["tts-toggle"]}},
    ],
    ids=["parse-error", "validation-error", "unknown-type"],
)
def test_server_response_protocol_errors(frame: dict[str, Any]) -> None:
    event = decode(json.dumps(frame))
    assert isinstance(event, ev.ServerResponse)
    assert event.event_type == frame["event_type"]
    assert event.is_error is True
    assert event.message == frame["message"]


def test_server_response_context_update_token_extras() -> None:
    frame = {"type": "server-response", "event_type": "context-update", "status": "success",
             "extras": {"token_count": 1200, "remaining_tokens": 48800, "max_tokens": 50000, "update_id": "u1"}}
    event = decode(json.dumps(frame))
    assert isinstance(event, ev.ServerResponse)
    assert (event.token_count, event.remaining_tokens, event.max_tokens) == (1200, 48800, 50000)
    assert event.extras is not None
    assert event.extras["update_id"] == "u1"


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "server-response", "status": "success"},
        {"type": "server-response", "event_type": "tts-toggle"},
        {"type": "server-response", "event_type": 5, "status": "success"},
        {"type": "server-response", "event_type": "tts-toggle", "status": True},
        {"type": "server-response", "event_type": "tts-toggle", "status": "success", "extras": [1]},
    ],
    ids=["no-event_type", "no-status", "int-event_type", "bool-status", "list-extras"],
)
def test_server_response_invalid_fields(frame: dict[str, Any]) -> None:
    fault = decode(json.dumps(frame))
    assert isinstance(fault, ev.ProtocolFault)
    assert fault.code is ErrorCode.PROTOCOL_MESSAGE_INVALID


# ---- unknown types, echoes ---------------------------------------------------------------------


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize(("msg_type", "payload"), [("turn-trace", {"trace": [1, 2]}), ("session-config", {}),
                                                   ("brand-new-event", {"x": {"y": 1}})])
def test_unknown_type_is_plain_server_message(form: str, msg_type: str, payload: dict[str, Any]) -> None:
    event = decode(FORMS[form](msg_type, payload))
    assert type(event) is ev.ServerMessage
    assert event.type == msg_type
    assert dict(event.data) == payload


ECHOES = ["user_text_message", "user-llm-text", "text-input", "user-input", "text-message", "chat-message",
          "input-text", "message", "trigger-message", "update-template-keys", "update-dynamic-info", "interrupt-bot"]


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("msg_type", ECHOES)
def test_client_type_echoes_are_ignored(form: str, msg_type: str) -> None:
    assert decode(FORMS[form](msg_type, {"text": "hi"})) is None


# ---- faults -------------------------------------------------------------------------------------


def _assert_fault(result: object, code: ErrorCode) -> ev.ProtocolFault:
    assert isinstance(result, ev.ProtocolFault), result
    assert result.code is code
    assert isinstance(result.detail, str) and result.detail
    assert isinstance(result.raw, str)
    assert len(result.raw) <= 500
    return result


@pytest.mark.parametrize("raw", ["not json", "{", "", "{'type': 'x'}", '{"type": "bot-ready",}', b"\x00garbage"],
                         ids=repr)
def test_not_json_is_parse_failed(raw: str | bytes) -> None:
    _assert_fault(decode(raw), ErrorCode.PROTOCOL_PARSE_FAILED)


@pytest.mark.parametrize("raw", [b"\xff\xfe\xfd", b'{"type": "bot-llm-text", "data": {"text": "\xe9"}}', b"\xc3"],
                         ids=repr)
def test_non_utf8_bytes_are_parse_failed(raw: bytes) -> None:
    _assert_fault(decode(raw), ErrorCode.PROTOCOL_PARSE_FAILED)


@pytest.mark.parametrize(
    "obj",
    [
        {"data": {"text": "x"}},
        {"label": "rtvi-ai", "type": "", "data": {}},
        {"type": 5, "data": {}},
        {"type": None},
        [1, 2, 3],
        "a string",
        42,
        None,
        {"type": "server-message", "data": {"text": "no inner type"}},
        {"type": "server-message", "data": {"type": 7}},
        {"type": "server-message", "data": "flat"},
        {"type": "server-message"},
    ],
    ids=["no-type", "empty-type", "int-type", "null-type", "array", "string", "number", "null",
         "server-message-no-data-type", "server-message-int-data-type", "server-message-str-data",
         "server-message-no-data"],
)
def test_structurally_invalid_is_message_invalid(obj: object) -> None:
    _assert_fault(decode(json.dumps(obj)), ErrorCode.PROTOCOL_MESSAGE_INVALID)


BAD_FIELDS = [
    ("bot-llm-text", {"text": 5}),
    ("bot-llm-text", {}),
    ("bot-tts-text", {"text": ["a"]}),
    ("bot-transcription", {"text": None}),
    ("user-transcription", {"text": "x", "final": "yes"}),
    ("user-transcription", {"final": True}),
    ("user-transcription", {"text": "x", "user_id": 5}),
    ("final-user-transcription", {}),
    ("final-user-transcription", {"text": "x", "message_id": 3}),
    ("bot-turn-completed", {"was_interrupted": "no"}),
    ("bot-turn-completed", {"was_interrupted": False, "error_reason": 1}),
    ("interaction-created", {}),
    ("interaction-created", {"interaction_id": 7}),
    ("bot-emotion", {}),
    ("bot-emotion", {"scale": 2}),
    ("bot-emotion", {"emotion": 3}),
    ("bot-emotion", {"emotion": "joy", "scale": "high"}),
    ("bot-emotion", {"emotion": "joy", "scale": True}),
    ("action-response", {"actions": "wave"}),
    ("action-response", {"actions": [{"target": "x"}]}),
    ("action-response", {"actions": [5]}),
    ("moderation-response", {"user_input": "x"}),
    ("moderation-response", {"result": "true"}),
    ("visemes", {"visemes": [0.1, 0.2]}),
    ("user-idle-warning", {}),
    ("user-idle-warning", {"remaining_seconds": "300"}),
    ("user-idle-warning", {"remaining_seconds": True}),
    ("error", {"error": "x", "fatal": "yes"}),
    ("llm-no-response", {"reason": 5}),
]


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize(("msg_type", "payload"), BAD_FIELDS, ids=[f"{t}-{json.dumps(p)}" for t, p in BAD_FIELDS])
def test_bad_field_types_are_message_invalid(form: str, msg_type: str, payload: dict[str, Any]) -> None:
    fault = _assert_fault(decode(FORMS[form](msg_type, payload)), ErrorCode.PROTOCOL_MESSAGE_INVALID)
    assert msg_type in fault.detail


NON_OBJECT_TYPES = sorted({c[0] for c in CASES})


@pytest.mark.parametrize("data", [[1, 2], "text", 5, True], ids=repr)
@pytest.mark.parametrize("msg_type", NON_OBJECT_TYPES)
def test_form_a_non_object_data_is_message_invalid(msg_type: str, data: object) -> None:
    raw = json.dumps({"label": "rtvi-ai", "type": msg_type, "data": data})
    _assert_fault(decode(raw), ErrorCode.PROTOCOL_MESSAGE_INVALID)


def test_oversized_str_frame_is_message_invalid() -> None:
    raw = '{"type":"bot-llm-text","data":{"text":"' + "a" * MAX_FRAME_BYTES + '"}}'
    _assert_fault(decode(raw), ErrorCode.PROTOCOL_MESSAGE_INVALID)


def test_oversized_bytes_frame_is_message_invalid() -> None:
    raw = b'{"type":"bot-llm-text","data":{"text":"' + b"a" * MAX_FRAME_BYTES + b'"}}'
    _assert_fault(decode(raw), ErrorCode.PROTOCOL_MESSAGE_INVALID)


def test_frame_of_exactly_16_mb_is_decoded() -> None:
    assert MAX_FRAME_BYTES == 16 * 1024 * 1024
    head, tail = b'{"type":"bot-llm-text","data":{"text":"', b'"}}'
    raw = head + b"a" * (MAX_FRAME_BYTES - len(head) - len(tail)) + tail
    assert len(raw) == MAX_FRAME_BYTES
    event = decode(raw)
    assert isinstance(event, ev.BotText)
    assert len(event.text) == MAX_FRAME_BYTES - len(head) - len(tail)


def test_fault_raw_is_truncated() -> None:
    fault = _assert_fault(decode("x" * 10_000), ErrorCode.PROTOCOL_PARSE_FAILED)
    assert fault.raw == "x" * 500


# ---- immutability ------------------------------------------------------------------------------


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize(
    ("msg_type", "payload"),
    [(c[0], c[1]) for c in CASES if c[2] in SERVER_MESSAGE_CLASSES or c[2] is ev.BotReady],
    ids=[_case_id(c) for c in CASES if c[2] in SERVER_MESSAGE_CLASSES or c[2] is ev.BotReady],
)
def test_decoded_data_is_read_only(form: str, msg_type: str, payload: dict[str, Any]) -> None:
    event = decode(FORMS[form](msg_type, payload))
    assert isinstance(event, (ev.ServerMessage, ev.BotReady))
    assert isinstance(event.data, MappingProxyType)
    with pytest.raises(TypeError):
        event.data["injected"] = 1  # type: ignore[index]  # the runtime refusal is what is tested
    assert "injected" not in event.data


def test_decoded_events_are_frozen() -> None:
    event = decode(form_a("bot-llm-text", {"text": "x"}))
    assert isinstance(event, ev.BotText)
    with pytest.raises(AttributeError):
        event.text = "changed"  # type: ignore[misc]  # the runtime refusal is what is tested


def test_server_response_extras_and_visemes_are_read_only() -> None:
    resp = decode(json.dumps({"type": "server-response", "event_type": "x", "status": "success",
                              "extras": {"a": 1}}))
    vis = decode(form_b("visemes", {"visemes": VISEMES}))
    assert isinstance(resp, ev.ServerResponse)
    assert isinstance(vis, ev.Visemes)
    for mapping in (resp.extras, vis.visemes):
        assert isinstance(mapping, MappingProxyType)
        with pytest.raises(TypeError):
            mapping["a"] = 2  # type: ignore[index]  # the runtime refusal is what is tested


def test_oversized_multibyte_str_frame_is_measured_in_utf8_bytes() -> None:
    # 6 M three-byte characters: 6 MiB of characters but 18 MiB on the wire.
    raw = '{"type":"bot-llm-text","data":{"text":"' + "\u20ac" * (6 * 1024 * 1024) + '"}}'
    _assert_fault(decode(raw), ErrorCode.PROTOCOL_MESSAGE_INVALID)
