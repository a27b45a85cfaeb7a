"""Pure unit tests of the error catalog, SessionError, the exception tree and DisconnectReason.

The expected per-code facts below are written out from PROTOCOL.md §2.2 / §2.6 by hand; they
are never derived from ``convai_sync.errors.CATALOG``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from convai_sync import (
    ConcurrencyLimitError,
    ConfigurationError,
    ConvaiError,
    DisconnectReason,
    ErrorCode,
    InvalidStateError,
    SessionError,
    SessionErrorStage,
    UsageLimitError,
)
from convai_sync.disconnect import reason_from_close_code
from convai_sync.errors import CATALOG, error_for, invalid_state

pytestmark = pytest.mark.timeout(10)

CFG = SessionErrorStage.CONFIGURATION
API = SessionErrorStage.CONNECT_API
TRN = SessionErrorStage.TRANSPORT
REC = SessionErrorStage.SESSION_RECOVERY
RUN = SessionErrorStage.RUNTIME

# code: (recoverable (source), auto-retried (seed list), stage, documented HTTP status or None).
# "5xx" -> 500 and "4xx" -> 400 (the representative status the catalog records).
EXPECTED = {
    "config.api_key_missing": (False, False, CFG, None),
    "config.character_id_missing": (False, False, CFG, None),
    "config.auth_token_provider_missing": (False, False, CFG, None),
    "config.auth_token_endpoint_invalid": (False, False, CFG, None),
    "config.auth_token_mode_required": (False, False, CFG, None),
    "connection.connect_invalid_api_key": (False, False, API, 401),
    "connection.auth_failed": (False, False, API, 403),
    "connection.invalid_token": (False, False, API, 401),
    "connection.auth_token_fetch_failed": (True, False, API, None),
    "connection.connect_invalid_session_id": (False, False, API, 400),
    "connection.connect_character_not_found": (False, False, API, 404),
    "connection.connect_realtime_not_allowed": (False, False, API, 403),
    "connection.connect_multi_character_not_allowed": (False, False, API, 403),
    "connection.connect_multi_character_roster_limit": (False, False, API, 403),
    "connection.connect_concurrency_limit_reached": (True, True, API, 429),
    "connection.connect_speaker_limit_reached": (False, False, API, 429),
    "connection.connect_bot_start_failed": (True, True, API, 500),
    "connection.connect_unhandled_server_exception": (True, True, API, 500),
    "connection.connect_validation_error": (False, False, API, 422),
    "connection.timeout": (True, True, API, None),
    "connection.network_error": (True, True, API, 0),
    "connection.rate_limited": (True, True, API, 429),
    "connection.service_unavailable": (True, True, API, 503),
    "connection.server_error": (True, True, API, 500),
    "connection.not_found": (False, False, API, 404),
    "connection.bad_request": (False, False, API, 400),
    "connection.failed": (False, False, API, None),
    "transport.ice_failed": (True, True, TRN, None),
    "transport.peer_connection_failed": (False, False, TRN, None),
    "transport.livekit_error": (False, False, TRN, None),
    "transport.signal_disconnected": (True, True, TRN, None),
    "audio.mic_unavailable": (False, False, RUN, None),
    "audio.mic_permission_denied": (False, False, RUN, None),
    "audio.mic_publish_failed": (False, False, RUN, None),
    "server.usage_limit_reached": (False, False, RUN, None),
    "server.fatal_error": (False, False, RUN, None),
    "server.error": (True, True, RUN, None),
    "session.token_expired": (False, False, REC, None),
    "session.invalid_state": (False, False, RUN, None),
    "session.cancelled": (False, False, RUN, None),
    "protocol.message_invalid": (False, False, RUN, None),
    "protocol.parse_failed": (False, False, RUN, None),
}

# Client-side codes the SDK adds (not in Convai's table): never recoverable, never retried.
CLIENT_SIDE = {
    "config.invalid": CFG,
    "session.duration_limit_reached": RUN,
    "session.idle_timeout": RUN,
}

# PROTOCOL.md §2.2, "The SEED-UERR retry list, verbatim".
SEED_RETRY_LIST = (
    "connection.timeout, connection.network_error, connection.server_error, connection.service_unavailable, "
    "connection.rate_limited, connection.connect_concurrency_limit_reached, connection.connect_bot_start_failed, "
    "connection.connect_unhandled_server_exception, transport.ice_failed, transport.signal_disconnected, "
    "server.error"
)

CATEGORIES = {"config", "connection", "transport", "audio", "server", "session", "protocol"}

ALL_CODES = list(ErrorCode)


# ---- ErrorCode ------------------------------------------------------------------------------


def test_error_code_is_a_str_enum() -> None:
    assert issubclass(ErrorCode, str)
    assert ErrorCode.CONNECTION_TIMEOUT == "connection.timeout"  # type: ignore[comparison-overlap]  # what is tested
    assert ErrorCode("connection.timeout") is ErrorCode.CONNECTION_TIMEOUT
    assert str(ErrorCode.CONNECTION_TIMEOUT) == "connection.timeout"
    assert f"{ErrorCode.CONNECTION_TIMEOUT}" == "connection.timeout"
    assert {"connection.timeout": 1}[ErrorCode.CONNECTION_TIMEOUT] == 1


def test_enum_holds_exactly_the_documented_and_client_side_codes() -> None:
    assert {c.value for c in ErrorCode} == set(EXPECTED) | set(CLIENT_SIDE)


def test_no_vision_codes() -> None:
    assert not [c for c in ErrorCode if c.value.startswith("vision.")]


@pytest.mark.parametrize("code", ALL_CODES, ids=str)
def test_every_code_has_a_catalog_row(code: ErrorCode) -> None:
    row = CATALOG[code]
    assert code.info == row
    assert isinstance(code.description, str) and code.description.strip()


def test_catalog_has_no_extra_rows() -> None:
    assert set(CATALOG) == set(ErrorCode)


@pytest.mark.parametrize("code", ALL_CODES, ids=str)
def test_category_is_the_prefix(code: ErrorCode) -> None:
    prefix = code.value.split(".")[0]
    assert code.category == prefix
    assert code.category in CATEGORIES
    assert code.value.startswith(code.category + ".")


@pytest.mark.parametrize(("value", "row"), sorted(EXPECTED.items()), ids=lambda x: x if isinstance(x, str) else "")
def test_documented_code_facts(value: str, row: tuple[bool, bool, SessionErrorStage, int | None]) -> None:
    recoverable, retried, stage, http = row
    code = ErrorCode(value)
    assert code.is_recoverable is recoverable
    assert code.is_retried is retried
    assert code.stage is stage
    assert code.http_status == http


@pytest.mark.parametrize(("value", "stage"), sorted(CLIENT_SIDE.items()))
def test_client_side_code_facts(value: str, stage: SessionErrorStage) -> None:
    code = ErrorCode(value)
    assert code.is_recoverable is False
    assert code.is_retried is False
    assert code.stage is stage
    assert code.http_status is None


def test_speaker_limit_is_not_recoverable_per_source() -> None:
    code = ErrorCode.CONNECTION_CONNECT_SPEAKER_LIMIT_REACHED
    assert code.is_recoverable is False
    assert code.is_retried is False
    assert SessionError.of(code).is_recoverable is False


def test_retried_codes_equal_the_seed_retry_list_verbatim() -> None:
    seed = {s.strip() for s in SEED_RETRY_LIST.split(",")}
    assert len(seed) == 11
    assert {c.value for c in ErrorCode if c.is_retried} == seed


def test_recoverable_is_retried_plus_token_fetch() -> None:
    recoverable = {c.value for c in ErrorCode if c.is_recoverable}
    retried = {c.value for c in ErrorCode if c.is_retried}
    assert recoverable == retried | {"connection.auth_token_fetch_failed"}


@pytest.mark.parametrize("code", ALL_CODES, ids=str)
def test_stage_is_a_session_error_stage(code: ErrorCode) -> None:
    assert isinstance(code.stage, SessionErrorStage)


def test_session_error_stage_values() -> None:
    assert [(s.name, int(s)) for s in SessionErrorStage] == [
        ("UNKNOWN", 0), ("CONFIGURATION", 1), ("CONNECT_API", 2),
        ("TRANSPORT", 3), ("SESSION_RECOVERY", 4), ("RUNTIME", 5),
    ]


# ---- SessionError -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", ALL_CODES, ids=str)
def test_session_error_of_defaults_from_code(code: ErrorCode) -> None:
    err = SessionError.of(code)
    assert err.error_code is code
    assert err.message == code.description
    assert err.is_recoverable is code.is_recoverable
    assert err.stage is code.stage
    assert err.http_status_code is None
    assert err.session_id is None
    assert err.exception is None


def test_session_error_of_overrides() -> None:
    exc = RuntimeError("x")
    err = SessionError.of(ErrorCode.SERVER_ERROR, "boom", session_id="s1", exception=exc,
                          stage=SessionErrorStage.TRANSPORT, http_status_code=502, is_recoverable=False)
    assert (err.message, err.session_id, err.exception, err.stage, err.http_status_code, err.is_recoverable) == (
        "boom", "s1", exc, SessionErrorStage.TRANSPORT, 502, False)


def test_session_error_timestamp_is_aware_utc() -> None:
    err = SessionError.of(ErrorCode.CONNECTION_TIMEOUT)
    assert isinstance(err.timestamp, datetime)
    assert err.timestamp.utcoffset() == timedelta(0)


def test_session_error_is_frozen() -> None:
    err = SessionError.of(ErrorCode.CONNECTION_TIMEOUT)
    with pytest.raises(AttributeError):
        err.message = "changed"  # type: ignore[misc]  # the runtime refusal is what is tested


PREDICATES = {
    "connection": "is_connection_error",
    "session": "is_session_error",
    "transport": "is_transport_error",
    "protocol": "is_protocol_error",
    "server": "is_server_error",
}


@pytest.mark.parametrize("code", ALL_CODES, ids=str)
def test_session_error_category_predicates(code: ErrorCode) -> None:
    err = SessionError.of(code)
    assert err.category == code.value.split(".")[0]
    for category, prop in PREDICATES.items():
        assert getattr(err, prop) is (category == err.category), prop


@pytest.mark.parametrize(
    ("status", "expected"),
    [(None, False), (0, False), (429, True), (200, True), (401, True), (503, True)],
)
def test_has_http_status_code(status: int | None, expected: bool) -> None:
    err = SessionError.of(ErrorCode.CONNECTION_FAILED, http_status_code=status)
    assert err.has_http_status_code is expected


# ---- exception tree ---------------------------------------------------------------------------


def _expected_class(code: ErrorCode) -> type[ConvaiError]:
    if code.value.startswith("config."):
        return ConfigurationError
    return {
        "connection.connect_concurrency_limit_reached": ConcurrencyLimitError,
        "server.usage_limit_reached": UsageLimitError,
        "session.invalid_state": InvalidStateError,
    }.get(code.value, ConvaiError)


@pytest.mark.parametrize("code", ALL_CODES, ids=str)
def test_error_for_picks_the_most_specific_class(code: ErrorCode) -> None:
    err = SessionError.of(code, "msg")
    exc = error_for(err)
    assert type(exc) is _expected_class(code)
    assert isinstance(exc, ConvaiError)
    assert isinstance(exc, Exception)
    assert exc.error is err
    assert exc.error_code is code
    assert code.value in str(exc)
    assert "msg" in str(exc)


@pytest.mark.parametrize("cls", [ConfigurationError, ConcurrencyLimitError, UsageLimitError, InvalidStateError])
def test_subclasses_derive_from_convai_error(cls: type[ConvaiError]) -> None:
    assert issubclass(cls, ConvaiError)


def test_invalid_state_helper() -> None:
    exc = invalid_state("not now", session_id="s9")
    assert isinstance(exc, InvalidStateError)
    assert exc.error_code == "session.invalid_state"
    assert exc.error.session_id == "s9"


# ---- DisconnectReason ---------------------------------------------------------------------------

REASONS = [
    ("UNKNOWN_REASON", 0), ("CLIENT_INITIATED", 1), ("DUPLICATE_IDENTITY", 2), ("SERVER_SHUTDOWN", 3),
    ("PARTICIPANT_REMOVED", 4), ("ROOM_DELETED", 5), ("STATE_MISMATCH", 6), ("JOIN_FAILURE", 7),
    ("MIGRATION", 8), ("SIGNAL_CLOSE", 9), ("ROOM_CLOSED", 10), ("USER_UNAVAILABLE", 11),
    ("USER_REJECTED", 12), ("SIP_TRUNK_FAILURE", 13), ("CONNECTION_TIMEOUT", 14), ("MEDIA_FAILURE", 15),
    ("AGENT_ERROR", 16),
]
RETRIED_REASONS = {0, 3, 6, 8, 9, 14, 15}


@pytest.mark.parametrize(("name", "value"), REASONS)
def test_disconnect_reason_values(name: str, value: int) -> None:
    assert int(DisconnectReason[name]) == value
    assert DisconnectReason(value).name == name


def test_disconnect_reasons_are_exactly_0_to_16() -> None:
    assert sorted(int(r) for r in DisconnectReason) == list(range(17))


@pytest.mark.parametrize("reason", list(DisconnectReason), ids=lambda r: r.name)
def test_disconnect_reason_message_non_empty(reason: DisconnectReason) -> None:
    assert isinstance(reason.message, str) and reason.message.strip()


def test_disconnect_reason_messages_are_distinct() -> None:
    assert len({r.message for r in DisconnectReason}) == len(DisconnectReason)


@pytest.mark.parametrize("reason", list(DisconnectReason), ids=lambda r: r.name)
def test_disconnect_reason_should_retry(reason: DisconnectReason) -> None:
    assert reason.should_retry is (int(reason) in RETRIED_REASONS)


@pytest.mark.parametrize("reason", list(DisconnectReason), ids=lambda r: r.name)
def test_disconnect_reason_close_code_round_trip(reason: DisconnectReason) -> None:
    assert reason.close_code == 4000 + int(reason)
    assert reason_from_close_code(reason.close_code) is reason


@pytest.mark.parametrize("code", [None, 1000, 1001, 1006, 1008, 1011, 3999, 4100, 4101, 5000])
def test_reason_from_close_code_outside_range_is_none(code: int | None) -> None:
    assert reason_from_close_code(code) is None


@pytest.mark.parametrize("code", [4017, 4050, 4099])
def test_reason_from_close_code_unknown_value_in_range_is_unknown_reason(code: int) -> None:
    assert reason_from_close_code(code) is DisconnectReason.UNKNOWN_REASON
