"""The API key never leaks, whatever its whitespace, and a bad key is not a network error.

Regression: a key read from a file (``"sk-…\\n"``) made requests raise ``InvalidHeader``, whose
message quotes the header value; that text landed in ``SessionError.exception``, in the
``on_session_error`` payload's repr and in ``last_error``, and the failure was classified as a
retried ``connection.network_error``. Exception *text* was copied unscrubbed, and a server
echoing the (stripped) key was only redacted when the configured key matched exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from convai_sync import (
    ConfigurationError,
    ConvaiClient,
    ConvaiConfig,
    ConvaiError,
    ErrorCode,
    EventDeliveryPolicy,
    RetryPolicy,
    SessionError,
    SessionState,
)
from convai_sync.connect import ConnectApi, ConnectFailed
from convai_sync.redact import scrub
from simulator import Simulator

pytestmark = pytest.mark.timeout(20)

CORE = "HYGIENE-SECRET-4242"          # the distinctive part: it must appear nowhere
KEY = f"sk-{CORE}-abcdef"
ODD = f" \t{KEY}\r\n"                 # as read from a file with CRLF endings and stray indentation
FAST_RETRIES = RetryPolicy(max_attempts=4, delays=(0.0, 0.01))
URL = "http://127.0.0.1:9"


def _texts(obj: object) -> list[str]:
    """``str`` and ``repr`` of ``obj`` and, for exceptions, of everything they chain or carry."""
    out = [str(obj), repr(obj)]
    seen: set[int] = set()
    stack: list[Any] = [obj]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ConvaiError):
            stack.append(item.error)
        if isinstance(item, SessionError):
            out += [item.message, repr(item)]
            stack.append(item.exception)
        if isinstance(item, BaseException):
            out += [str(item), repr(item), *map(repr, item.args)]
            assert getattr(item, "request", None) is None, "a requests object (with headers) is kept"
            stack += [item.__cause__, item.__context__]
    return out


def _assert_clean(*objects: object) -> None:
    for obj in objects:
        for text in _texts(obj):
            assert CORE not in text, f"key leaked in: {text[:300]}"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)  # every logger, requests and urllib3 included
    yield caplog
    for record in caplog.records:
        assert CORE not in record.getMessage(), record.getMessage()
        assert CORE not in (record.exc_text or "")
    assert CORE not in caplog.text


# ---- the scrub helper -------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    f"value: {KEY}", f"value: {ODD}", f"header value: {ODD!r}", f"header value: {KEY!r}",
    "quoted: sk-" + CORE + "-abcdef%0D%0A", f"{ODD.strip()}\n{ODD.rstrip()}|{ODD.lstrip()}",
])
def test_scrub_hides_every_form_of_the_key(text: str) -> None:
    assert CORE not in scrub(text, ODD)
    assert CORE not in scrub(text, KEY)
    assert "***" in scrub(text, ODD)


def test_scrub_leaves_other_text_alone() -> None:
    assert scrub("POST /connect failed: ConnectionError", KEY) == "POST /connect failed: ConnectionError"
    assert scrub("Invalid API key", "k") == "Invalid API key"  # too short to tell from a word


# ---- construction --------------------------------------------------------------------------------


def test_key_with_surrounding_whitespace_is_stripped() -> None:
    assert ConvaiConfig(api_key=ODD).api_key == KEY
    assert ConvaiConfig.from_env({"CONVAI_API_KEY": ODD}).api_key == KEY


@pytest.mark.parametrize("inner", [" ", "\n", "\t", "\x00", "\u00a0"])
def test_key_with_inner_whitespace_or_control_is_refused_without_echo(inner: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ConvaiConfig(api_key=f"sk-{CORE[:8]}{inner}{CORE[8:]}")
    assert "api_key" in info.value.error.message
    _assert_clean(info.value)
    assert CORE[:8] not in str(info.value) and CORE[8:] not in str(info.value)


# ---- ConnectApi: exception text and echoed bodies are scrubbed ----------------------------------


def _api(key: str = ODD) -> ConnectApi:
    return ConnectApi(ConvaiConfig(api_key=key, character_id="char", url=URL))


@responses.activate
def test_header_quoting_request_error_is_scrubbed_and_not_a_network_error() -> None:
    responses.add(responses.POST, f"{URL}/connect",
                  body=requests.exceptions.InvalidHeader(f"Invalid header value: {ODD!r}"))
    with pytest.raises(ConnectFailed) as info:
        _api().connect(None, timeout=2.0)
    error = info.value.error
    assert error.error_code is ErrorCode.CONFIG_INVALID
    assert not error.error_code.is_retried
    assert "***" in str(error.exception)
    _assert_clean(info.value, error)


@responses.activate
def test_network_error_text_quoting_the_key_is_scrubbed() -> None:
    responses.add(responses.POST, f"{URL}/connect",
                  body=requests.ConnectionError(f"proxy refused headers {{'X-API-Key': {KEY!r}}}"))
    with pytest.raises(ConnectFailed) as info:
        _api().connect(None, timeout=2.0)
    assert info.value.error.error_code is ErrorCode.CONNECTION_NETWORK_ERROR
    assert isinstance(info.value.error.exception, ConnectionError)
    _assert_clean(info.value, info.value.error)


@responses.activate
def test_server_echoing_the_stripped_key_is_redacted() -> None:
    responses.add(responses.POST, f"{URL}/connect", status=401, json={"detail": f"Invalid API key: {KEY}"})
    with pytest.raises(ConnectFailed) as info:
        _api(ODD).connect(None, timeout=2.0)
    assert info.value.error.error_code is ErrorCode.CONNECTION_CONNECT_INVALID_API_KEY
    assert "***" in info.value.error.message
    _assert_clean(info.value, info.value.error)


# ---- the whole client ------------------------------------------------------------------------------


def _capture(client: ConvaiClient) -> list[object]:
    seen: list[object] = []
    client.events.raw.subscribe(object, seen.append, EventDeliveryPolicy.IMMEDIATE)
    return seen


@responses.activate
def test_client_connect_failure_quoting_headers_leaks_nothing(debug_logs: pytest.LogCaptureFixture) -> None:
    responses.add(responses.POST, f"{URL}/connect",
                  body=requests.exceptions.InvalidHeader(f"Invalid return character or leading space in "
                                                         f"header: X-API-Key: {ODD!r}"))
    config = ConvaiConfig(api_key=ODD, character_id="char", url=URL, retry_policy=FAST_RETRIES)
    with ConvaiClient(config) as client:
        seen = _capture(client)
        with pytest.raises(ConvaiError) as info:
            client.connect(timeout=10)
        exc = info.value
        assert exc.error_code is ErrorCode.CONFIG_INVALID  # not a retried network error
        assert client.diagnostics()["connect_attempts"] == 1
        assert client.state is SessionState.ERROR
        _assert_clean(exc, exc.error, exc.error.exception, client.last_error, client.diagnostics(), *seen)
        assert any(isinstance(e, SessionError) for e in seen)


def test_client_with_odd_whitespace_wrong_key_against_simulator(debug_logs: pytest.LogCaptureFixture) -> None:
    with Simulator() as sim, ConvaiClient(sim.client_config(api_key=ODD, retry_policy=FAST_RETRIES)) as client:
        seen = _capture(client)
        with pytest.raises(ConvaiError) as info:
            client.connect(timeout=10)
        exc = info.value
        # Before the fix: requests refused the header -> connection.network_error, retried.
        assert exc.error_code is ErrorCode.CONNECTION_CONNECT_INVALID_API_KEY
        assert exc.error.http_status_code == 401
        _assert_clean(exc, exc.error, exc.error.exception, client.last_error, client.diagnostics(), *seen)
        assert repr(client.config).count("***") == 1


def test_key_read_from_a_file_connects(tmp_path: Any) -> None:
    key_file = tmp_path / "convai.key"
    with Simulator(api_keys=(KEY,)) as sim:
        key_file.write_text(f"{KEY}\r\n", encoding="utf-8")
        config = sim.client_config(api_key=key_file.read_text(encoding="utf-8"))
        with ConvaiClient(config) as client:
            client.connect(timeout=10)
            assert client.state is SessionState.CONNECTED
            _assert_clean(client.diagnostics(), client)


# ---- issue 20: the key in another field -----------------------------------------------------------


@pytest.mark.parametrize("field", ["url", "character_id", "end_user_id"])
def test_key_pasted_into_another_refused_field_is_not_reachable_through_the_exception(field: str) -> None:
    """Issue 20: a key placed in the URL was masked in the message but still reachable through
    the exception's ``__context__`` (the unredacted ConfigurationError)."""
    bad = {"url": f"https://example.invalid/?key={KEY}", "character_id": f"{KEY}\x07",
           "end_user_id": f"{KEY}\x00"}[field]
    values: dict[str, Any] = {"api_key": KEY, "character_id": "c", field: bad}
    with pytest.raises(ConfigurationError) as info:
        ConvaiConfig(**values)
    assert field in str(info.value)
    _assert_clean(info.value)


def test_key_pasted_into_an_accepted_field_is_hidden_in_reprs_and_diagnostics() -> None:
    """Issue 20, same pattern: a key pasted into character_id showed in repr() and diagnostics()."""
    config = ConvaiConfig(api_key=KEY, character_id=KEY, url=URL)
    client = ConvaiClient(config)
    try:
        _assert_clean(repr(config), repr(client), client.diagnostics())
    finally:
        client.close()
