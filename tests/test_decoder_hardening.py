"""``protocol.decode`` never raises: every frame is an event, None (ignored echo) or a ProtocolFault.

Regressions: deeply nested JSON raised ``RecursionError``; ``Infinity``/``1e400`` in a numeric
field raised ``OverflowError`` (``int(float('inf'))``); ``remaining_seconds: 1e12`` was accepted
and later overflowed a ``timedelta`` in the session; a negative ``remaining_seconds`` was
accepted and armed an idle deadline already in the past.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convai_sync import EventDeliveryPolicy, SessionError, SessionState, UserIdleTimeoutElapsed
from convai_sync import events as ev
from convai_sync.errors import ErrorCode
from convai_sync.protocol import MAX_FRAME_BYTES, MAX_IDLE_SECONDS, MAX_NESTING, decode
from convai_sync.testing import Recorder
from tests.helpers_memory import Harness, SteppingClock, make_config

pytestmark = pytest.mark.timeout(30)

PARSE = ErrorCode.PROTOCOL_PARSE_FAILED
INVALID = ErrorCode.PROTOCOL_MESSAGE_INVALID
OUTCOMES = (ev.ServerMessage, ev.BotReady, ev.ServerResponse, ev.LLMNoResponse, ev.UsageLimitReached,
            ev.UserIdleWarningReceived, ev.PipelineError, ev.ParticipantInfo,
            ev.RoomOwnershipRebindStateChanged, ev.ProtocolFault)
# Client message types the Convai Web SDK ignores when the server echoes them (written out here,
# not imported, so the test does not share the decoder's table).
ECHOES = {"user_text_message", "user-llm-text", "text-input", "user-input", "text-message", "chat-message",
          "input-text", "message", "trigger-message", "update-template-keys", "update-dynamic-info",
          "interrupt-bot"}
FUZZ = settings(max_examples=250, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def form_a(msg_type: str, **data: Any) -> str:
    return json.dumps({"label": "rtvi-ai", "type": msg_type, "data": data})


def form_b(msg_type: str, **data: Any) -> str:
    return json.dumps({"label": "rtvi-ai", "type": "server-message", "data": {"type": msg_type, **data}})


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def check(raw: object) -> object:
    """Decode ``raw`` and assert the outcome is one of the three allowed kinds, safe to use."""
    result = decode(raw)  # must not raise
    if result is None:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        assert isinstance(text, str), raw
        msg = json.loads(text)  # only a well-formed echo is ignored
        inner = msg.get("data", {}).get("type") if msg.get("type") == "server-message" else msg["type"]
        assert inner in ECHOES
        return None
    assert isinstance(result, OUTCOMES), type(result)
    if isinstance(result, ev.ProtocolFault):
        assert result.code in (PARSE, INVALID)
        assert isinstance(result.detail, str) and isinstance(result.raw, str) and len(result.raw) <= 500
    if isinstance(result, ev.UserIdleWarningReceived):
        assert isinstance(result.remaining_seconds, int) and 0 <= result.remaining_seconds <= MAX_IDLE_SECONDS
        assert result.timestamp + timedelta(seconds=result.remaining_seconds) > result.timestamp - timedelta(1)
    if isinstance(result, ev.BotEmotion) and result.scale is not None:
        assert isinstance(result.scale, int) and 0 <= result.scale <= 100
    repr(result)  # what a handler or a log line does next must not blow up either
    return result


def fault(raw: object) -> ev.ProtocolFault:
    result = check(raw)
    assert isinstance(result, ev.ProtocolFault), result
    return result


# ---- the reported frames ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 1000, 100_000])
def test_deep_nesting_is_a_fault(depth: int) -> None:
    assert fault(nested(depth)).code is INVALID
    assert fault(form_a("bot-llm-text", text="hi", extra=json.loads(nested(min(depth, 500))))).code is INVALID


def test_nesting_up_to_the_bound_is_accepted() -> None:
    inner: Any = []
    for _ in range(MAX_NESTING - 3):  # envelope, data and the field itself take three levels
        inner = [inner]
    event = check(form_a("vad-stt-started", extra=inner))  # a pass-through payload (metrics is typed now)
    assert isinstance(event, ev.VadSttEvent)


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "NaN", "1e400", "-1e400", "1" + "0" * 400 + ".0"])
@pytest.mark.parametrize("field", ["remaining_seconds", "scale", "participant_type", "outcome", "other"])
def test_non_finite_numbers_are_parse_faults(literal: str, field: str) -> None:
    frames = {
        "remaining_seconds": '{"type":"server-message","data":{"type":"user-idle-warning","remaining_seconds":%s}}',
        "scale": '{"type":"server-message","data":{"type":"bot-emotion","emotion":"joy","scale":%s}}',
        "participant_type": '{"type":"participant-joined","data":{"participant_id":"p","participant_type":%s}}',
        "outcome": '{"type":"room-ownership-rebind-state-changed","data":{"outcome":%s}}',
        "other": '{"type":"bot-llm-text","data":{"text":"x","n":%s}}',
    }
    assert fault(frames[field] % literal).code is PARSE


@pytest.mark.parametrize("value", [86400.5, 1e12, 10**30, -1, -0.5, -1e12])
def test_remaining_seconds_out_of_range_is_invalid(value: float) -> None:
    result = fault(form_b("user-idle-warning", remaining_seconds=value))
    assert result.code is INVALID and "remaining_seconds" in result.detail


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (300, 300), (86400, 86400), (29.2, 30), (0.5, 1)])
def test_remaining_seconds_in_range_rounds_up(value: float, expected: int) -> None:
    event = check(form_b("user-idle-warning", remaining_seconds=value))
    assert isinstance(event, ev.UserIdleWarningReceived) and event.remaining_seconds == expected


@pytest.mark.parametrize("raw", [
    '{"type":"participant-joined","data":{"participant_id":"p","participant_type":1e300}}',
    '{"type":"room-ownership-rebind-state-changed","data":{"outcome":99}}',
    '{"type":"room-ownership-rebind-state-changed","data":{"outcome":1e300}}',
    '{"type":"room-ownership-rebind-state-changed","data":{"outcome":1,"session_state":[1]}}',
    '{"type":"server-message","data":{"type":"bot-emotion","emotion":"joy","scale":1e300}}',
    '{"type":"server-message","data":{"type":"bot-emotion","emotion":"joy","scale":-1}}',
    '{"type":"bot-llm-text","data":{"text":"x","n":' + "9" * 5000 + "}}",  # beyond int's digit limit
])
def test_huge_numbers_never_raise(raw: str) -> None:
    check(raw)


def test_unknown_participant_type_is_unknown_not_an_error() -> None:
    event = check('{"type":"participant-joined","data":{"participant_id":"p","participant_type":7}}')
    assert isinstance(event, ev.ParticipantJoined) and event.participant_type is ev.ParticipantType.UNKNOWN


@pytest.mark.parametrize("raw", [b"\xff\xfe", b'{"type":"bot-llm-text","data":{"text":"\xc3"}}', b"\x80" * 10])
def test_invalid_utf8_is_a_parse_fault(raw: bytes) -> None:
    assert fault(raw).code is PARSE


@pytest.mark.parametrize("raw", [None, 42, 4.5, ["a"], {"type": "bot-ready"}, object()])
def test_non_text_input_is_a_fault(raw: object) -> None:
    assert fault(raw).code is INVALID


def test_bytearray_and_memoryview_are_decoded() -> None:
    frame = form_a("bot-llm-text", text="hi").encode()
    assert isinstance(check(bytearray(frame)), ev.BotText)
    assert isinstance(check(memoryview(frame)), ev.BotText)


def test_oversized_frames_are_faults() -> None:
    big = '{"type":"bot-llm-text","data":{"text":"' + "x" * MAX_FRAME_BYTES + '"}}'
    assert fault(big).code is INVALID
    assert fault(big.encode()).code is INVALID


def test_deep_nesting_inside_a_known_payload_field() -> None:
    depth = 40
    text = '{"type":"bot-started-speaking","data":{"response_id":' + nested(depth) + "}}"
    assert fault(text).code is INVALID


# ---- fuzzing --------------------------------------------------------------------------------------

KNOWN_TYPES = ["bot-ready", "server-response", "bot-llm-started", "bot-llm-text", "bot-llm-stopped",
               "bot-tts-started", "bot-tts-stopped", "bot-tts-text", "bot-transcription", "user-transcription",
               "final-user-transcription", "user-started-speaking", "user-stopped-speaking",
               "bot-started-speaking", "bot-stopped-speaking", "bot-turn-completed", "interaction-created",
               "bot-emotion", "action-response", "moderation-response", "behavior-tree-response", "visemes",
               "neurosync-blendshapes", "chunked-neurosync-blendshapes", "neurosync-blendshapes-cancel",
               "blendshape-turn-stats", "vad-stt-started", "vad-stt-stopped", "audio-data", "metrics",
               "llm-no-response", "usage-limit-reached", "user-idle-warning", "error", "participant-joined",
               "participant-left", "room-participant-joined", "room-participant-left",
               "room-ownership-rebind-state-changed", "server-message", *sorted(ECHOES)]
FIELDS = ["text", "final", "user_id", "message_id", "speaker_id", "speaker_name", "participant_id", "response_id",
          "was_interrupted", "was_aborted", "error_reason", "interaction_id", "character_session_id", "emotion",
          "scale", "actions", "result", "user_input", "reason", "bt_code", "bt_constants", "narrative_section_id",
          "visemes", "quota_type", "message", "remaining_seconds", "error", "fatal", "participant_type", "sid",
          "identity", "display_name", "name", "is_local", "is_muted", "outcome", "session_state", "event_type",
          "status", "extras", "version", "type", "label", "data"]

leaves = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**40), max_value=10**40)
          | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12) | st.sampled_from(KNOWN_TYPES))
values = st.recursive(leaves, lambda kids: st.lists(kids, max_size=4)
                      | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), kids, max_size=5),
                      max_leaves=25)
payloads = st.dictionaries(st.sampled_from(FIELDS), values, max_size=6)
types = st.sampled_from(KNOWN_TYPES) | st.text(max_size=20)


@st.composite
def frames(draw: st.DrawFn) -> str:
    """Frame-shaped JSON in Form A, B or C, with random (often wrong) field types."""
    form = draw(st.sampled_from("ABC"))
    msg_type, data = draw(types), draw(payloads | values)
    if form == "A":
        frame: Any = {"label": "rtvi-ai", "type": msg_type, "data": data}
    elif form == "B":
        inner = {"type": msg_type, **data} if isinstance(data, dict) else data
        frame = {"label": "rtvi-ai", "type": "server-message", "data": inner}
    else:
        frame = {"type": "server-response", **(data if isinstance(data, dict) else {"extras": data})}
    return json.dumps(frame)  # allow_nan: NaN/Infinity literals do get onto the wire


VALID = [
    form_a("bot-llm-text", text="Hello"), form_b("bot-emotion", emotion="joy", scale=2),
    form_b("user-idle-warning", remaining_seconds=300, message="idle"), form_a("bot-ready", version="1.0.0"),
    json.dumps({"type": "server-response", "event_type": "context-update", "status": "success",
                "extras": {"token_count": 5}}),
    form_b("action-response", actions=[{"name": "wave", "target": "door"}]),
    form_a("participant-joined", participant_id="p1", participant_type=3),
    form_a("room-ownership-rebind-state-changed", outcome=1, session_state=2),
    form_a("error", error="boom", fatal=True), form_b("usage-limit-reached", quota_type="tts", message="x"),
    form_b("moderation-response", result=True, user_input="hi", reason=None),
]
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e308", "-0", "4.9e-324", "9" * 400,
               "1" + "0" * 400 + ".5", "[[[[[[[[[[]]]]]]]]]]", nested(MAX_NESTING * 3)]


@st.composite
def mutated(draw: st.DrawFn) -> str | bytes:
    """A valid frame with one mutation: a field replaced, a number made huge/non-finite, bytes broken."""
    frame = draw(st.sampled_from(VALID))
    how = draw(st.sampled_from(["field", "number", "truncate", "byte", "wrap"]))
    if how == "field":
        msg = json.loads(frame)
        target = msg["data"] if isinstance(msg.get("data"), dict) else msg
        target[draw(st.sampled_from(FIELDS))] = draw(values)
        return json.dumps(msg)
    if how == "number":
        digits = [i for i, ch in enumerate(frame) if ch.isdigit()] or [len(frame) - 1]
        at = draw(st.sampled_from(digits))
        return frame[:at] + draw(st.sampled_from(BAD_NUMBERS)) + frame[at + 1:]
    if how == "truncate":
        return frame[: draw(st.integers(0, len(frame)))]
    if how == "byte":
        raw = frame.encode()
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=3)) + raw[at:]
    depth = draw(st.integers(1, 3 * MAX_NESTING))
    return '{"type":"server-message","data":' * depth + frame + "}" * depth


@pytest.mark.timeout(60)
@FUZZ
@given(values.map(lambda v: json.dumps(v)))
def test_fuzz_random_json(raw: str) -> None:
    check(raw)


@pytest.mark.timeout(60)
@FUZZ
@given(frames())
def test_fuzz_frame_shaped_json(raw: str) -> None:
    check(raw)


@pytest.mark.timeout(60)
@FUZZ
@given(mutated())
def test_fuzz_mutated_valid_frames(raw: str | bytes) -> None:
    check(raw)


@pytest.mark.timeout(60)
@FUZZ
@given(st.binary(max_size=64) | st.text(max_size=64) | st.integers(0, 20_000).map(nested))
def test_fuzz_bytes_text_and_nesting(raw: str | bytes) -> None:
    check(raw)


# ---- in the session: a bad number is reported, never arms a deadline, never stops the session ---------


def test_session_survives_bad_idle_warnings_and_arms_no_deadline() -> None:
    clock = SteppingClock()
    h = Harness(make_config(), clock=clock)
    try:
        errors: Recorder[SessionError] = Recorder()
        elapsed: Recorder[UserIdleTimeoutElapsed] = Recorder()
        warned: Recorder[ev.UserIdleWarningReceived] = Recorder()
        h.client.events.on_session_error.subscribe(errors, EventDeliveryPolicy.IMMEDIATE)
        h.client.events.on_user_idle_timeout.subscribe(elapsed, EventDeliveryPolicy.IMMEDIATE)
        h.client.events.on_user_idle_warning.subscribe(warned, EventDeliveryPolicy.IMMEDIATE)
        h.connect()
        bad = ['{"type":"server-message","data":{"type":"user-idle-warning","remaining_seconds":' + n + "}}"
               for n in ("Infinity", "1e400", "1e12", "-5", "NaN")] + [nested(5000)]
        for frame in bad:
            h.server.push(frame)
        errors.wait(len(bad), 5.0)
        assert [e.error_code.category for e in errors.events] == ["protocol"] * len(bad)
        assert h.client.state is SessionState.CONNECTED
        clock.wait_for_idle_sleeper()  # no idle deadline (nor any other timer) was armed
        assert len(elapsed) == 0 and len(warned) == 0
        assert h.client.diagnostics()["protocol_errors"] == len(bad)
        h.server.push(form_b("user-idle-warning", remaining_seconds=30))  # the session still works
        assert warned.wait(1, 5.0)[0].remaining_seconds == 30
    finally:
        h.close()
