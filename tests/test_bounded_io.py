"""Every blocking call is bounded against misbehaving peers (silent, slow, stalled, garbage).

Each test drives the real client (requests + the WebSocket transport) against a raw loopback
:class:`~tests.support.peers.Peer` that misbehaves in one way, and checks that ``close()`` /
``disconnect()`` return before a generous deadline with no ``convai-*`` thread left, and that
each blocking call raises within its own timeout plus a small margin. The bounds asserted here
are generous on purpose (the promise is ``close_timeout`` = 1 s); precise timings are in bench/.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from convai_sync import (
    BotText,
    ConvaiClient,
    ConvaiConfig,
    ConvaiError,
    ConvaiTimeoutError,
    EventDeliveryPolicy,
    InvalidStateError,
    Reconnecting,
    ReconnectPolicy,
    RetryPolicy,
    SendQueueFullError,
    SessionError,
    SessionState,
)
from convai_sync.testing import Recorder
from tests.support.peers import Peer, text_frame

pytestmark = pytest.mark.timeout(30)

#: close()/disconnect() promise close_timeout (1 s); this leaves room for a loaded CI machine.
CLOSE_BOUND = 2.0
#: Slack on top of a call's own timeout.
MARGIN = 0.75
NO_RETRY = RetryPolicy(max_attempts=1)


def config_for(peer: Peer, **overrides: Any) -> ConvaiConfig:
    values: dict[str, Any] = {"api_key": "k", "character_id": "c", "url": peer.url, "retry_policy": NO_RETRY,
                              "connection_timeout": 10.0, "reconnect_policy": ReconnectPolicy(max_attempts=0)}
    values.update(overrides)
    return ConvaiConfig(**values)


def convai_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("convai-") and t.is_alive()]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


def run_in_thread(fn: Callable[[], Any]) -> Future[Any]:
    fut: Future[Any] = Future()

    def body() -> None:
        try:
            fut.set_result(fn())
        except BaseException as exc:  # handed to the test thread
            fut.set_exception(exc)

    threading.Thread(target=body, name="test-caller", daemon=True).start()
    return fut


def assert_closes_in_bound(client: ConvaiClient) -> None:
    elapsed, _ = timed(client.close)
    assert elapsed < CLOSE_BOUND, f"close() took {elapsed:.2f} s"
    assert convai_threads() == [], "SDK threads outlived close()"


def connected(peer: Peer, **overrides: Any) -> ConvaiClient:
    client = ConvaiClient(config_for(peer, **overrides))
    client.connect(timeout=5)
    assert client.state is SessionState.CONNECTED
    return client


def stuck_connecting(peer_factory: Callable[..., Peer], step: str) -> tuple[ConvaiClient, Future[Any]]:
    """A client whose ``connect()`` (on a worker thread) is held at ``step``: "connect-drip" etc."""
    what, how = step.split("-")
    peer = peer_factory(**{what: how})
    client = ConvaiClient(config_for(peer))
    outcome = run_in_thread(lambda: client.connect(timeout=20))
    wanted = "POST /connect" if what == "connect" else "GET /chat"
    peer.seen.wait(lambda: any(r.startswith(wanted) for r in peer.seen.requests))
    return client, outcome


# ============================================================================ close() in every state


@pytest.mark.parametrize("step", ["connect-drip", "connect-hang", "handshake-drip", "handshake-hang"])
def test_close_while_connecting_cancels_the_blocking_step(peer_factory: Callable[..., Peer], step: str) -> None:
    client, outcome = stuck_connecting(peer_factory, step)
    assert client.state is SessionState.CONNECTING
    assert_closes_in_bound(client)
    with pytest.raises(ConvaiError) as info:
        outcome.result(CLOSE_BOUND)
    assert info.value.error_code == "session.cancelled"


@pytest.mark.parametrize("step", ["connect-drip", "handshake-drip", "handshake-hang"])
def test_disconnect_while_connecting_returns_in_bound(peer_factory: Callable[..., Peer], step: str) -> None:
    client, outcome = stuck_connecting(peer_factory, step)
    elapsed, _ = timed(client.disconnect)
    assert elapsed < CLOSE_BOUND
    assert client.state is SessionState.DISCONNECTED
    with pytest.raises(ConvaiError):
        outcome.result(CLOSE_BOUND)
    assert [t for t in convai_threads() if t.startswith(("convai-connect", "convai-transport"))] == []
    assert_closes_in_bound(client)


@pytest.mark.parametrize("after", ["silent", "ignore_close", "stall"])
def test_close_when_connected_to_a_misbehaving_peer(peer_factory: Callable[..., Peer], after: str) -> None:
    peer = peer_factory(after_ready=after)
    client = connected(peer)
    assert_closes_in_bound(client)
    if after != "stall":
        peer.seen.wait(lambda: "<close>" in peer.seen.frames)  # the close frame was still sent


@pytest.mark.parametrize("after", ["silent", "ignore_close"])
def test_disconnect_when_connected_to_a_misbehaving_peer(peer_factory: Callable[..., Peer], after: str) -> None:
    peer = peer_factory(after_ready=after)
    client = connected(peer)
    elapsed, _ = timed(client.disconnect)
    assert elapsed < CLOSE_BOUND
    assert client.state is SessionState.DISCONNECTED
    assert [t for t in convai_threads() if t.startswith("convai-transport")] == []
    assert_closes_in_bound(client)


@pytest.mark.parametrize("how", ["slow", "hang"])
def test_slow_disconnect_call_does_not_hold_close(peer_factory: Callable[..., Peer], how: str) -> None:
    peer = peer_factory(disconnect=how, slow_seconds=5.0)
    client = connected(peer)
    elapsed, _ = timed(client.disconnect)
    assert elapsed < CLOSE_BOUND, f"disconnect() waited {elapsed:.2f} s for POST /disconnect"
    # The request itself reached the server (which frees the slot on receipt).
    peer.seen.wait(lambda: peer.seen.disconnects >= 1)
    assert_closes_in_bound(client)


def test_close_during_reconnect_attempt(peer_factory: Callable[..., Peer]) -> None:
    peer = peer_factory()
    client = connected(peer, reconnect_policy=ReconnectPolicy(max_attempts=3, delays=(0.0,)))
    reconnecting: Recorder[Reconnecting] = Recorder()
    client.events.on_reconnecting.subscribe(reconnecting, EventDeliveryPolicy.IMMEDIATE)
    peer.mode.connect = "hang"  # every reconnect attempt's POST /connect never answers
    peer.drop_websockets()
    reconnecting.wait(1)
    peer.seen.wait(lambda: sum(r.startswith("POST /connect") for r in peer.seen.requests) >= 2)
    assert client.state is SessionState.RECONNECTING
    assert_closes_in_bound(client)


def test_close_during_retry_backoff(peer_factory: Callable[..., Peer]) -> None:
    peer = peer_factory(connect="error503")
    client = ConvaiClient(config_for(peer, retry_policy=RetryPolicy(max_attempts=3, delays=(0.0, 60.0))))
    outcome = run_in_thread(lambda: client.connect(timeout=30))
    peer.seen.wait(lambda: any(r.startswith("POST /connect") for r in peer.seen.requests))
    assert client.state is SessionState.CONNECTING
    assert_closes_in_bound(client)
    with pytest.raises(ConvaiError) as info:
        outcome.result(CLOSE_BOUND)
    assert info.value.error_code == "session.cancelled"


@pytest.mark.parametrize("policy", list(EventDeliveryPolicy))
def test_close_from_inside_a_handler(peer_factory: Callable[..., Peer], policy: EventDeliveryPolicy) -> None:
    peer = peer_factory(after_ready="ignore_close")
    client = connected(peer)
    returned = threading.Event()
    durations: list[float] = []

    def handler(event: BotText) -> None:
        elapsed, _ = timed(client.close)
        durations.append(elapsed)
        returned.set()

    client.events.raw.subscribe(BotText, handler, policy)
    start = time.monotonic()
    client.send_text("close me")
    if policy is EventDeliveryPolicy.MAIN_THREAD:
        while not returned.is_set() and time.monotonic() - start < CLOSE_BOUND:
            client.pump()
            returned.wait(0.01)
    assert returned.wait(CLOSE_BOUND)
    assert durations[0] < CLOSE_BOUND
    deadline = start + 2 * CLOSE_BOUND
    for thread in [t for t in threading.enumerate() if t.name.startswith("convai-")]:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert convai_threads() == []


# ============================================================================ timeouts from the call


def test_connect_timeout_covers_a_drip_fed_connect_answer(peer_factory: Callable[..., Peer]) -> None:
    peer = peer_factory(connect="drip")
    client = ConvaiClient(config_for(peer))
    start = time.monotonic()
    with pytest.raises(ConvaiTimeoutError):
        client.connect(timeout=1.0)
    assert time.monotonic() - start < 1.0 + MARGIN
    assert_closes_in_bound(client)


def test_connection_timeout_bounds_a_drip_fed_handshake(peer_factory: Callable[..., Peer]) -> None:
    peer = peer_factory(handshake="drip")
    client = ConvaiClient(config_for(peer, connection_timeout=1.0))
    start = time.monotonic()
    with pytest.raises(ConvaiError) as info:
        client.connect(timeout=20)
    assert time.monotonic() - start < 1.0 + MARGIN
    assert info.value.error_code == "connection.timeout"
    assert_closes_in_bound(client)


def test_missing_bot_ready_fails_each_attempt_in_time_without_leaking_readers(
        peer_factory: Callable[..., Peer]) -> None:
    peer = peer_factory(bot_ready=False)
    attempts = 3
    client = ConvaiClient(config_for(peer, connection_timeout=0.5,
                                     retry_policy=RetryPolicy(max_attempts=attempts, delays=(0.0,))))
    start = time.monotonic()
    with pytest.raises(ConvaiError) as info:
        client.connect(timeout=20)
    elapsed = time.monotonic() - start
    assert info.value.error_code == "connection.timeout"
    # Each attempt costs its connection_timeout plus at most the close grace, not a 5 s close.
    assert elapsed < attempts * (0.5 + 0.25) + MARGIN, f"{attempts} attempts took {elapsed:.2f} s"
    assert [t for t in convai_threads() if t.startswith("convai-transport")] == []
    assert_closes_in_bound(client)


@pytest.mark.parametrize("call", ["ask", "send_wait", "stream"])
def test_blocking_calls_raise_within_their_timeout_on_a_silent_peer(
        peer_factory: Callable[..., Peer], call: str) -> None:
    peer = peer_factory(after_ready="silent")
    client = connected(peer)
    start = time.monotonic()
    with pytest.raises(ConvaiTimeoutError):
        if call == "ask":
            client.ask("hello?", timeout=1.0)
        elif call == "send_wait":
            client.send_text("hello?", wait=True, timeout=1.0)
        else:
            for _ in client.stream("hello?", timeout=1.0):
                pass
    assert time.monotonic() - start < 1.0 + MARGIN
    assert_closes_in_bound(client)


def test_sends_to_a_stalled_peer_never_block_and_fail_fast_when_the_queue_is_full(
        peer_factory: Callable[..., Peer]) -> None:
    peer = peer_factory(after_ready="stall")
    client = connected(peer, send_queue_bytes=64 * 1024)
    chunk = "x" * 16_000
    slowest = 0.0
    full = None
    for _ in range(2000):  # far more than the kernel buffers and the queue hold
        started = time.monotonic()
        try:
            client.send_text(chunk)
        except SendQueueFullError as exc:
            full = exc
            break
        finally:
            slowest = max(slowest, time.monotonic() - started)
    assert full is not None, "the send queue never filled"
    assert isinstance(full, InvalidStateError) and "not sent" in str(full)
    assert slowest < 0.5, f"a fire-and-forget send blocked {slowest:.2f} s"
    # A blocking call measures its timeout from the call, waiting to send included.
    start = time.monotonic()
    with pytest.raises((ConvaiTimeoutError, SendQueueFullError)):
        client.ask("are you there?", timeout=1.0)
    assert time.monotonic() - start < 1.0 + MARGIN
    assert_closes_in_bound(client)


# ============================================================================ bad frames


def test_one_non_utf8_text_frame_is_a_parse_error_and_the_session_goes_on(
        peer_factory: Callable[..., Peer]) -> None:
    peer = peer_factory()
    client = connected(peer)
    errors: Recorder[SessionError] = Recorder()
    client.events.on_session_error.subscribe(errors, EventDeliveryPolicy.IMMEDIATE)
    peer.send_raw(text_frame(b'{"type":"bot-llm-text","data":{"text":"\xff\xfe"}}'))
    assert errors.wait(1)[0].error_code == "protocol.parse_failed"
    assert client.state is SessionState.CONNECTED
    assert client.ask("still there?", timeout=5).text == "reply to still there?"
    assert client.diagnostics()["reconnects"] == 0
    assert_closes_in_bound(client)


def test_an_oversized_frame_is_refused_from_its_header_and_the_session_goes_on(
        peer_factory: Callable[..., Peer]) -> None:
    peer = peer_factory()
    client = connected(peer, max_message_bytes=64 * 1024)
    errors: Recorder[SessionError] = Recorder()
    client.events.on_session_error.subscribe(errors, EventDeliveryPolicy.IMMEDIATE)
    big = b'{"type":"bot-llm-text","data":{"text":"' + b"a" * (4 * 1024 * 1024) + b'"}}'
    peer.send_raw(text_frame(big))
    error = errors.wait(1)[0]
    assert error.error_code == "protocol.message_invalid"
    assert "exceeds the limit" in error.message
    assert client.ask("still there?", timeout=5).text == "reply to still there?"
    assert_closes_in_bound(client)


# ============================================================================ keepalive


def test_keepalive_drops_a_silent_link_and_reconnects(peer_factory: Callable[..., Peer]) -> None:
    peer = peer_factory(after_ready="silent")
    client = connected(peer, keepalive_interval=0.2, keepalive_timeout=0.3,
                       reconnect_policy=ReconnectPolicy(max_attempts=1, delays=(0.0,)))
    reconnecting: Recorder[Reconnecting] = Recorder()
    client.events.on_reconnecting.subscribe(reconnecting, EventDeliveryPolicy.IMMEDIATE)
    event = reconnecting.wait(1, timeout=5)[0]
    assert event.reason.name == "UNKNOWN_REASON"
    assert client.diagnostics()["keepalive_timeouts"] == 1
    assert_closes_in_bound(client)


def test_keepalive_keeps_a_healthy_idle_link(peer_factory: Callable[..., Peer]) -> None:
    peer = peer_factory()
    client = connected(peer, keepalive_interval=0.1, keepalive_timeout=0.2)
    # Several keepalive rounds, each ping answered by a pong: the link is never dropped.
    peer.seen.wait(lambda: peer.seen.frames.count("<ping>") >= 4)
    assert client.state is SessionState.CONNECTED
    assert client.diagnostics()["keepalive_timeouts"] == 0
    assert_closes_in_bound(client)
