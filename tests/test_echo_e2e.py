"""Echo cancellation end to end, on both transports: the character's voice plays into a simulated
room (tests/support/echo_room.py: an echo path with delay and attenuation) that the microphone
hears, mixed with the user's voice. The real simulator's voice activity detection decides: with
processing on it hears only the user (no self-barge-in); with it off, the character's own voice
interrupts it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from simulator import Simulator
from tests.support import echo_room

pytestmark = pytest.mark.timeout(90)

TRANSPORTS = ["websocket", "livekit"]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with echo_room.simulator() as server:
        yield server


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_with_processing_the_character_hears_only_the_user(sim: Simulator, transport: str) -> None:
    trial = echo_room.converse(sim, transport, True, listen=4.0, user_speaks=True)
    assert trial.echo_started == 0 and trial.self_interruptions == 0, trial
    assert trial.replies[0] is False  # the first reply played to its end
    assert trial.user_started == 1  # the user, heard once
    [heard] = trial.heard
    seconds = float(re.fullmatch(r"\[audio (\d+\.\d+) s\]", heard).group(1))  # type: ignore[union-attr]
    assert seconds == pytest.approx(echo_room.USER_SECONDS, abs=0.25)  # the user's utterance, not the echo
    assert trial.replies[-1] is False  # and the answer to the user played to its end too


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_without_processing_the_character_interrupts_itself(sim: Simulator, transport: str) -> None:
    trial = echo_room.converse(sim, transport, False, listen=6.0, user_speaks=False,
                               stop_at_self_interruption=True)
    assert trial.echo_started >= 1  # its own voice, heard as the user's
    assert trial.self_interruptions >= 1, trial
