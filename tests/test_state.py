"""Pure unit tests of SessionState, its predicates and the allowed-transition table."""

from __future__ import annotations

import itertools

import pytest

from convai_sync import SessionState
from convai_sync.state import TRANSITIONS, IllegalTransition, check_transition

pytestmark = pytest.mark.timeout(10)

S = SessionState

# Convai's values (seed 002 / PROTOCOL.md §2.1).
VALUES = [
    (S.DISCONNECTED, 0),
    (S.CONNECTING, 1),
    (S.CONNECTED, 2),
    (S.RECONNECTING, 3),
    (S.DISCONNECTING, 4),
    (S.ERROR, 5),
]

# state: (is_connected, is_transitioning, is_stable, can_accept_input), per the seed's helpers.
PREDICATES = {
    S.DISCONNECTED: (False, False, True, False),
    S.CONNECTING: (False, True, False, False),
    S.CONNECTED: (True, False, True, True),
    S.RECONNECTING: (True, True, False, False),
    S.DISCONNECTING: (False, True, False, False),
    S.ERROR: (False, False, True, False),
}

# DESIGN.md §5 lifecycle, written out independently of convai_sync.state.TRANSITIONS.
ALLOWED = {
    (S.DISCONNECTED, S.CONNECTING),
    (S.CONNECTING, S.CONNECTED),
    (S.CONNECTING, S.ERROR),
    (S.CONNECTING, S.DISCONNECTING),  # disconnect() during CONNECTING
    (S.CONNECTING, S.DISCONNECTED),  # cancelled
    (S.CONNECTED, S.DISCONNECTING),
    (S.CONNECTED, S.RECONNECTING),
    (S.CONNECTED, S.DISCONNECTED),  # drop without retry
    (S.RECONNECTING, S.CONNECTED),
    (S.RECONNECTING, S.ERROR),
    (S.RECONNECTING, S.DISCONNECTING),
    (S.RECONNECTING, S.DISCONNECTED),
    (S.DISCONNECTING, S.DISCONNECTED),
    (S.ERROR, S.DISCONNECTED),
}

ALL_PAIRS = list(itertools.product(S, S))


def _pair_id(pair: tuple[SessionState, SessionState]) -> str:
    return f"{pair[0].name}->{pair[1].name}"


@pytest.mark.parametrize(("state", "value"), VALUES, ids=lambda x: getattr(x, "name", str(x)))
def test_state_values(state: SessionState, value: int) -> None:
    assert int(state) == value
    assert S(value) is state


def test_exactly_six_states() -> None:
    assert len(S) == 6
    assert [int(s) for s in S] == list(range(6))


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.name)
def test_is_connected(state: SessionState) -> None:
    assert state.is_connected() is PREDICATES[state][0]


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.name)
def test_is_transitioning(state: SessionState) -> None:
    assert state.is_transitioning() is PREDICATES[state][1]


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.name)
def test_is_stable(state: SessionState) -> None:
    assert state.is_stable() is PREDICATES[state][2]


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.name)
def test_can_accept_input(state: SessionState) -> None:
    assert state.can_accept_input() is PREDICATES[state][3]


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.name)
def test_stable_and_transitioning_partition_the_states(state: SessionState) -> None:
    assert state.is_stable() != state.is_transitioning()


def test_all_36_pairs_enumerated() -> None:
    assert len(ALL_PAIRS) == 36
    assert ALLOWED.issubset(ALL_PAIRS)


@pytest.mark.parametrize("pair", sorted(ALLOWED), ids=_pair_id)
def test_allowed_transition_passes(pair: tuple[SessionState, SessionState]) -> None:
    old, new = pair
    check_transition(old, new)  # does not raise
    assert new in TRANSITIONS[old]


@pytest.mark.parametrize("pair", [p for p in ALL_PAIRS if p not in ALLOWED], ids=_pair_id)
def test_other_transition_raises(pair: tuple[SessionState, SessionState]) -> None:
    old, new = pair
    with pytest.raises(IllegalTransition) as info:
        check_transition(old, new)
    assert old.name in str(info.value) and new.name in str(info.value)
    assert new not in TRANSITIONS[old]


def test_table_covers_every_state_and_matches_expected() -> None:
    assert set(TRANSITIONS) == set(S)
    assert {(old, new) for old, targets in TRANSITIONS.items() for new in targets} == ALLOWED


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.name)
def test_self_transition_refused(state: SessionState) -> None:
    with pytest.raises(IllegalTransition):
        check_transition(state, state)


def test_error_to_connecting_refused() -> None:
    with pytest.raises(IllegalTransition):
        check_transition(S.ERROR, S.CONNECTING)


def test_error_to_disconnected_allowed() -> None:
    check_transition(S.ERROR, S.DISCONNECTED)


def test_illegal_transition_is_runtime_error() -> None:
    assert issubclass(IllegalTransition, RuntimeError)
