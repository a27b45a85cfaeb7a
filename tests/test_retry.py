"""Pure unit tests of RetryPolicy, ReconnectPolicy and SlotWaitPolicy (value objects)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from convai_sync import DisconnectReason, ErrorCode, ReconnectPolicy, RetryPolicy, SlotWaitPolicy

pytestmark = pytest.mark.timeout(10)

# PROTOCOL.md §2.2 retry list (written out, not read from the catalog).
RETRYABLE = {
    "connection.timeout", "connection.network_error", "connection.server_error",
    "connection.service_unavailable", "connection.rate_limited",
    "connection.connect_concurrency_limit_reached", "connection.connect_bot_start_failed",
    "connection.connect_unhandled_server_exception", "transport.ice_failed",
    "transport.signal_disconnected", "server.error",
}


# ---- RetryPolicy --------------------------------------------------------------------------------


def test_retry_policy_defaults() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 4
    assert tuple(policy.delays) == (0, 1, 2, 4)


@pytest.mark.parametrize(("attempt", "delay"), [(1, 0.0), (2, 1.0), (3, 2.0), (4, 4.0)])
def test_retry_policy_delay_before(attempt: int, delay: float) -> None:
    result = RetryPolicy().delay_before(attempt)
    assert result == delay
    assert isinstance(result, float)


@pytest.mark.parametrize("attempt", [5, 6, 100])
def test_retry_policy_last_delay_repeats(attempt: int) -> None:
    assert RetryPolicy().delay_before(attempt) == 4.0


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_retry_policy_retries_only_retryable_codes(code: ErrorCode) -> None:
    assert RetryPolicy().should_retry(code, 1) is (code.value in RETRYABLE)


@pytest.mark.parametrize(("attempts_made", "expected"), [(1, True), (2, True), (3, True), (4, False), (5, False)])
def test_retry_policy_stops_after_max_attempts(attempts_made: int, expected: bool) -> None:
    assert RetryPolicy().should_retry(ErrorCode.CONNECTION_TIMEOUT, attempts_made) is expected


@pytest.mark.parametrize("attempts_made", [1, 2, 3, 4])
def test_retry_policy_never_retries_non_retryable(attempts_made: int) -> None:
    policy = RetryPolicy()
    assert policy.should_retry(ErrorCode.CONNECTION_CONNECT_INVALID_API_KEY, attempts_made) is False
    assert policy.should_retry(ErrorCode.CONNECTION_CONNECT_SPEAKER_LIMIT_REACHED, attempts_made) is False


def test_retry_policy_custom_predicate() -> None:
    policy = RetryPolicy(max_attempts=2, retryable=lambda c: c is ErrorCode.CONNECTION_BAD_REQUEST)
    assert policy.should_retry(ErrorCode.CONNECTION_BAD_REQUEST, 1) is True
    assert policy.should_retry(ErrorCode.CONNECTION_BAD_REQUEST, 2) is False
    assert policy.should_retry(ErrorCode.CONNECTION_TIMEOUT, 1) is False


def test_retry_policy_single_attempt_never_retries() -> None:
    assert RetryPolicy(max_attempts=1).should_retry(ErrorCode.CONNECTION_TIMEOUT, 1) is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": -1},
        {"delays": ()},
        {"delays": (0.0, -1.0)},
        {"delays": (-0.5,)},
    ],
    ids=str,
)
def test_retry_policy_invalid_args_raise_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_retry_policy_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy().max_attempts = 9  # type: ignore[misc]  # the runtime refusal is what is tested


# ---- ReconnectPolicy --------------------------------------------------------------------------


def test_reconnect_policy_defaults() -> None:
    policy = ReconnectPolicy()
    assert policy.max_attempts == 3
    assert policy.resume is True


def test_server_shutdown_first_delay_at_least_five_seconds() -> None:
    assert ReconnectPolicy().delay_before(1, DisconnectReason.SERVER_SHUTDOWN) >= 5.0


def test_server_shutdown_delay_respects_configured_minimum() -> None:
    policy = ReconnectPolicy(delays=(0.0,), server_shutdown_delay=7.5)
    assert policy.delay_before(1, DisconnectReason.SERVER_SHUTDOWN) == 7.5
    assert ReconnectPolicy(delays=(9.0,), server_shutdown_delay=5.0).delay_before(
        1, DisconnectReason.SERVER_SHUTDOWN) == 9.0


@pytest.mark.parametrize(
    "reason", [r for r in DisconnectReason if r is not DisconnectReason.SERVER_SHUTDOWN], ids=lambda r: r.name)
def test_other_reasons_first_delay_below_five_seconds(reason: DisconnectReason) -> None:
    policy = ReconnectPolicy()
    assert policy.delay_before(1, reason) < 5.0
    assert policy.delay_before(1, reason) == policy.delays[0]


@pytest.mark.parametrize("attempt", [2, 3])
def test_server_shutdown_minimum_applies_to_first_attempt_only(attempt: int) -> None:
    policy = ReconnectPolicy()
    assert policy.delay_before(attempt, DisconnectReason.SERVER_SHUTDOWN) == policy.delay_before(
        attempt, DisconnectReason.UNKNOWN_REASON)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 10])
def test_reconnect_delays_non_negative_and_last_repeats(attempt: int) -> None:
    policy = ReconnectPolicy()
    delay = policy.delay_before(attempt, DisconnectReason.UNKNOWN_REASON)
    assert delay >= 0
    if attempt >= len(policy.delays):
        assert delay == policy.delays[-1]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": -1}, {"delays": ()}, {"delays": (-1.0,)}, {"server_shutdown_delay": -1.0}],
    ids=str,
)
def test_reconnect_policy_invalid_args_raise_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ReconnectPolicy(**kwargs)


def test_reconnect_policy_zero_attempts_allowed() -> None:
    assert ReconnectPolicy(max_attempts=0).max_attempts == 0


# ---- SlotWaitPolicy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_wait", "interval", "waited", "expected"),
    [
        (120.0, 5.0, 0.0, 5.0),
        (120.0, 5.0, 100.0, 5.0),
        (120.0, 5.0, 115.0, 5.0),
        (120.0, 5.0, 117.0, 3.0),
        (120.0, 5.0, 119.5, 0.5),
        (120.0, 5.0, 120.0, None),
        (120.0, 5.0, 150.0, None),
        (10.0, 30.0, 0.0, 10.0),
        (0.0, 1.0, 0.0, None),
    ],
)
def test_slot_wait_next_wait(max_wait: float, interval: float, waited: float, expected: float | None) -> None:
    result = SlotWaitPolicy(max_wait=max_wait, interval=interval).next_wait(waited)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_slot_wait_total_never_exceeds_max_wait() -> None:
    policy = SlotWaitPolicy(max_wait=12.0, interval=5.0)
    waited, steps = 0.0, []
    while (step := policy.next_wait(waited)) is not None:
        steps.append(step)
        waited += step
    assert steps == [5.0, 5.0, 2.0]
    assert waited == 12.0


@pytest.mark.parametrize("kwargs", [{"max_wait": -1.0}, {"interval": 0.0}, {"interval": -2.0}], ids=str)
def test_slot_wait_invalid_args_raise_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SlotWaitPolicy(**kwargs)
