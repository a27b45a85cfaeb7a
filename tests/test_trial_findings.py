"""Regression tests for what a new user and an adversarial reviewer found (SDK side).

Each test names the finding it covers; each failed on the code before the fix.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from convai_sync import (
    BotText,
    ConvaiClient,
    ConvaiError,
    ConvaiTimeoutError,
    Disconnected,
    DisconnectReason,
    EventDeliveryPolicy,
    InvalidStateError,
    ReconnectPolicy,
    RetryPolicy,
    ServerMessage,
    SessionState,
    SessionStateChanged,
)
from convai_sync.testing import Recorder
from simulator import Simulator
from tests.helpers_memory import (
    WAIT,
    Harness,
    ack,
    assert_no_convai_threads,
    make_config,
    reply_frames,
    run_async,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness(make_config(close_timeout=0.5, http_timeout=0.5))
    try:
        yield h
    finally:
        h.close()
    assert_no_convai_threads()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as server:
        yield server


def _echo(text: str, message_id: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "final-user-transcription", "text": text}
    if message_id is not None:
        data["message_id"] = message_id
    return {"label": "rtvi-ai", "type": "server-message", "data": data}


def _sent_ids(h: Harness) -> list[tuple[str, str]]:
    out = []
    for raw in h.server.sent:
        msg = json.loads(raw)
        if msg.get("type") == "user_text_message":
            out.append((msg["data"]["text"], msg["data"]["message_id"]))
    return out


# ============================================================================ ask() gets its own reply


def test_ask_after_an_abandoned_ask_gets_its_own_reply(sim: Simulator) -> None:
    """Finding: after ask("FIRST", timeout=0) timed out, ask("SECOND") returned FIRST's reply."""
    with ConvaiClient(sim.client_config()) as client:
        client.connect(timeout=10)
        with pytest.raises(ConvaiTimeoutError):
            client.ask("FIRST", timeout=0)
        reply = client.ask("SECOND", timeout=10)
        assert "SECOND" in reply.text and "FIRST" not in reply.text


def test_ask_after_send_text_gets_its_own_reply(sim: Simulator) -> None:
    """Finding: after send_text("fire and forget"), ask("FOURTH") returned the other text's reply."""
    with ConvaiClient(sim.client_config()) as client:
        client.connect(timeout=10)
        texts: Recorder[BotText] = Recorder()
        client.events.on_bot_text.subscribe(texts, EventDeliveryPolicy.IMMEDIATE)
        turns: Recorder[ServerMessage] = Recorder(lambda e: e.type == "bot-turn-completed")
        client.events.on_message.subscribe(turns, EventDeliveryPolicy.IMMEDIATE)
        client.send_text("fire and forget")
        reply = client.ask("FOURTH", timeout=10)
        assert "FOURTH" in reply.text and "fire and forget" not in reply.text
        # The fire-and-forget reply reached the event channel only (both turns published by now:
        # ask() wakes on the reader thread, which may be ahead of the publishing session thread).
        turns.wait(2)
        assert "fire and forget" in "".join(t.text for t in texts.events)


def test_unknown_echo_id_binds_nothing(harness: Harness) -> None:
    """Finding: an echo whose message_id matched no ask bound nothing, and the next
    bot-llm-started went to the oldest waiting ask."""
    h = harness
    h.connect()
    asked = run_async(lambda: h.client.ask("mine", timeout=WAIT), "test-ask")
    h.server.wait_sent("user_text_message")
    (_, mine), = _sent_ids(h)
    # A voice utterance of another participant: an echo with an id nobody sent, then its reply.
    h.server.push(_echo("someone else", "not-a-known-id"))
    for frame in reply_frames(["not yours"])[0:]:
        h.server.push(frame)
    assert not asked.done()
    for frame in reply_frames(["yours"], message_id=mine):
        h.server.push(frame)
    assert asked.result(WAIT).text == "yours"


def test_without_echo_replies_follow_send_order_and_fire_and_forget_keeps_its_reply(harness: Harness) -> None:
    """Where the server sends no echo, replies bind in send order: send_text's reply is not an ask's."""
    h = harness
    h.connect()
    h.client.send_text("fire and forget")
    asked = run_async(lambda: h.client.ask("FOURTH", timeout=WAIT), "test-ask")
    h.server.wait_sent("user_text_message")
    while len(_sent_ids(h)) < 2:
        h.server.wait_sent("user_text_message", timeout=WAIT)
    for frame in reply_frames(["reply to fire and forget"]) + reply_frames(["reply to FOURTH"]):
        h.server.push(frame)
    assert asked.result(WAIT).text == "reply to FOURTH"


def test_error_ack_fails_the_waiting_ask_at_once(harness: Harness) -> None:
    h = harness
    h.connect()
    asked = run_async(lambda: h.client.ask("over quota", timeout=WAIT), "test-ask")
    h.server.wait_sent("user_text_message")
    h.server.push(ack("user_text_message", "error", "Usage limit exceeded"))
    with pytest.raises(ConvaiError) as info:
        asked.result(WAIT)
    assert info.value.error_code == "server.usage_limit_reached"


# ============================================================================ stream()


def test_stream_yields_the_chunks_of_its_own_reply_as_they_arrive(sim: Simulator) -> None:
    with ConvaiClient(sim.client_config()) as client:
        client.connect(timeout=10)
        client.send_text("not this one")
        stream = client.stream("Tell me a story", timeout=10)
        chunks = [chunk for chunk in stream]
        assert len(chunks) > 1 and all(isinstance(c, BotText) for c in chunks)
        assert stream.reply is not None and stream.reply.text == "".join(c.text for c in chunks)
        assert "Tell me a story" in stream.reply.text and "not this one" not in stream.reply.text


def test_stream_times_out_like_ask(harness: Harness) -> None:
    h = harness
    h.connect()
    stream = h.client.stream("silence", timeout=0.2)
    start = time.monotonic()
    with pytest.raises(ConvaiTimeoutError):
        next(stream)
    assert time.monotonic() - start < 2.0


# ============================================================================ no public call left waiting


def test_an_internal_error_on_the_session_thread_fails_connect(harness: Harness,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding: an AttributeError on the SDK thread left connect() waiting forever."""
    h = harness

    def broken(self: Any, phase: str) -> None:
        raise AttributeError("'NoneType' object has no attribute 'delay_before'")

    monkeypatch.setattr(type(h.client._session), "_begin", broken)
    start = time.monotonic()
    with pytest.raises(ConvaiError) as info:
        h.client.connect(timeout=WAIT)
    assert time.monotonic() - start < WAIT / 2
    assert info.value.error_code == "connection.failed"
    assert "internal error" in str(info.value)


# ============================================================================ the real cause survives


def test_reconnects_exhausted_keep_the_real_cause_for_on_disconnected() -> None:
    """Finding: after the reconnect attempts ran out, on_disconnected (at close) said
    CLIENT_INITIATED with no error."""
    with Simulator() as sim:
        policy = ReconnectPolicy(max_attempts=2, delays=(0.0,), server_shutdown_delay=0.0)
        client = ConvaiClient(sim.client_config(reconnect_policy=policy))
        gone: Recorder[Disconnected] = Recorder()
        client.events.on_disconnected.subscribe(gone, EventDeliveryPolicy.IMMEDIATE)
        errored: Recorder[SessionStateChanged] = Recorder(lambda e: e.new_state is SessionState.ERROR)
        client.events.on_session_state_changed.subscribe(errored, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=10)
        sim.inject("connection.connect_unhandled_server_exception", times=5)
        sim.inject(DisconnectReason.SERVER_SHUTDOWN)
        errored.wait(1, timeout=20)
        assert client.state is SessionState.ERROR
        assert client.last_disconnect_reason is DisconnectReason.SERVER_SHUTDOWN
        client.close()
        event = gone.wait(1)[0]
        assert event.reason is DisconnectReason.SERVER_SHUTDOWN
        assert event.error is not None and "reconnect failed after 2 attempt(s)" in event.error.message


# ============================================================================ messages that help


def test_send_before_connect_says_to_call_connect() -> None:
    client = ConvaiClient(make_config())
    with pytest.raises(InvalidStateError) as info:
        client.ask("hi")
    assert "call connect() first" in str(info.value)
    assert "wait for CONNECTED" not in str(info.value)
    client.close()


def test_send_in_error_says_how_to_reset() -> None:
    with Simulator(realtime_allowed=False) as sim, ConvaiClient(sim.client_config()) as client:
        with pytest.raises(ConvaiError):
            client.connect(timeout=10)
        assert client.state is SessionState.ERROR
        with pytest.raises(InvalidStateError) as info:
            client.send_text("hi")
        assert "call disconnect() to reset it, then connect()" in str(info.value)


@pytest.mark.parametrize("value", [-1, -0.001, float("nan")])
def test_negative_or_nan_timeouts_are_refused(value: float) -> None:
    client = ConvaiClient(make_config())
    for call in (lambda: client.connect(timeout=value), lambda: client.ask("x", timeout=value),
                 lambda: client.wait_for(Disconnected, timeout=value)):
        with pytest.raises(ValueError, match="timeout"):
            call()
    client.close()


def test_unreachable_url_names_the_host_the_cause_the_attempts_and_a_hint(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_config(url=f"http://127.0.0.1:{port}", retry_policy=RetryPolicy(max_attempts=3, delays=(0.0,)))
    caplog.set_level(logging.INFO, logger="convai_sync")
    with ConvaiClient(config) as client, pytest.raises(ConvaiError) as info:
        client.connect(timeout=10)
    message = str(info.value)
    assert info.value.error_code == "connection.network_error"
    assert f"127.0.0.1:{port}" in message
    assert "connection refused" in message
    assert "after 3 attempts" in message
    assert "is the service or simulator running" in message
    attempts = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert [m for m in attempts if m.startswith("connect attempt") and m.endswith("/connect")] == [
        f"connect attempt {n}: POST http://127.0.0.1:{port}/connect" for n in (1, 2, 3)]
    assert len([m for m in attempts if "failed: connection.network_error" in m]) == 3
