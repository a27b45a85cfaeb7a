"""Pure unit tests of close classification: TransportClosed -> (DisconnectReason, error, retry).

WS close codes and reason strings are PROTOCOL.md §1.5 verbatim; 4000+reason and 4100 are the
simulator extensions of DESIGN.md §6.
"""

from __future__ import annotations

import pytest

from convai_sync import DisconnectReason, ErrorCode, SessionErrorStage
from convai_sync.closes import CloseOutcome, classify_close
from convai_sync.transports.base import TransportClosed

pytestmark = pytest.mark.timeout(10)

R = DisconnectReason
E = ErrorCode


def server(code: int | None, reason: str = "") -> TransportClosed:
    return TransportClosed(code=code, reason=reason, initiator="server")


# ---- client / network ---------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1006, ""), (None, ""), (1008, "Session expired"),
                                              (4003, ""), (1011, "boom")])
def test_client_initiated_close_never_retries(code: int | None, reason: str) -> None:
    outcome = classify_close(TransportClosed(code=code, reason=reason, initiator="client"))
    assert isinstance(outcome, CloseOutcome)
    assert outcome.reason is R.CLIENT_INITIATED
    assert outcome.error is None
    assert outcome.retry is False


@pytest.mark.parametrize(
    "closed",
    [
        TransportClosed(code=1006, reason="", initiator="network", error=OSError("reset")),
        TransportClosed(code=None, reason="", initiator="network"),
        TransportClosed(code=1006, reason="", initiator="server"),
        TransportClosed(code=None, reason="", initiator="server"),
        TransportClosed(code=1000, reason="", initiator="network"),
    ],
    ids=["network-1006", "network-none", "server-1006", "server-none", "network-1000"],
)
def test_network_loss_is_unknown_reason_signal_disconnected_and_retried(closed: TransportClosed) -> None:
    outcome = classify_close(closed, session_id="sess-1")
    assert outcome.reason is R.UNKNOWN_REASON
    assert outcome.error is not None
    assert outcome.error.error_code is E.TRANSPORT_SIGNAL_DISCONNECTED
    assert outcome.error.session_id == "sess-1"
    assert outcome.error.is_recoverable is True
    assert outcome.retry is True
    assert outcome.error.exception is closed.error


def test_1001_going_away_is_server_shutdown_retried() -> None:
    outcome = classify_close(server(1001, "going away"))
    assert outcome.reason is R.SERVER_SHUTDOWN
    assert outcome.error is None
    assert outcome.retry is True


# ---- 1008 reason strings (PROTOCOL.md §1.5, exact) -----------------------------------------------

CASES_1008: list[tuple[str, DisconnectReason, ErrorCode | None, bool]] = [
    ("Session expired. Please reconnect via /connect", R.ROOM_DELETED, E.SESSION_TOKEN_EXPIRED, False),
    ("Session already has an active connection. Only one WebSocket per session allowed.",
     R.DUPLICATE_IDENTITY, None, False),
    ("Usage limit exceeded", R.ROOM_DELETED, E.SERVER_USAGE_LIMIT_REACHED, False),
    ("User authentication failed. Please reconnect via /connect", R.JOIN_FAILURE, E.CONNECTION_AUTH_FAILED, False),
    ("Character not found or not accessible. Please reconnect via /connect",
     R.JOIN_FAILURE, E.CONNECTION_CONNECT_CHARACTER_NOT_FOUND, False),
    ("Session not found in cache or database", R.STATE_MISMATCH, None, True),
    ("Session not found in database", R.STATE_MISMATCH, None, True),
    ("Session metadata incomplete. Please reconnect via /connect", R.STATE_MISMATCH, None, True),
    ("Session transport mismatch. Please reconnect via /connect", R.STATE_MISMATCH, None, True),
]


@pytest.mark.parametrize(("text", "reason", "code", "retry"), CASES_1008, ids=[c[0][:40] for c in CASES_1008])
def test_1008_reason_strings(text: str, reason: DisconnectReason, code: ErrorCode | None, retry: bool) -> None:
    outcome = classify_close(server(1008, text), session_id="sess-2")
    assert outcome.reason is reason
    assert outcome.retry is retry
    if code is None:
        assert outcome.error is None
    else:
        assert outcome.error is not None
        assert outcome.error.error_code is code
        assert outcome.error.session_id == "sess-2"
        assert text in outcome.error.message


@pytest.mark.parametrize(("text", "reason", "code", "retry"), CASES_1008, ids=[c[0][:40] for c in CASES_1008])
def test_1008_matching_is_case_insensitive(text: str, reason: DisconnectReason, code: ErrorCode | None,
                                           retry: bool) -> None:
    outcome = classify_close(server(1008, text.upper()))
    assert outcome.reason is reason
    assert outcome.retry is retry
    assert (outcome.error.error_code if outcome.error else None) is code


def test_1008_retry_never_contradicts_reason() -> None:
    for text, *_ in CASES_1008:
        outcome = classify_close(server(1008, text))
        if outcome.retry:
            assert outcome.reason.should_retry


@pytest.mark.parametrize("text", ["", "Policy violation", "Something else entirely"])
def test_unknown_1008_is_connection_failed_join_failure(text: str) -> None:
    outcome = classify_close(server(1008, text))
    assert outcome.reason is R.JOIN_FAILURE
    assert outcome.error is not None
    assert outcome.error.error_code is E.CONNECTION_FAILED
    assert outcome.retry is False


# ---- 1011, 1000 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Session data incomplete. Please reconnect via /connect",
                                  "KeyError: 'pipeline'", ""])
def test_1011_is_server_error_retried(text: str) -> None:
    outcome = classify_close(server(1011, text), session_id="s")
    assert outcome.error is not None
    assert outcome.error.error_code is E.SERVER_ERROR
    assert outcome.error.is_recoverable is True
    assert outcome.retry is True
    if text:
        assert text in outcome.error.message


@pytest.mark.parametrize(("code", "text"), [(1000, ""), (1000, "Pipeline killed"), (1005, "")])
def test_normal_server_close_is_room_deleted_no_retry(code: int, text: str) -> None:
    outcome = classify_close(server(code, text))
    assert outcome.reason is R.ROOM_DELETED
    assert outcome.error is None
    assert outcome.retry is False


def test_idle_timeout_close_names_its_cause() -> None:
    outcome = classify_close(server(1000, "Idle timeout"))
    assert outcome.reason is R.ROOM_DELETED
    assert outcome.error is not None and outcome.error.error_code is E.SESSION_IDLE_TIMEOUT
    assert outcome.retry is False


# ---- 4000 + reason ------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(DisconnectReason), ids=lambda r: r.name)
def test_reason_close_codes(reason: DisconnectReason) -> None:
    outcome = classify_close(server(4000 + int(reason), reason.message))
    assert outcome.reason is reason
    assert outcome.retry is reason.should_retry
    if reason is DisconnectReason.AGENT_ERROR:  # PROTOCOL.md §2.6: surfaced as a server error
        assert outcome.error is not None and outcome.error.error_code is E.SERVER_FATAL_ERROR
    else:
        assert outcome.error is None


# ---- 4100 + ErrorCode ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "retry"),
    [
        ("transport.ice_failed", E.TRANSPORT_ICE_FAILED, True),
        ("transport.ice_failed: UDP blocked", E.TRANSPORT_ICE_FAILED, True),
        ("transport.signal_disconnected", E.TRANSPORT_SIGNAL_DISCONNECTED, True),
        ("transport.peer_connection_failed", E.TRANSPORT_PEER_CONNECTION_FAILED, False),
        ("transport.livekit_error", E.TRANSPORT_LIVEKIT_ERROR, False),
        ("not.a.code", E.TRANSPORT_LIVEKIT_ERROR, False),
        ("", E.TRANSPORT_LIVEKIT_ERROR, False),
    ],
)
def test_4100_carries_an_error_code(text: str, code: ErrorCode, retry: bool) -> None:
    outcome = classify_close(server(4100, text), session_id="s4")
    assert outcome.error is not None
    assert outcome.error.error_code is code
    assert outcome.error.stage is SessionErrorStage.TRANSPORT
    assert outcome.error.session_id == "s4"
    assert outcome.retry is retry
    assert outcome.retry is outcome.error.is_recoverable


# ---- anything else -------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1002, 1003, 1009, 1012, 1013, 3000, 4999])
def test_other_server_close_codes_are_unknown_reason_retried(code: int) -> None:
    outcome = classify_close(server(code, "x"))
    assert outcome.reason is R.UNKNOWN_REASON
    assert outcome.retry is True


def test_close_outcome_is_frozen() -> None:
    outcome = classify_close(server(1001))
    with pytest.raises(AttributeError):
        outcome.retry = False  # type: ignore[misc]  # the runtime refusal is what is tested
