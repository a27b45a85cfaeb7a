"""Convai's official Web SDK (@convai/web-sdk 1.2.0, livekit-client 2.23.0) in headless Chromium against the
simulator with ``turn="auto"``: the whole flow with no help from the page (actions included), the SDK's
``/user/speaker/new`` request replayed from the page (the SDK hard-codes that route's address), and 20 joins
in a row.

The page is a plain client of the SDK (tests/websdk/entry.js); everything the SDK needs from the simulator
(CORS on /connect, a TURN server for its relay-only join, the SDP answer, the top-level message forms) is
the simulator's job. docs/guides/browser.md gives the SDK's dist lines behind the action and speaker checks.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from selenium import webdriver

from simulator import Simulator
from simulator.core.character import default_reply
from simulator.http.speakers import SPEAKER_ROUTE
from tests.websdk_browser import (
    HARNESS,
    browser,
    call,
    chat_has,
    console_messages,
    events,
    next_event,
    open_page,
    page_url,
)

__all__ = ["browser", "page_url"]  # fixtures

#: The scene a web game describes in the SDK's ``actionConfig`` (its documented shape, with the camelCase
#: ``currentAttentionObject`` the SDK forwards as is), and a question asking for two of its actions: one whose
#: target is the attention object ("that"), one aimed at a character.
ACTION_CONFIG = {
    "actions": ["Pick Up", "Wave"],
    "characters": [{"name": "Guard", "bio": "the town guard, leaning on the door frame"}],
    "objects": [{"name": "sword", "description": "a rusty sword on the wall"}],
    "currentAttentionObject": "sword",
}
QUESTION = "Pick that up, then wave at the Guard."
ACTIONS = [{"name": "Pick Up", "target": "sword"}, {"name": "Wave", "target": "Guard"}]
JOINS = 20
#: What livekit-client logs when setting the simulator's answer (or its next offer after it) fails.
NEGOTIATION_FAILED = "NegotiationError"

#: Web SDK 1.2.0's speaker request (dist/utils/speakerManagement.js, getOrCreateSpeakerId): its URL, method,
#: headers, body field and the answer field it reads, and the one call that gives it its arguments.
SPEAKER_MODULE = HARNESS / "node_modules" / "@convai" / "web-sdk" / "dist" / "utils" / "speakerManagement.js"
SPEAKER_CALL = re.compile(
    r"const url = '(?P<url>[^']+)';\s*try \{\s*const response = await fetch\(url, \{\s*"
    r"method: '(?P<method>[A-Z]+)',\s*headers: \{(?P<headers>[^}]*)\},\s*"
    r"body: JSON\.stringify\(\{\s*(?P<field>\w+): endUserId,?\s*\}\),?\s*\}\);")
#: One header of the request: ``'Name': 'literal'`` or ``'Name': apiKey`` (the key the SDK was given).
HEADER = re.compile(r"'(?P<name>[^']+)': (?:'(?P<value>[^']*)'|(?P<key>apiKey))")
SPEAKER_ANSWER = re.compile(r"const data = await response\.json\(\);\s*if \(!data\.(?P<field>\w+)\)")
RESOLVE_CALL = "await resolveSpeakerId(configWithDefaults.endUserId, configWithDefaults.apiKey)"


class SpeakerRequest(NamedTuple):
    url: str
    method: str
    #: Header name -> its literal value, or None for the API key.
    headers: dict[str, str | None]
    field: str
    answer: str


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(turn="auto") as simulator:
        yield simulator


def connect(driver: webdriver.Chrome, sim: Simulator, **config: Any) -> bool:
    """The SDK's ``connect()`` with ``config`` (its ``ConvaiConfig`` fields) added to the simulator's key, character
    and URL; True when it resolved."""
    config = {"apiKey": sim.api_key, "characterId": sim.character_id, "url": sim.url, **config}
    return bool(call(driver, "harness.connect(arguments[0])", config))


def next_value(driver: webdriver.Chrome, name: str, value: Any, after: int) -> int:
    """Index of the first ``name`` event carrying ``value`` at or after ``after``."""
    while True:
        index, seen = next_event(driver, name, after)
        if seen == value:
            return index
        after = index + 1


def test_the_web_sdk_runs_its_whole_flow(sim: Simulator, browser: webdriver.Chrome, page_url: str) -> None:
    open_page(browser, page_url)
    assert connect(browser, sim, actionConfig=ACTION_CONFIG), events(browser, "connectFailed")
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
    # The actions the question asked for, as a web game on this SDK receives them: the action-response its room
    # delivered (names and targets, in the order asked), and the SDK's own chat entry for it, which Web SDK
    # 1.2.0 renders with actions.join(", "): one "[object Object]" per action of the documented shape.
    _, response = next_event(browser, "actionResponse", start)
    assert response["actions"] == ACTIONS, response
    chat = chat_has(browser, "action", "Actions: ")
    assert [m["content"] for m in chat if m["type"] == "action"] == ["Actions: [object Object], [object Object]"]
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
    assert not events(browser, "error") and not events(browser, "unparsedData")


# ============================================================================ POST /user/speaker/new


def sdk_speaker_request() -> SpeakerRequest:
    """The speaker request Web SDK 1.2.0 builds, read from its dist code; AssertionError when the code no longer
    has the shape this test replays (a new SDK version: read it again)."""
    source = SPEAKER_MODULE.read_text(encoding="utf-8")
    fetch = SPEAKER_CALL.search(source)
    assert fetch is not None, f"{SPEAKER_MODULE}: the speaker request changed shape"
    headers = {m["name"]: m["value"] for m in HEADER.finditer(fetch["headers"])}
    assert HEADER.sub("", fetch["headers"]).strip(" ,\n") == "", fetch["headers"]
    answer = SPEAKER_ANSWER.search(source)
    assert answer is not None, f"{SPEAKER_MODULE}: the speaker answer is read differently"
    # Nothing of the SDK's config reaches the request but the end user id and the key: no base URL.
    assert RESOLVE_CALL in (SPEAKER_MODULE.parent.parent / "core" / "ConvaiClient.js").read_text(encoding="utf-8")
    return SpeakerRequest(fetch["url"], fetch["method"], headers, fetch["field"], answer["field"])


def test_the_sdks_speaker_request_is_answered_in_the_page(browser: webdriver.Chrome, page_url: str) -> None:
    """Web SDK 1.2.0 sends ``POST /user/speaker/new`` to the hard-coded ``https://api.convai.com`` (no option
    redirects it), so the page cannot point it at the simulator: the exact request it builds is replayed from
    the page's origin (a cross-origin fetch with a non-safelisted header: the browser preflights it), and the
    answer is read as the SDK reads it."""
    sdk = sdk_speaker_request()
    assert (sdk.url, sdk.method, sdk.field, sdk.answer) == (
        "https://api.convai.com/user/speaker/new", "POST", "deviceId", "speakerId")
    assert sdk.headers == {"Content-Type": "application/json", "CONVAI-API-KEY": None}
    path = urllib.parse.urlsplit(sdk.url).path
    assert path == SPEAKER_ROUTE
    open_page(browser, page_url)
    with Simulator(speaker_limit=1) as sim:
        def ask(device: str, **extra: str) -> dict[str, Any]:
            headers = {name: sim.api_key if value is None else value for name, value in sdk.headers.items()}
            init = {"method": sdk.method, "headers": {**headers, **extra}, "body": json.dumps({sdk.field: device})}
            answer = call(browser, "harness.request(arguments[0], arguments[1])", sim.url + path, init)
            assert isinstance(answer, dict), answer
            return answer

        first = ask("player-1")
        assert (first["ok"], first["status"]) == (True, 200), first
        speaker_id = json.loads(first["text"])[sdk.answer]
        assert isinstance(speaker_id, str) and speaker_id
        assert json.loads(ask("player-1")["text"])[sdk.answer] == speaker_id  # the same device: the same id
        # A second speaker is past the limit: an answer the SDK reads (its error names status and text).
        over = ask("player-2")
        assert (over["ok"], over["status"]) == (False, 429) and "Speaker limit reached" in over["text"], over
        # The preflight decides: a header the simulator does not allow makes the browser refuse the request.
        refused = ask("player-1", **{"X-Not-Allowed": "1"})
        assert "failed" in refused, refused


def test_twenty_joins_in_a_row_all_succeed(sim: Simulator, browser: webdriver.Chrome, page_url: str) -> None:
    """livekit-client sends its offers in whatever order it likes; the first SDP exchange must never fail
    ("Transceiver not found based on m-line index" was the failure when the answer rejected video m-lines)."""
    open_page(browser, page_url)
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
