"""Long-Term Memory end to end on both transports: an LTM character refuses a session without
``end_user_id`` with Convai's exact 400, refuses a new end user past the key's cap as a speaker limit, and
remembers what the same end user said in an earlier session; MemoryClient sees and edits those memories."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from convai_sync import ConvaiClient, ConvaiConfig, ConvaiError, ErrorCode, RetryPolicy
from convai_sync.memory import MemoryClient
from simulator import Simulator

pytestmark = pytest.mark.timeout(90)

WAIT = 20.0
LTM = "ltm-character"
MISSING = ("Missing end_user_id. end_user_id is required when the character has Long Term Memory enabled. "
           "Provide end_user_id or disable Long Term Memory.")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(characters=[{"id": LTM, "long_term_memory": True}, "plain-character"]) as server:
        yield server


@pytest.fixture(params=["websocket", "livekit"])
def transport(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def config(sim: Simulator, transport: str, **overrides: Any) -> ConvaiConfig:
    # Text only: memory is in what the character says, and over LiveKit every ask() would otherwise wait
    # for the reply's voice to play out in real time.
    values: dict[str, Any] = {"transport": transport, "character_id": LTM, "connection_timeout": 15.0,
                              "retry_policy": RetryPolicy(delays=(0.0,)), "tts_enabled": False}
    values.update(overrides)
    return sim.client_config(**values)


def test_an_ltm_character_refuses_a_session_without_end_user_id(sim: Simulator, transport: str) -> None:
    client = ConvaiClient(config(sim, transport))
    with client, pytest.raises(ConvaiError) as raised:
        client.connect(timeout=WAIT)
    error = raised.value.error
    assert error.error_code is ErrorCode.CONNECTION_BAD_REQUEST and error.http_status_code == 400
    assert error.message == f"POST /connect: HTTP 400: {MISSING}"
    with ConvaiClient(config(sim, transport, character_id="plain-character")) as plain:
        plain.connect(timeout=WAIT)  # a character without LTM needs no end user


def test_the_character_remembers_the_end_user_in_a_later_session(sim: Simulator, transport: str) -> None:
    user = f"ada-{transport}"
    with ConvaiClient(config(sim, transport, end_user_id=user)) as first:
        first.connect(timeout=WAIT)
        assert "don't remember anything" in first.ask("Do you remember me?", timeout=WAIT).text
        first.ask("Hello! My name is Ada and I like dragons.", timeout=WAIT)
        first.ask("I live in Paris.", timeout=WAIT)
    sim.wait_for_slots(0)  # the session has ended: its memories are extracted
    assert sim.memories(user, LTM) == ["Your name is Ada.", "You like dragons.", "You live in Paris."]
    # A new session (new conversation) of the same end user and character.
    with ConvaiClient(config(sim, transport, end_user_id=f"  {user} ")) as second:
        second.connect(timeout=WAIT)
        answer = second.ask("Do you remember me?", timeout=WAIT).text
    assert answer == "You told me your name is Ada and that you like dragons and that you live in Paris."
    with ConvaiClient(config(sim, transport, end_user_id="someone-else")) as stranger:
        stranger.connect(timeout=WAIT)
        assert "don't remember anything" in stranger.ask("Do you remember me?", timeout=WAIT).text


def test_memories_are_managed_through_the_memory_api(sim: Simulator, transport: str) -> None:
    user = f"bob-{transport}"
    with MemoryClient(sim.api_key, base_url=sim.url) as api:
        api.add(user, LTM, ["Your name is Bob.", "You have a pet cat."])
        with ConvaiClient(config(sim, transport, end_user_id=user)) as client:
            client.connect(timeout=WAIT)
            answer = client.ask("What do you recall about me?", timeout=WAIT).text
            assert answer == "You told me your name is Bob and that you have a pet cat."
            client.ask("My favorite color is green.", timeout=WAIT)
        sim.wait_for_slots(0)
        texts = [m.text for m in api.list(user, LTM)]
        assert texts == ["Your name is Bob.", "You have a pet cat.", "Your favorite color is green."]
        api.delete_all(user)
        assert list(api.list(user, LTM)) == []
    with ConvaiClient(config(sim, transport, end_user_id=user)) as client:
        client.connect(timeout=WAIT)
        assert "don't remember anything" in client.ask("Do you remember me?", timeout=WAIT).text


def test_a_new_end_user_past_the_cap_is_a_speaker_limit(transport: str) -> None:
    with Simulator(characters=[{"id": LTM, "long_term_memory": True}], speaker_limit=1) as sim:
        with ConvaiClient(config(sim, transport, end_user_id="first")) as client:
            client.connect(timeout=WAIT)
        client = ConvaiClient(config(sim, transport, end_user_id="second"))
        with client, pytest.raises(ConvaiError) as raised:
            client.connect(timeout=WAIT)
    error = raised.value.error
    assert error.error_code is ErrorCode.CONNECTION_CONNECT_SPEAKER_LIMIT_REACHED
    assert "LTM speaker limit reached" in error.message and error.http_status_code == 429
    assert client.diagnostics()["connect_attempts"] == 1  # not retried (Convai Unity SDK: not recoverable)
