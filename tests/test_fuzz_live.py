"""Fuzzing a live session: a raw loopback server sends random and mutated frames between ``ask()`` calls.

Whatever arrives (bad JSON, wrong types, huge and non-finite numbers, deep nesting, invalid UTF-8,
binary frames, unknown types, oversized messages), the session reports at most ``protocol.*`` errors,
never crashes an SDK thread (no internal error, no handler error), never hangs, stays CONNECTED, and
keeps answering ``ask()``. Framing violations (a masked server frame, reserved bits, an unknown opcode,
a fragmented control frame) are a different matter: the connection cannot be trusted after one, so the
session drops it and reconnects, then answers again.

The server is ``tests/support/peers.py``'s raw peer (it acks and answers text, and shares no code with
the SDK). Garbage is sent only while no reply is in flight, so its writes never interleave the peer's.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convai_sync import (
    BotTurnCompleted,
    ConvaiClient,
    ConvaiConfig,
    EventDeliveryPolicy,
    SessionError,
    SessionState,
)
from tests.support.peers import Mode, Peer, text_frame

GENEROUS = 10.0
TURN_DONE = threading.Event()
MAX_MESSAGE = 64 * 1024  # the client's limit here, so an oversized frame is cheap to send
FUZZ = settings(max_examples=80, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
#: Types whose mutated copies are sent. Not ``error`` / ``usage-limit-reached``: well-formed, those end
#: the session on purpose (that is the server speaking, not garbage).
TYPES = ("bot-llm-text", "bot-llm-started", "bot-llm-stopped", "server-response", "bot-ready",
         "user-transcription", "bot-tts-text", "metrics", "participant-joined", "room-participant-left",
         "room-ownership-rebind-state-changed", "no-such-type", "")
INNER = ("bot-emotion", "final-user-transcription", "bot-turn-completed", "action-response",
         "interaction-created", "user-idle-warning", "bot-started-speaking", "moderation-response", "??")


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Peer, ConvaiClient, list[SessionError]]]:
    with Peer(Mode()) as peer:
        config = ConvaiConfig(api_key="sim-api-key", character_id="sim-character", url=peer.url,
                              keepalive_interval=None, max_message_bytes=MAX_MESSAGE)
        errors: list[SessionError] = []
        with ConvaiClient(config) as client:
            client.events.on_session_error.subscribe(errors.append, EventDeliveryPolicy.IMMEDIATE)
            client.events.raw.subscribe(BotTurnCompleted, lambda _e: TURN_DONE.set(), EventDeliveryPolicy.IMMEDIATE)
            client.connect(timeout=GENEROUS)
            yield peer, client, errors


# ---- strategies ---------------------------------------------------------------------------------

numbers = st.one_of(st.integers(min_value=-(10**40), max_value=10**40), st.floats(allow_nan=True,
                                                                                  allow_infinity=True))
leaves = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=40))
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
FIELDS = ("text", "type", "event_type", "status", "message", "remaining_seconds", "scale", "emotion",
          "participant_id", "participant_type", "outcome", "message_id", "fatal", "was_interrupted")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A plausible RTVI frame with random fields of random types (NaN/Infinity allowed)."""
    msg_type = draw(st.sampled_from(TYPES + ("server-message",)))
    data: dict[str, Any] = draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=5))
    if msg_type == "server-message":
        data["type"] = draw(st.sampled_from(INNER) | values)
    frame: dict[str, Any] = {"label": draw(st.sampled_from(["rtvi-ai", "other"]) | values), "type": msg_type,
                             "data": draw(st.just(data) | values)}
    if msg_type == "server-response":
        frame.update(draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=3)))
    return json.dumps(frame, allow_nan=True).encode()


def _nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


garbage = st.one_of(
    mutated(),
    mutated().map(lambda b: b[: len(b) // 2]),  # truncated JSON
    st.text(max_size=200).map(str.encode),
    st.binary(min_size=1, max_size=200),  # mostly invalid UTF-8 in a text frame
    st.integers(min_value=40, max_value=20_000).map(_nested),
    st.sampled_from([b'{"type":"bot-llm-text","data":{"text":"x","n":1e400}}', b"NaN", b"[" * 70_000,
                     b'{"type":"server-message","data":{"type":"user-idle-warning","remaining_seconds":1e12}}',
                     b'{"type":"server-message","data":{"type":"bot-emotion","scale":-Infinity}}',
                     b"\xed\xa0\x80", b"\xff\xfe", b'{"type":"bot-llm-text","data":{"text":"\xc3"}}']),
)


def _ask_still_works(peer: Peer, client: ConvaiClient, errors: list[SessionError]) -> None:
    TURN_DONE.clear()
    reply = client.ask("ping", timeout=GENEROUS)
    assert reply.text == "reply to ping"
    # ask() returns when the reader completes the reply; the session thread publishes events in
    # frame order, so once the turn's end is published, so is anything the garbage caused.
    assert TURN_DONE.wait(GENEROUS)
    assert client.state is SessionState.CONNECTED
    assert all(e.error_code.value.startswith("protocol.") for e in errors), [e.error_code for e in errors]
    diagnostics = client.diagnostics()
    assert diagnostics["internal_errors"] == 0
    assert diagnostics["events"]["handler_errors"] == 0


# ---- tests --------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
@FUZZ
@given(payload=garbage, binary=st.booleans())
def test_random_and_mutated_frames_leave_the_session_answering(
        live: tuple[Peer, ConvaiClient, list[SessionError]], payload: bytes, binary: bool) -> None:
    peer, client, errors = live
    peer.send_raw(text_frame(payload, 0x2 if binary else 0x1))
    _ask_still_works(peer, client, errors)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [MAX_MESSAGE + 1, 4 * MAX_MESSAGE])
def test_oversized_frames_are_refused_and_the_session_goes_on(
        live: tuple[Peer, ConvaiClient, list[SessionError]], size: int) -> None:
    peer, client, errors = live
    count = len(errors)
    peer.send_raw(text_frame(b'{"type":"bot-llm-text","data":{"text":"' + b"x" * size + b'"}}'))
    _ask_still_works(peer, client, errors)
    assert [e.error_code.value for e in errors[count:]] == ["protocol.message_invalid"]


def _header(first: int, second: int) -> bytes:
    return struct.pack("!BB", first, second)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("frame", [
    _header(0x81, 0x80 | 2) + b"\0\0\0\0" + b"{}",  # masked server frame
    _header(0xC1, 2) + b"{}",  # RSV1 without an extension
    _header(0x83, 2) + b"{}",  # reserved opcode 0x3
    _header(0x09, 0),  # fragmented ping
    _header(0x80, 2) + b"{}",  # continuation with no message
], ids=["masked", "rsv1", "opcode3", "fragmented-ping", "stray-continuation"])
def test_framing_violations_drop_the_link_and_the_session_reconnects(frame: bytes) -> None:
    with Peer(Mode()) as peer:
        config = ConvaiConfig(api_key="sim-api-key", character_id="sim-character", url=peer.url,
                              keepalive_interval=None)
        with ConvaiClient(config) as client:
            reconnected = threading.Event()
            client.events.on_reconnected.subscribe(lambda _e: reconnected.set(), EventDeliveryPolicy.IMMEDIATE)
            client.connect(timeout=GENEROUS)
            peer.send_raw(frame)
            assert reconnected.wait(GENEROUS), client.diagnostics()
            assert client.ask("again", timeout=GENEROUS).text == "reply to again"
            assert client.diagnostics()["internal_errors"] == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("payload", "code"), [
    (b"\xff\xfe not UTF-8", "protocol.parse_failed"),
    (b'{"type":"bot-llm-text","data":{"text":"x","n":NaN}}', "protocol.parse_failed"),
    (b"[" * 1000 + b"]" * 1000, "protocol.message_invalid"),
    (b'{"type":"bot-llm-text","data":[1,2]}', "protocol.message_invalid"),
])
def test_known_bad_frames_report_their_protocol_code(
        live: tuple[Peer, ConvaiClient, list[SessionError]], payload: bytes, code: str) -> None:
    """The fuzz above can fail: these frames do reach the decoder and are reported, exactly once."""
    peer, client, errors = live
    count = len(errors)
    peer.send_raw(text_frame(payload))
    _ask_still_works(peer, client, errors)
    assert [e.error_code.value for e in errors[count:]] == [code]
