"""Convai's official Web SDK (@convai/web-sdk 1.2.0, livekit-client 2.23.0) in headless Chromium against the
simulator with ``turn="auto"``: the whole flow with no help from the page, and 20 joins in a row.

The page is a plain client of the SDK (tests/websdk/entry.js); everything the SDK needs from the simulator
(CORS on /connect, a TURN server for its relay-only join, the SDP answer, the top-level message forms) is
the simulator's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from selenium import webdriver

from simulator import Simulator
from simulator.core.character import default_reply
from tests.websdk_browser import browser, call, chat_has, console_messages, events, next_event, page_url

__all__ = ["browser", "page_url"]  # fixtures

QUESTION = "What is your name?"
JOINS = 20
#: What livekit-client logs when setting the simulator's answer (or its next offer after it) fails.
NEGOTIATION_FAILED = "NegotiationError"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(turn="auto") as simulator:
        yield simulator


def connect(driver: webdriver.Chrome, sim: Simulator) -> bool:
    config = {"apiKey": sim.api_key, "characterId": sim.character_id, "url": sim.url}
    return bool(call(driver, "harness.connect(arguments[0])", config))


def next_value(driver: webdriver.Chrome, name: str, value: Any, after: int) -> int:
    """Index of the first ``name`` event carrying ``value`` at or after ``after``."""
    while True:
        index, seen = next_event(driver, name, after)
        if seen == value:
            return index
        after = index + 1


def test_the_web_sdk_runs_its_whole_flow(sim: Simulator, browser: webdriver.Chrome, page_url: str) -> None:
    browser.get(page_url)
    assert connect(browser, sim), events(browser, "connectFailed")
    next_event(browser, "botReady")
    _, track = next_event(browser, "trackSubscribed")
    assert track == {"kind": "audio", "participant": sim.character_id, "source": "microphone"}
    assert sim.slots_in_use() == 1

    # A typed question: the SDK shows it as the user's message and streams the character's answer.
    start = int(browser.execute_script("return harness.events.length"))
    call(browser, "harness.sendText(arguments[0])", QUESTION)
    chat = chat_has(browser, "bot-llm-text", default_reply(QUESTION, 1))
    kinds = [message["type"] for message in chat]
    assert kinds[:2] == ["user-transcription", "bot-llm-text"] and chat[0]["content"] == QUESTION, chat
    # The turn's action-response reaches the chat as an action (the simulator's turn has no actions yet).
    assert chat_has(browser, "action", "Actions:")
    # The character speaking: speakingChange true then false, then the SDK's turnEnd for conversation 1.
    spoke = next_value(browser, "speakingChange", True, start)
    stopped = next_value(browser, "speakingChange", False, spoke)
    _, turn_end = next_event(browser, "turnEnd", stopped)
    assert turn_end["sessionId"] == 1
    assert any(state["agentState"] == "speaking" for state in events(browser, "stateChange")[1:])

    # The character's voice arrived on its track: the browser's own receiver counted loud samples.
    stats = call(browser, "harness.voiceStats()")
    assert stats["totalSamplesReceived"] > 0 and stats["totalAudioEnergy"] > 0, stats

    # The fake microphone (a tone, then silence): heard, transcribed into the chat, answered.
    call(browser, "harness.microphone(true)")
    chat = chat_has(browser, "bot-llm-text", "This is turn 2")
    heard = [m["content"] for m in chat if m["type"] == "user-transcription"]
    assert heard[1].startswith("[audio "), chat
    assert sim.sessions[0].received_audio_seconds > 0

    # Disconnect frees the slot.
    assert call(browser, "harness.disconnect()") is True
    sim.wait_for_slots(0)
    assert not events(browser, "error")


def test_twenty_joins_in_a_row_all_succeed(sim: Simulator, browser: webdriver.Chrome, page_url: str) -> None:
    """livekit-client sends its offers in whatever order it likes; the first SDP exchange must never fail
    ("Transceiver not found based on m-line index" was the failure when the answer rejected video m-lines)."""
    browser.get(page_url)
    clean = 0
    for _ in range(JOINS):
        after = int(browser.execute_script("return harness.events.length"))
        assert connect(browser, sim), events(browser, "connectFailed")
        next_event(browser, "botReady", after)
        assert call(browser, "harness.disconnect()") is True
        sim.wait_for_slots(0)
        # livekit-client logs a failed exchange and recovers by renegotiating: the exchange must not fail.
        failures = [message for message in console_messages(browser) if NEGOTIATION_FAILED in message]
        clean += not failures
    assert clean == JOINS
