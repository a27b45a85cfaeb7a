"""Pure unit tests of the connect API (POST /connect, /disconnect) with `responses` mocks.

Classification expectations are PROTOCOL.md §1.5's table, row by row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from convai_sync import ConvaiConfig, ErrorCode, SessionError, SessionErrorStage
from convai_sync.connect import ConnectApi, ConnectFailed, Endpoint, classify, extract_message

pytestmark = pytest.mark.timeout(10)

BASE = "https://convai.test"
CONNECT_URL = f"{BASE}/connect"
DISCONNECT_URL = f"{BASE}/disconnect"
#: A response body: JSON (sent with ``json=``) or raw text.
Body = dict[str, Any] | list[Any] | str
SECRET = "sk-SECRET-123"
CHAR = "char-uuid-1"
OK_BODY = {
    "session_id": "sess-1",
    "request_trace_id": "req_abc",
    "character_session_id": "csid-1",
    "room_url": "wss://convai.test/chat?session_id=sess-1",
    "room_name": None,
    "token": "",
    "end_user_id": None,
    "end_user_metadata": None,
}


def _config(**overrides: Any) -> ConvaiConfig:
    values: dict[str, Any] = {"api_key": SECRET, "character_id": CHAR, "url": BASE}
    values.update(overrides)
    return ConvaiConfig(**values)


@pytest.fixture
def api() -> Iterator[ConnectApi]:
    client = ConnectApi(_config())
    yield client
    client.close()


def _api(**overrides: Any) -> ConnectApi:
    return ConnectApi(_config(**overrides))


def _sent_body(index: int = 0) -> dict[str, Any]:
    raw = responses.calls[index].request.body
    assert raw is not None
    body: dict[str, Any] = json.loads(raw)
    return body


def _connect_failure(api: ConnectApi, status: int, body: Body) -> SessionError:
    if isinstance(body, (dict, list)):
        responses.add(responses.POST, CONNECT_URL, json=body, status=status)
    else:
        responses.add(responses.POST, CONNECT_URL, body=body, status=status)
    with pytest.raises(ConnectFailed) as info:
        api.connect(None, timeout=5)
    return info.value.error


# ---- the request -----------------------------------------------------------------------------


@responses.activate
def test_connect_posts_to_connect_with_api_key_header(api: ConnectApi) -> None:
    responses.add(responses.POST, CONNECT_URL, json=OK_BODY)
    api.connect(None, timeout=5)
    assert len(responses.calls) == 1
    request = responses.calls[0].request
    assert request.method == "POST"
    assert request.url == CONNECT_URL
    assert request.headers["X-API-Key"] == SECRET
    assert request.headers["Content-Type"] == "application/json"


@responses.activate
def test_connect_body_has_required_fields(api: ConnectApi) -> None:
    responses.add(responses.POST, CONNECT_URL, json=OK_BODY)
    api.connect(None, timeout=5)
    body = _sent_body()
    assert body["character_id"] == CHAR
    assert body["transport"] == "websocket"
    assert body["connection_type"] == "audio"
    assert "character_session_id" not in body
    assert "end_user_id" not in body
    assert "end_user_metadata" not in body
    assert SECRET not in json.dumps(body)


@responses.activate
def test_connect_body_trailing_slash_url() -> None:
    client = _api(url=BASE + "/")
    responses.add(responses.POST, CONNECT_URL, json=OK_BODY)
    try:
        client.connect(None, timeout=5)
    finally:
        client.close()
    assert responses.calls[0].request.url == CONNECT_URL


@responses.activate
@pytest.mark.parametrize("csid", ["f7a8-uuid", "11111111-2222-3333-4444-555555555555"])
def test_connect_body_includes_character_session_id_when_given(api: ConnectApi, csid: str) -> None:
    responses.add(responses.POST, CONNECT_URL, json=OK_BODY)
    api.connect(csid, timeout=5)
    assert _sent_body()["character_session_id"] == csid


@responses.activate
@pytest.mark.parametrize(
    ("overrides", "expected_user", "expected_meta"),
    [
        ({"end_user_id": "user-7"}, "user-7", None),
        ({"end_user_id": "  user-7  "}, "user-7", None),
        ({"end_user_id": "user-7", "end_user_metadata": {"name": "Ann"}}, "user-7", {"name": "Ann"}),
    ],
)
def test_connect_body_end_user_fields(overrides: dict[str, Any], expected_user: str,
                                      expected_meta: dict[str, str] | None) -> None:
    client = _api(**overrides)
    responses.add(responses.POST, CONNECT_URL, json=OK_BODY)
    try:
        client.connect(None, timeout=5)
    finally:
        client.close()
    body = _sent_body()
    assert body["end_user_id"] == expected_user
    if expected_meta is None:
        assert "end_user_metadata" not in body
    else:
        assert body["end_user_metadata"] == expected_meta


@responses.activate
def test_connect_body_metadata_without_end_user_id_is_not_sent() -> None:
    client = _api(end_user_metadata={"name": "Ann"})
    responses.add(responses.POST, CONNECT_URL, json=OK_BODY)
    try:
        client.connect(None, timeout=5)
    finally:
        client.close()
    assert "end_user_metadata" not in _sent_body()


@responses.activate
@pytest.mark.parametrize("enable", [True, False])
def test_connect_body_emotion_config(enable: bool) -> None:
    client = _api(enable_emotion=enable)
    responses.add(responses.POST, CONNECT_URL, json=OK_BODY)
    try:
        client.connect(None, timeout=5)
    finally:
        client.close()
    body = _sent_body()
    if enable:
        assert body["emotion_config"] == {"provider": "llm", "min_word_threshold": 3,
                                          "low_intensity_threshold": 0.33, "high_intensity_threshold": 0.66}
    else:
        assert "emotion_config" not in body


@responses.activate
@pytest.mark.parametrize("tts", [True, False])
def test_connect_body_default_tts_enabled(tts: bool) -> None:
    client = _api(tts_enabled=tts)
    responses.add(responses.POST, CONNECT_URL, json=OK_BODY)
    try:
        client.connect(None, timeout=5)
    finally:
        client.close()
    assert _sent_body()["default_tts_enabled"] is tts


# ---- the 200 response -------------------------------------------------------------------------


@responses.activate
def test_connect_parses_success_body(api: ConnectApi) -> None:
    responses.add(responses.POST, CONNECT_URL, json=OK_BODY)
    endpoint = api.connect(None, timeout=5)
    assert isinstance(endpoint, Endpoint)
    assert endpoint.session_id == "sess-1"
    assert endpoint.room_url == "wss://convai.test/chat?session_id=sess-1"
    assert endpoint.character_session_id == "csid-1"
    assert endpoint.request_trace_id == "req_abc"
    assert endpoint.room_name is None
    assert endpoint.token == ""
    assert endpoint.transport == "websocket"


@responses.activate
def test_connect_tolerates_unknown_keys_and_keeps_them_in_extra(api: ConnectApi) -> None:
    body = dict(OK_BODY, speaker_id="spk", room_session_id="rs-1", characters=[{"character_id": "c"}],
                transport="websocket", future_field={"x": 1})
    responses.add(responses.POST, CONNECT_URL, json=body)
    endpoint = api.connect(None, timeout=5)
    assert endpoint.session_id == "sess-1"
    assert endpoint.extra["speaker_id"] == "spk"
    assert endpoint.extra["room_session_id"] == "rs-1"
    assert endpoint.extra["characters"] == [{"character_id": "c"}]
    assert endpoint.extra["future_field"] == {"x": 1}
    assert "session_id" not in endpoint.extra
    assert "room_url" not in endpoint.extra


@responses.activate
def test_connect_livekit_style_fields(api: ConnectApi) -> None:
    body = dict(OK_BODY, room_url="https://lk.test", room_name="conversation-room-xyz", token="jwt.token",
                transport="livekit")
    responses.add(responses.POST, CONNECT_URL, json=body)
    endpoint = api.connect(None, timeout=5)
    assert (endpoint.room_name, endpoint.token, endpoint.transport) == ("conversation-room-xyz", "jwt.token", "livekit")
    assert "jwt.token" not in repr(endpoint)


@responses.activate
@pytest.mark.parametrize(
    "body",
    [
        {k: v for k, v in OK_BODY.items() if k != "session_id"},
        {k: v for k, v in OK_BODY.items() if k != "room_url"},
        dict(OK_BODY, session_id=""),
        dict(OK_BODY, room_url=None),
        dict(OK_BODY, session_id=42),
        {},
        [OK_BODY],
        "not json at all",
    ],
    ids=["no-session_id", "no-room_url", "empty-session_id", "null-room_url", "int-session_id",
         "empty-object", "array", "not-json"],
)
def test_connect_200_without_room_details_is_connection_failed(api: ConnectApi, body: Body) -> None:
    error = _connect_failure(api, 200, body)
    assert error.error_code is ErrorCode.CONNECTION_FAILED
    assert error.error_code == "connection.failed"  # type: ignore[comparison-overlap]  # a str enum, by design
    assert error.stage is SessionErrorStage.CONNECT_API
    assert error.http_status_code == 200
    assert error.is_recoverable is False


# ---- §1.5 error rows ----------------------------------------------------------------------------

E = ErrorCode
Row = tuple[int, Body, ErrorCode]
ROWS: list[Row] = [
    # 400: invalid-uuid markers (case-insensitive) -> invalid_session_id
    (400, {"detail": "Invalid session ID format"}, E.CONNECTION_CONNECT_INVALID_SESSION_ID),
    (400, {"detail": "invalid uuid"}, E.CONNECTION_CONNECT_INVALID_SESSION_ID),
    (400, {"detail": "Value is an INVALID UUID string"}, E.CONNECTION_CONNECT_INVALID_SESSION_ID),
    (400, {"detail": "invalid session id"}, E.CONNECTION_CONNECT_INVALID_SESSION_ID),
    (400, {"detail": "invalid session_id: abc"}, E.CONNECTION_CONNECT_INVALID_SESSION_ID),
    (400, {"detail": "Invalid character_session_id"}, E.CONNECTION_CONNECT_INVALID_SESSION_ID),
    (400, {"detail": "Invalid UUID format"}, E.CONNECTION_CONNECT_INVALID_SESSION_ID),
    # 400 otherwise -> bad_request
    (400, {"detail": "Missing end_user_id. end_user_id is required when the character has Long Term Memory "
                     "enabled. Provide end_user_id or disable Long Term Memory."}, E.CONNECTION_BAD_REQUEST),
    (400, {"detail": "audio_config is only supported with LiveKit transport, but transport is set to "
                     "'websocket'"}, E.CONNECTION_BAD_REQUEST),
    (400, {"detail": "bad request"}, E.CONNECTION_BAD_REQUEST),
    (400, "", E.CONNECTION_BAD_REQUEST),
    # 401
    (401, {"detail": "Invalid API key"}, E.CONNECTION_CONNECT_INVALID_API_KEY),
    (401, {"detail": "Authentication required: provide X-API-Key or API-AUTH-TOKEN"},
     E.CONNECTION_CONNECT_INVALID_API_KEY),
    (401, "", E.CONNECTION_CONNECT_INVALID_API_KEY),
    # 403
    (403, {"detail": "Realtime access denied"}, E.CONNECTION_CONNECT_REALTIME_NOT_ALLOWED),
    (403, {"detail": "Session forbidden"}, E.CONNECTION_CONNECT_REALTIME_NOT_ALLOWED),
    (403, "", E.CONNECTION_CONNECT_REALTIME_NOT_ALLOWED),
    (403, {"detail": "error: multi_character_v0_disabled for this account"},
     E.CONNECTION_CONNECT_MULTI_CHARACTER_NOT_ALLOWED),
    (403, {"detail": "multi_character_roster_limit_exceeded (max 2)"},
     E.CONNECTION_CONNECT_MULTI_CHARACTER_ROSTER_LIMIT),
    # 404
    (404, {"detail": "Character not found or doesn't belong to user"}, E.CONNECTION_CONNECT_CHARACTER_NOT_FOUND),
    (404, {"detail": "Session not found"}, E.CONNECTION_CONNECT_CHARACTER_NOT_FOUND),
    (404, "", E.CONNECTION_CONNECT_CHARACTER_NOT_FOUND),
    # 409 -> 4xx fallback
    (409, {"detail": "Shared session conflict"}, E.CONNECTION_BAD_REQUEST),
    # 422 array detail
    (422, {"detail": [{"type": "value_error", "loc": ["body", "transport"],
                       "msg": "Value error, Invalid transport: sse", "input": "sse"}]},
     E.CONNECTION_CONNECT_VALIDATION_ERROR),
    (422, {"detail": "validation failed"}, E.CONNECTION_CONNECT_VALIDATION_ERROR),
    # 429
    (429, {"detail": "Speaker limit reached"}, E.CONNECTION_CONNECT_SPEAKER_LIMIT_REACHED),
    (429, {"detail": "end-user SPEAKER quota"}, E.CONNECTION_CONNECT_SPEAKER_LIMIT_REACHED),
    (429, {"detail": "Concurrency limit reached for your plan"}, E.CONNECTION_CONNECT_CONCURRENCY_LIMIT_REACHED),
    (429, {"detail": "Too many requests"}, E.CONNECTION_CONNECT_CONCURRENCY_LIMIT_REACHED),
    (429, "", E.CONNECTION_CONNECT_CONCURRENCY_LIMIT_REACHED),
    # 500
    (500, {"detail": "Failed to start bot"}, E.CONNECTION_CONNECT_BOT_START_FAILED),
    (500, {"detail": "Internal error: failed to start bot pipeline"}, E.CONNECTION_CONNECT_BOT_START_FAILED),
    (500, {"detail": "Internal server error"}, E.CONNECTION_CONNECT_UNHANDLED_SERVER_EXCEPTION),
    (500, "", E.CONNECTION_CONNECT_UNHANDLED_SERVER_EXCEPTION),
    # 503 / other 5xx
    (503, {"detail": "Database unavailable"}, E.CONNECTION_SERVICE_UNAVAILABLE),
    (503, "", E.CONNECTION_SERVICE_UNAVAILABLE),
    (502, "<html>Bad Gateway</html>", E.CONNECTION_SERVER_ERROR),
    (504, {"detail": "Gateway timeout"}, E.CONNECTION_SERVER_ERROR),
    (599, "", E.CONNECTION_SERVER_ERROR),
    # other 4xx
    (418, {"detail": "I'm a teapot"}, E.CONNECTION_BAD_REQUEST),
    (405, "", E.CONNECTION_BAD_REQUEST),
    (413, {"message": "too large"}, E.CONNECTION_BAD_REQUEST),
]


def _row_id(row: Row) -> str:
    status, body, code = row
    text = body if isinstance(body, str) else json.dumps(body)
    return f"{status}-{code.value.split('.')[1]}-{text[:30]}"


@responses.activate
@pytest.mark.parametrize(("status", "body", "code"), ROWS, ids=[_row_id(r) for r in ROWS])
def test_http_error_rows_classify(api: ConnectApi, status: int, body: Body, code: ErrorCode) -> None:
    error = _connect_failure(api, status, body)
    assert error.error_code is code
    assert error.stage is SessionErrorStage.CONNECT_API
    assert error.http_status_code == status
    assert error.has_http_status_code is True
    assert error.is_recoverable is code.is_recoverable
    assert SECRET not in error.message
    assert str(status) in error.message


@responses.activate
@pytest.mark.parametrize(("status", "body", "code"), ROWS, ids=[_row_id(r) for r in ROWS])
def test_http_error_exception_never_contains_api_key(api: ConnectApi, status: int, body: Body,
                                                     code: ErrorCode) -> None:
    if isinstance(body, (dict, list)):
        responses.add(responses.POST, CONNECT_URL, json=body, status=status)
    else:
        responses.add(responses.POST, CONNECT_URL, body=body, status=status)
    with pytest.raises(ConnectFailed) as info:
        api.connect(None, timeout=5)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert SECRET not in repr(info.value.error)


@responses.activate
@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (401, {"ERROR": "The request contains an invalid API key."}, E.CONNECTION_CONNECT_INVALID_API_KEY),
        (429, {"message": "speaker limit"}, E.CONNECTION_CONNECT_SPEAKER_LIMIT_REACHED),
        (429, {"error": "Speaker limit"}, E.CONNECTION_CONNECT_SPEAKER_LIMIT_REACHED),
        (500, "Failed to start bot", E.CONNECTION_CONNECT_BOT_START_FAILED),
        (400, "invalid uuid", E.CONNECTION_CONNECT_INVALID_SESSION_ID),
    ],
)
def test_classifier_reads_message_error_and_raw_bodies(api: ConnectApi, status: int, body: Body,
                                                       code: ErrorCode) -> None:
    assert _connect_failure(api, status, body).error_code is code


@responses.activate
def test_detail_wins_over_message_for_classification(api: ConnectApi) -> None:
    body = {"detail": "Concurrency limit reached", "message": "speaker"}
    assert _connect_failure(api, 429, body).error_code is E.CONNECTION_CONNECT_CONCURRENCY_LIMIT_REACHED


@responses.activate
def test_error_message_includes_extracted_detail(api: ConnectApi) -> None:
    error = _connect_failure(api, 404, {"detail": "Character not found or doesn't belong to user"})
    assert "Character not found or doesn't belong to user" in error.message


@responses.activate
def test_api_key_echoed_by_server_is_redacted(api: ConnectApi) -> None:
    error = _connect_failure(api, 401, {"detail": f"Invalid API key {SECRET}"})
    assert SECRET not in error.message


# ---- network failures ---------------------------------------------------------------------------


@responses.activate
@pytest.mark.parametrize(
    "exc",
    [requests.ConnectionError("Name or service not known"), requests.exceptions.SSLError("bad cert"),
     requests.exceptions.ChunkedEncodingError("broken")],
    ids=["connection-error", "ssl-error", "chunked"],
)
def test_network_failure_is_network_error_with_status_zero(api: ConnectApi, exc: Exception) -> None:
    responses.add(responses.POST, CONNECT_URL, body=exc)
    with pytest.raises(ConnectFailed) as info:
        api.connect(None, timeout=5)
    error = info.value.error
    assert error.error_code is E.CONNECTION_NETWORK_ERROR
    assert error.http_status_code == 0
    assert error.has_http_status_code is False
    assert error.stage is SessionErrorStage.CONNECT_API
    assert error.is_recoverable is True
    # A sanitised copy: the original requests exception holds the request and its X-API-Key header.
    assert isinstance(error.exception, ConnectionError) and error.exception is not exc
    assert str(exc) in str(error.exception)
    assert not hasattr(error.exception, "request")
    assert SECRET not in str(info.value)


@responses.activate
@pytest.mark.parametrize(
    "exc",
    [requests.Timeout("read timed out"), requests.exceptions.ReadTimeout("slow"),
     requests.exceptions.ConnectTimeout("no route")],
    ids=["timeout", "read-timeout", "connect-timeout"],
)
def test_timeout_is_connection_timeout(api: ConnectApi, exc: Exception) -> None:
    responses.add(responses.POST, CONNECT_URL, body=exc)
    with pytest.raises(ConnectFailed) as info:
        api.connect(None, timeout=2.5)
    error = info.value.error
    assert error.error_code is E.CONNECTION_TIMEOUT
    assert error.error_code == "connection.timeout"  # type: ignore[comparison-overlap]  # a str enum, by design
    assert error.stage is SessionErrorStage.CONNECT_API
    assert error.is_recoverable is True
    assert "2.5" in error.message
    assert SECRET not in str(info.value)


# ---- extract_message ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"detail": "d", "message": "m", "error": "e"}', "d"),
        ('{"message": "m", "error": "e"}', "m"),
        ('{"error": "e"}', "e"),
        ('{"detail": null, "message": "m"}', "m"),
        ('{"ERROR": "The request is missing an API key."}', "The request is missing an API key."),
        ('{"other": 1}', '{"other": 1}'),
        ("plain text body", "plain text body"),
        ("  padded  \n", "padded"),
        ("", ""),
        ("[1, 2]", "[1, 2]"),
        ('"just a string"', '"just a string"'),
    ],
)
def test_extract_message_order(body: str, expected: str) -> None:
    assert extract_message(body) == expected


def test_extract_message_stringifies_array_detail() -> None:
    body = json.dumps({"detail": [
        {"type": "value_error", "loc": ["body", "transport"], "msg": "Value error, Invalid transport: sse"},
        {"type": "missing", "loc": ["body", "character_id"], "msg": "Field required"},
    ], "message": "ignored"})
    text = extract_message(body)
    assert isinstance(text, str)
    assert "Invalid transport: sse" in text
    assert "Field required" in text
    assert "ignored" not in text


def test_extract_message_detail_array_of_strings() -> None:
    text = extract_message(json.dumps({"detail": ["first", "second"]}))
    assert "first" in text and "second" in text


def test_extract_message_detail_object_is_serialised() -> None:
    text = extract_message(json.dumps({"detail": {"code": "x"}}))
    assert "code" in text and "x" in text


# ---- classify ---------------------------------------------------------------------------------


@pytest.mark.parametrize("message", ["", "Name or service not known", "speaker", "failed to start bot"])
def test_classify_status_zero_is_network_error(message: str) -> None:
    assert classify(0, message) is E.CONNECTION_NETWORK_ERROR


@pytest.mark.parametrize(("status", "message", "code"), [(s, b if isinstance(b, str) else extract_message(
    json.dumps(b)), c) for s, b, c in ROWS], ids=[_row_id(r) for r in ROWS])
def test_classify_directly(status: int, message: str, code: ErrorCode) -> None:
    assert classify(status, message) is code


# ---- /disconnect ----------------------------------------------------------------------------------


@responses.activate
def test_disconnect_posts_session_id_and_returns_true_on_200(api: ConnectApi) -> None:
    responses.add(responses.POST, DISCONNECT_URL,
                  json={"status": "success", "message": "Session disconnected successfully"},
                  match=[matchers.query_param_matcher({"session_id": "sess-1"})])
    assert api.disconnect("sess-1") is True
    assert len(responses.calls) == 1
    request = responses.calls[0].request
    assert request.method == "POST"
    assert request.url == f"{DISCONNECT_URL}?session_id=sess-1"
    assert SECRET not in str(request.headers.values())


@responses.activate
@pytest.mark.parametrize(("status", "body"), [(500, {"detail": "boom"}), (400, {"detail": "Invalid session ID format"}),
                                              (503, "")])
def test_disconnect_returns_false_on_http_error(api: ConnectApi, status: int, body: Body) -> None:
    responses.add(responses.POST, DISCONNECT_URL, json=body, status=status)
    assert api.disconnect("sess-1") is False


@responses.activate
@pytest.mark.parametrize("exc", [requests.ConnectionError("down"), requests.Timeout("slow")],
                         ids=["connection-error", "timeout"])
def test_disconnect_returns_false_on_network_failure(api: ConnectApi, exc: Exception) -> None:
    responses.add(responses.POST, DISCONNECT_URL, body=exc)
    assert api.disconnect("sess-1") is False


@responses.activate
def test_disconnect_is_idempotent(api: ConnectApi) -> None:
    responses.add(responses.POST, DISCONNECT_URL, json={"status": "success"})
    assert api.disconnect("sess-1") is True
    assert api.disconnect("sess-1") is True
    assert len(responses.calls) == 2
