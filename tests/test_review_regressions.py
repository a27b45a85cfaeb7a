"""Regression tests for the review findings fixed in "Fix review findings: ..." (one test or more each).

Each test fails on the code before that commit and passes after it. Numbers follow the review:

(1) early transport close is replayed     (2) reconnect() fails pending asks/acks
(3) ask() never gets another turn's text   (4) connect() racing close() does not hang
(6) wait=True acks match wire order        (8) disconnect() after close() returns at once
(9) hub: drops after close are logged, wait_for is woken
(10) no API key in network errors; /connect does not follow redirects
(11) a retried drop frees the simulator slot before reconnecting
(12) the session inbox is bounded

Not covered here:
(5) the stalled-send-safe WebSocket close needs a TCP peer that stops reading until the kernel
    buffers fill (a real socket stall); there is no deterministic in-memory equivalent.
(7) is a known limitation the lead chose to document rather than fix, so there is nothing to pin.

No sleeps: every wait is on an Event/Future/Recorder/Condition with a timeout.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import responses

import convai_sync.listener as listener_module
from convai_sync import (
    BotReady,
    BotText,
    ConvaiClient,
    ConvaiConfig,
    ConvaiError,
    ConvaiTimeoutError,
    Disconnected,
    DisconnectReason,
    ErrorCode,
    EventDeliveryPolicy,
    EventHub,
    InvalidStateError,
    Reconnected,
    Reconnecting,
    ReconnectPolicy,
    SessionState,
    SessionStateChanged,
)
from convai_sync import events as ev
from convai_sync.connect import ConnectApi, ConnectFailed
from convai_sync.testing import Recorder
from convai_sync.transports.base import TransportClosed, TransportListener
from convai_sync.turns import TurnTracker
from simulator import Simulator
from tests.helpers_memory import (
    BOT_READY,
    WAIT,
    FakeApi,
    Harness,
    NotifyingTransport,
    ScriptedServer,
    ack,
    assert_no_convai_threads,
    make_config,
    reply_frames,
    run_async,
)

pytestmark = pytest.mark.timeout(15)

P = EventDeliveryPolicy
S = SessionState
LOGGER = "convai_sync"


@pytest.fixture(autouse=True)
def _no_convai_threads_survive() -> Iterator[None]:
    yield
    assert_no_convai_threads()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness(make_config(close_timeout=0.5, http_timeout=0.5))
    try:
        yield h
    finally:
        h.close()


def text_frame(text: str) -> dict[str, Any]:
    return {"label": "rtvi-ai", "type": "bot-llm-text", "data": {"text": text}}


LLM_STARTED: dict[str, Any] = {"label": "rtvi-ai", "type": "bot-llm-started", "data": {}}
TURN_COMPLETED: dict[str, Any] = {"label": "rtvi-ai", "type": "bot-turn-completed", "data": {}}


# ============================================================================ (1) early close


class EarlyCloseTransport(NotifyingTransport):
    """Delivers bot-ready and then a server close from inside ``open()``: both reach the session
    before the attempt result that adopts this transport."""

    def __init__(self, server: ScriptedServer, closed: TransportClosed) -> None:
        super().__init__(server)
        self._early = closed

    def open(self, endpoint: Any, listener: TransportListener, *, timeout: float, canceller: Any = None) -> None:
        super().open(endpoint, listener, timeout=timeout, canceller=canceller)
        listener.on_transport_message(self, json.dumps(BOT_READY))
        self.closed_by_peer(self._early)


def _early_close_client(closed: TransportClosed) -> tuple[ConvaiClient, ScriptedServer]:
    server = ScriptedServer()
    transports: list[NotifyingTransport] = []

    def factory() -> NotifyingTransport:
        t = EarlyCloseTransport(server, closed) if not transports else NotifyingTransport(server)
        transports.append(t)
        return t

    client = ConvaiClient(make_config(close_timeout=0.5, http_timeout=0.5,
                                      reconnect_policy=ReconnectPolicy(delays=(0.0,))),
                          transport_factory=factory, connect_api=FakeApi())
    return client, server


def test_1_close_before_attempt_is_adopted_ends_the_session() -> None:
    client, _ = _early_close_client(TransportClosed(1008, "character not found", "server"))
    disconnected: Recorder[Disconnected] = Recorder()
    client.events.on_disconnected.subscribe(disconnected, P.IMMEDIATE)
    try:
        client.connect(timeout=WAIT)  # bot-ready came first, so connect() itself succeeds
        disc = disconnected.wait(1)[0]  # ... but the replayed close must end the session
        assert disc.reason is DisconnectReason.JOIN_FAILURE
        assert disc.error is not None and disc.error.error_code is ErrorCode.CONNECTION_CONNECT_CHARACTER_NOT_FOUND
        assert client.state is S.DISCONNECTED
    finally:
        client.close()


def test_1_retryable_close_before_attempt_is_adopted_reconnects() -> None:
    client, server = _early_close_client(TransportClosed(1006, "connection lost", "network"))
    reconnected: Recorder[Reconnected] = Recorder()
    client.events.on_reconnected.subscribe(reconnected, P.IMMEDIATE)
    try:
        client.connect(timeout=WAIT)
        server.wait_open(2)  # the drop is noticed: a second transport is opened
        server.push(BOT_READY)
        reconnected.wait(1)
        assert client.state is S.CONNECTED
        client.send_text("still alive")  # on the new, live transport
        assert server.wait_sent("user_text_message")["data"]["text"] == "still alive"
    finally:
        client.close()


# ============================================================================ (2) reconnect() fails pending


def test_2_reconnect_from_connected_fails_pending_ask_and_ack(harness: Harness) -> None:
    h = harness
    h.connect()
    asked = run_async(lambda: h.client.ask("hello", timeout=10), "test-ask")
    h.server.wait_sent("user_text_message")
    acked = run_async(lambda: h.client.update_dynamic_info("x", wait=True), "test-ack")
    h.server.wait_sent("update-dynamic-info")
    assert h.client.diagnostics()["pending_acks"] == 1

    reconnecting = run_async(lambda: h.client.reconnect(timeout=WAIT), "test-reconnect")
    h.server.wait_open(2)
    h.server.push(BOT_READY)
    reconnecting.result(WAIT)
    assert h.client.state is S.CONNECTED

    for fut in (asked, acked):
        with pytest.raises(ConvaiError) as info:
            fut.result(WAIT)  # before the fix: still waiting (ask until its own timeout)
        assert info.value.error_code is ErrorCode.SESSION_CANCELLED
    assert h.client.diagnostics()["pending_acks"] == 0
    asked.thread.join(WAIT)  # type: ignore[attr-defined]
    acked.thread.join(WAIT)  # type: ignore[attr-defined]


# ============================================================================ (3) ask() and other turns


def test_3_tracker_abandoned_asks_late_chunks_do_not_leak_into_next_ask() -> None:
    t = TurnTracker()
    a = t.sent_text("A", "question A", wait=True)
    assert a is not None
    t.feed(ev.BotLLMStarted(type="bot-llm-started"))
    t.feed(ev.BotText(type="bot-llm-text", text="answer-to-A part1 "))
    t.abandon(a)  # ask("A") timed out
    b = t.sent_text("B", "question B", wait=True)
    assert b is not None
    t.feed(ev.BotText(type="bot-llm-text", text="A part2"))
    t.feed(ev.BotTurnCompleted(type="bot-turn-completed"))
    assert not b.future.done()  # before the fix: B got "A part2"
    t.feed(ev.BotLLMStarted(type="bot-llm-started"))
    t.feed(ev.BotText(type="bot-llm-text", text="answer-to-B"))
    t.feed(ev.BotTurnCompleted(type="bot-turn-completed"))
    assert b.future.result(0).text == "answer-to-B"


def test_3_tracker_trigger_reply_is_not_given_to_an_ask() -> None:
    t = TurnTracker()
    t.sent_trigger()
    t.feed(ev.BotLLMStarted(type="bot-llm-started"))  # the trigger's reply: no ask waiting
    t.feed(ev.BotText(type="bot-llm-text", text="trigger reply "))
    c = t.sent_text("C", "question C", wait=True)
    assert c is not None
    t.feed(ev.BotText(type="bot-llm-text", text="tail"))
    t.feed(ev.BotTurnCompleted(type="bot-turn-completed"))
    assert not c.future.done()  # before the fix: C got "tail"
    t.feed(ev.BotLLMStarted(type="bot-llm-started"))
    t.feed(ev.BotText(type="bot-llm-text", text="answer-to-C"))
    t.feed(ev.BotTurnCompleted(type="bot-turn-completed"))
    assert c.future.result(0).text == "answer-to-C"


def test_3_client_ask_ignores_the_tail_of_a_trigger_reply(harness: Harness) -> None:
    h = harness
    texts: Recorder[BotText] = Recorder()
    h.client.events.raw.subscribe(BotText, texts, P.IMMEDIATE)
    h.connect()
    h.server.push(LLM_STARTED)  # a trigger's reply is streaming when ask() registers
    h.server.push(text_frame("trigger reply "))
    texts.wait(1)
    asked = run_async(lambda: h.client.ask("hi", timeout=WAIT), "test-ask")
    h.server.wait_sent("user_text_message")
    h.server.push(text_frame("tail"))
    h.server.push(TURN_COMPLETED)
    for frame in reply_frames(["mine"]):
        h.server.push(frame)
    assert asked.result(WAIT).text == "mine"  # before the fix: "tail"


def test_3_client_timed_out_asks_late_chunks_do_not_leak(harness: Harness) -> None:
    h = harness
    texts: Recorder[BotText] = Recorder()
    h.client.events.raw.subscribe(BotText, texts, P.IMMEDIATE)
    h.connect()
    first = run_async(lambda: h.client.ask("A", timeout=1.0), "test-ask-a")
    h.server.wait_sent("user_text_message")
    h.server.push(LLM_STARTED)
    h.server.push(text_frame("answer-to-A part1 "))
    texts.wait(1)  # A's turn is bound and streaming
    with pytest.raises(ConvaiTimeoutError):
        first.result(WAIT)  # ask("A") gives up mid-reply
    second = run_async(lambda: h.client.ask("B", timeout=WAIT), "test-ask-b")
    _wait_sent_count(h.server, "user_text_message", 2)
    h.server.push(text_frame("A part2"))
    h.server.push(TURN_COMPLETED)
    for frame in reply_frames(["answer-to-B"]):
        h.server.push(frame)
    assert second.result(WAIT).text == "answer-to-B"  # before the fix: "A part2"


def _wait_sent_count(server: ScriptedServer, msg_type: str, n: int) -> None:
    with server._cond:
        if not server._cond.wait_for(lambda: server.count_sent(msg_type) >= n, WAIT):
            raise TimeoutError(f"client sent fewer than {n} {msg_type}")


# ============================================================================ (4) connect() racing close()


def test_4_connect_racing_close_does_not_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    client = ConvaiClient(make_config(close_timeout=0.5, http_timeout=0.5),
                          transport_factory=lambda: NotifyingTransport(ScriptedServer()),
                          connect_api=FakeApi())
    original = ConvaiConfig.validate_for_connect

    def close_in_between(config: ConvaiConfig) -> None:
        # Another thread's close() lands after connect()'s _check_open and before the session starts.
        monkeypatch.setattr(ConvaiConfig, "validate_for_connect", original)
        original(config)
        client.close()

    monkeypatch.setattr(ConvaiConfig, "validate_for_connect", close_in_between)
    connecting = run_async(lambda: client.connect(timeout=None), "test-connect")
    with pytest.raises(InvalidStateError):
        connecting.result(WAIT)  # before the fix: blocked forever on a stopped session thread
    assert client.diagnostics()["closed"] is True
    assert client._session.thread is None  # no session thread was started after close()


# ============================================================================ (6) acks in wire order


class _WatchedLock:
    """Wraps the client's send lock: reports when a second sender has to wait for it."""

    def __init__(self, inner: Any, contended: threading.Event) -> None:
        self._inner = inner
        self._contended = contended

    def __enter__(self) -> _WatchedLock:
        if not self._inner.acquire(blocking=False):
            self._contended.set()
            self._inner.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.release()


class _GatedServer(ScriptedServer):
    """Holds sender A inside ``send`` (between its ack registration and the wire) until B has
    either reached the wire (possible only without a send lock) or is waiting for the lock."""

    def __init__(self) -> None:
        super().__init__()
        self.a_in_send = threading.Event()
        self.b_progress = threading.Event()
        self.order: list[str] = []
        self.responders["update-dynamic-info"] = lambda msg: [
            ack("update-dynamic-info", message="ack for " + msg["data"]["dynamic_info"]["text"])]

    def record(self, data: str) -> None:
        msg = json.loads(data)
        who = msg.get("data", {}).get("dynamic_info", {}).get("text") if msg.get("type") == "update-dynamic-info" \
            else None
        if who == "A":
            self.a_in_send.set()
            self.b_progress.wait(WAIT)
        if who is not None:
            self.order.append(who)
        super().record(data)  # the server answers in arrival order
        if who == "B":
            self.b_progress.set()


def test_6_concurrent_wait_sends_get_their_own_ack_in_wire_order() -> None:
    h = Harness(make_config(close_timeout=0.5, http_timeout=0.5))
    server = h.server = _GatedServer()
    try:
        h.connect()
        sender = h.client._sender  # its lock keeps acks in wire order
        sender._lock = _WatchedLock(sender._lock, server.b_progress)  # type: ignore[assignment]
        a = run_async(lambda: h.client.update_dynamic_info("A", wait=True), "test-send-a")
        assert server.a_in_send.wait(WAIT)
        b = run_async(lambda: h.client.update_dynamic_info("B", wait=True), "test-send-b")
        got_a, got_b = a.result(WAIT), b.result(WAIT)
        assert got_a is not None and got_b is not None
        assert (got_a.message, got_b.message) == ("ack for A", "ack for B")  # before the fix: swapped
        assert server.order == ["A", "B"]
    finally:
        h.close()


# ============================================================================ (8) disconnect() after close()


def test_8_disconnect_after_close_returns_without_warning(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    h = harness
    h.connect()
    h.client.close()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        h.client.disconnect()  # before the fix: waited close_timeout + http_timeout on a dead loop
    assert not [r for r in caplog.records if "did not finish" in r.getMessage()]


# ============================================================================ (9) hub after close


def test_9_close_from_immediate_handler_still_delivers_disconnected(caplog: pytest.LogCaptureFixture) -> None:
    server = ScriptedServer()
    client = ConvaiClient(make_config(close_timeout=0.5, http_timeout=0.5),
                          transport_factory=lambda: NotifyingTransport(server),
                          connect_api=FakeApi())
    background: Recorder[Any] = Recorder()
    # BACKGROUND subscribers: the dispatcher thread is running (started by CONNECTING) when close() comes.
    client.events.on_session_state_changed.subscribe(background, P.BACKGROUND)
    client.events.on_disconnected.subscribe(background, P.BACKGROUND)
    # close() from an IMMEDIATE handler: the disconnect runs after the hub has closed.
    client.events.on_bot_ready.subscribe(lambda _e: client.close(), P.IMMEDIATE)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        connecting = run_async(lambda: client.connect(timeout=WAIT), "test-connect")
        server.wait_open()
        server.push(BOT_READY)
        connecting.result(WAIT)
        session_thread = client._session.thread
        assert session_thread is not None
        session_thread.join(WAIT)
        assert not session_thread.is_alive()
    client.close()
    # close() from an IMMEDIATE handler closes the hub only after the disconnect has published:
    # BACKGROUND subscribers still get the final Disconnected (before the fix: dropped silently).
    assert background.of(Disconnected), background.events
    assert not [r for r in caplog.records if "published after close" in r.getMessage()]


@pytest.mark.parametrize("policy", list(P), ids=lambda p: p.name)
def test_9_publish_after_hub_close_is_logged_not_delivered(policy: P, caplog: pytest.LogCaptureFixture) -> None:
    hub = EventHub(default_policy=policy)
    seen: Recorder[Any] = Recorder()
    hub.subscribe(Disconnected, seen)
    hub.close(1.0)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        hub.publish(Disconnected(reason=DisconnectReason.CLIENT_INITIATED))
    assert hub.pump() == 0 and seen.events == []
    assert any("published after close" in r.getMessage() for r in caplog.records)


def test_9_wait_for_is_woken_by_close() -> None:
    client = ConvaiClient(make_config(close_timeout=0.5, http_timeout=0.5),
                          transport_factory=lambda: NotifyingTransport(ScriptedServer()),
                          connect_api=FakeApi())
    hub = client.events.raw
    subscribed = threading.Event()
    original = hub.subscribe

    def subscribe(*args: Any, **kw: Any) -> Any:
        sub = original(*args, **kw)
        subscribed.set()
        return sub

    hub.subscribe = subscribe  # type: ignore[method-assign]
    waiting = run_async(lambda: client.wait_for(BotReady, timeout=10), "test-wait-for")
    try:
        assert subscribed.wait(WAIT)  # wait_for is blocked
        client.close()
        with pytest.raises(InvalidStateError):
            waiting.result(WAIT)  # before the fix: blocked until its own 10 s timeout
        with pytest.raises(InvalidStateError):
            client.wait_for(BotReady, timeout=10)  # after close: at once
    finally:
        client.close()


# ============================================================================ (10) API key / redirects


SECRET = "sk-REVIEW-SECRET-10"


def _key_in(obj: object, depth: int = 0) -> bool:
    """Whether SECRET is reachable from ``obj`` through reprs, ``vars`` and exception chaining."""
    if obj is None or depth > 4:
        return False
    if SECRET in repr(obj):
        return True
    if isinstance(obj, BaseException):
        if any(_key_in(a, depth + 1) for a in obj.args):
            return True
        if _key_in(obj.__cause__, depth + 1) or _key_in(obj.__context__, depth + 1):
            return True
    try:
        attrs = vars(obj)
    except TypeError:
        return False
    if SECRET in repr(attrs):
        return True
    headers = getattr(obj, "headers", None)
    if headers is not None and SECRET in repr(dict(headers)):
        return True
    return any(_key_in(v, depth + 1) for v in attrs.values())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_10_network_failure_exception_holds_no_api_key() -> None:
    api = ConnectApi(ConvaiConfig(api_key=SECRET, character_id="c", url=f"http://127.0.0.1:{_closed_port()}"))
    try:
        with pytest.raises(ConnectFailed) as info:
            api.connect(None, timeout=2)
    finally:
        api.close()
    error = info.value.error
    assert error.error_code is ErrorCode.CONNECTION_NETWORK_ERROR
    exc = error.exception
    assert exc is not None
    assert getattr(exc, "request", None) is None  # before the fix: the PreparedRequest with X-API-Key
    assert getattr(exc, "response", None) is None
    assert SECRET not in repr(vars(exc))
    assert not _key_in(exc)
    assert not _key_in(error)


@responses.activate
def test_10_connect_does_not_follow_redirects() -> None:
    base, other = "https://convai.test", "https://elsewhere.test"
    responses.add(responses.POST, f"{base}/connect", status=307, headers={"Location": f"{other}/connect"})
    second = responses.add(responses.POST, f"{other}/connect", status=200, json={
        "session_id": "s", "character_session_id": "c", "room_url": "wss://elsewhere.test/chat"})
    api = ConnectApi(ConvaiConfig(api_key=SECRET, character_id="c", url=base))
    try:
        with pytest.raises(ConnectFailed) as info:  # before the fix: the redirect was followed
            api.connect(None, timeout=2)
    finally:
        api.close()
    assert second.call_count == 0
    assert [c.request.url for c in responses.calls] == [f"{base}/connect"]
    error = info.value.error
    assert isinstance(error.error_code, ErrorCode)
    assert error.http_status_code == 307
    assert SECRET not in str(info.value)


# ============================================================================ (11) slot freed on a retried drop


class RecordingApi(ConnectApi):
    """The real HTTP connect API, recording /connect and /disconnect calls in order."""

    def __init__(self, config: ConvaiConfig) -> None:
        super().__init__(config)
        self.calls: list[tuple[str, str | None]] = []
        self._calls_lock = threading.Lock()

    def connect(self, character_session_id: str | None, timeout: float, canceller: Any = None,
                credential: Any = None) -> Any:
        endpoint = super().connect(character_session_id, timeout, canceller)
        with self._calls_lock:
            self.calls.append(("connect", endpoint.session_id))
        return endpoint

    def disconnect(self, session_id: str, timeout: float | None = None, canceller: Any = None) -> bool:
        with self._calls_lock:
            self.calls.append(("disconnect", session_id))
        return super().disconnect(session_id, timeout, canceller)


def _sim_client(sim: Simulator, factory: Any = None) -> tuple[ConvaiClient, RecordingApi,
                                                               Recorder[SessionStateChanged]]:
    config = sim.client_config(reconnect_policy=ReconnectPolicy(delays=(0.01,)), close_timeout=2.0,
                               http_timeout=2.0)
    api = RecordingApi(config)
    client = ConvaiClient(config, connect_api=api, transport_factory=factory)
    left_reconnecting: Recorder[SessionStateChanged] = Recorder(lambda e: e.old_state is S.RECONNECTING)
    client.events.on_session_state_changed.subscribe(left_reconnecting, P.IMMEDIATE)
    return client, api, left_reconnecting


def test_11_retried_drop_posts_disconnect_for_the_dropped_session_before_reconnecting() -> None:
    # The simulator frees a slot itself when *it* ends a session, so this SIGNAL_CLOSE reconnect
    # succeeds either way; what the fix adds is the client's POST /disconnect for the dropped session.
    with Simulator(concurrency_limit=1) as sim:
        client, api, left_reconnecting = _sim_client(sim)
        with client:
            client.connect(timeout=10)
            first = client.session_id
            sim.inject(DisconnectReason.SIGNAL_CLOSE)
            settled = left_reconnecting.wait(1, timeout=10)[0]
            assert settled.new_state is S.CONNECTED, client.last_error
            second = client.session_id
            assert second not in (None, first)
            calls = list(api.calls)
            assert ("disconnect", first) in calls, calls  # before the fix: never released
            assert calls.index(("disconnect", first)) < calls.index(("connect", second))
            assert sim.slots_in_use() == 1


def test_11_half_open_drop_reconnects_within_a_concurrency_limit_of_one() -> None:
    # The client sees the link drop (network, no close frame) while the server still holds the
    # session and its slot: without the POST /disconnect first, the reconnect's /connect gets 429.
    transports: list[Any] = []

    def factory() -> Any:
        from convai_sync.transports.websocket import WebSocketTransport
        transports.append(WebSocketTransport())
        return transports[-1]

    with Simulator(concurrency_limit=1) as sim:
        client, api, left_reconnecting = _sim_client(sim, factory)
        reconnecting: Recorder[Reconnecting] = Recorder()
        client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
        try:
            with client:
                client.connect(timeout=10)
                first = client.session_id
                dropped = transports[0]
                dropped._listener.on_transport_closed(dropped, TransportClosed(1006, "connection lost", "network"))
                settled = left_reconnecting.wait(1, timeout=10)[0]
                assert settled.new_state is S.CONNECTED, client.last_error
                assert client.session_id not in (None, first)
                # before the fix: attempt 1 got 429 connection.connect_concurrency_limit_reached (the
                # dropped session still held the only slot) and only a second attempt got through
                assert [r.attempt for r in reconnecting.events] == [1]
                assert client.diagnostics()["reconnect_attempts"] == 1
                assert ("disconnect", first) in api.calls
                assert sim.slots_in_use() == 1
        finally:
            for transport in transports:
                transport.close(timeout=1.0)


# ============================================================================ (12) bounded inbox


def test_12_inbox_drops_frames_beyond_the_limit(harness: Harness, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    h = harness
    monkeypatch.setattr(listener_module, "MAX_INBOX_FRAMES", 5, raising=False)
    entered, release = threading.Event(), threading.Event()
    seen: Recorder[BotText] = Recorder()

    def blocking(event: BotText) -> None:
        seen(event)
        if event.text == "block":
            entered.set()
            release.wait(WAIT)

    h.client.events.raw.subscribe(BotText, blocking, P.IMMEDIATE)
    h.connect()
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            h.server.push(text_frame("block"))
            assert entered.wait(WAIT)  # the session thread is stuck in the handler
            for i in range(20):
                h.server.push(text_frame(f"f{i}"))
            dropped = h.client.diagnostics().get("frames_dropped", 0)
    finally:
        release.set()
    assert dropped > 0  # before the fix: all 20 queued, nothing dropped or counted
    assert dropped <= 20 - 1  # frames that fitted were queued, not dropped
    assert any("inbox full" in r.getMessage() for r in caplog.records)
    seen.wait(2)  # queued frames are still delivered once the thread is free
