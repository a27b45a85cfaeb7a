"""ConvaiClient + MemoryTransport + FakeApi: lifecycle, retries, reconnects, limits, handlers.

No network, no sleeps: every wait is on an Event/Condition/Future with a timeout, and every
backoff or timer is driven by a FakeClock (``SteppingClock.step`` waits until the session loop
is asleep towards exactly that deadline, then advances).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from convai_sync import (
    BotEmotion,
    BotLLMStarted,
    BotLLMStopped,
    BotReady,
    BotText,
    BotTurnCompleted,
    ConcurrencyLimitError,
    Connected,
    ConvaiError,
    ConvaiTimeoutError,
    Disconnected,
    DisconnectReason,
    ErrorCode,
    EventDeliveryPolicy,
    FinalUserTranscription,
    InvalidStateError,
    PipelineSessionError,
    Reconnected,
    Reconnecting,
    RetryPolicy,
    ServerMessage,
    ServerResponse,
    SessionDurationWarning,
    SessionError,
    SessionErrorStage,
    SessionState,
    SessionStateChanged,
    SlotWaitPolicy,
    UsageLimitError,
    UsageLimitReached,
    UserIdleTimeoutElapsed,
    UserIdleWarningReceived,
    WaitingForSlot,
)
from convai_sync.testing import Recorder
from tests.helpers_memory import (
    BOT_READY,
    WAIT,
    FakeApi,
    GateApi,
    Harness,
    SteppingClock,
    ack,
    assert_no_convai_threads,
    make_config,
    pump_until,
    reply_frames,
    run_async,
)
from tests.narrowing import state_of

pytestmark = pytest.mark.timeout(10)

P = EventDeliveryPolicy
S = SessionState
E = ErrorCode
SU = E.CONNECTION_SERVICE_UNAVAILABLE
CCL = E.CONNECTION_CONNECT_CONCURRENCY_LIMIT_REACHED


@pytest.fixture(autouse=True)
def _no_convai_threads_survive() -> Iterator[None]:
    yield  # torn down after the harness fixture below has closed every client
    assert_no_convai_threads()


#: ``make(config=None, *, clock=None, api=None, **config overrides)``: a Harness closed after the test.
Make = Callable[..., Harness]


@pytest.fixture
def make() -> Iterator[Make]:
    made: list[Harness] = []

    def build(config: Any = None, *, clock: Any = None, api: FakeApi | None = None, **overrides: Any) -> Harness:
        cfg = config if config is not None else make_config(**overrides)
        h = Harness(cfg, clock=clock, api=api)
        made.append(h)
        return h

    yield build
    for h in made:
        h.close()


def form_b(inner_type: str, **data: Any) -> dict[str, Any]:
    return {"label": "rtvi-ai", "type": "server-message", "data": {"type": inner_type, **data}}


def rtvi(msg_type: str, **data: Any) -> dict[str, Any]:
    return {"label": "rtvi-ai", "type": msg_type, "data": data}


def round_trip(h: Harness, times: int = 2) -> None:
    """Let the session loop finish what is queued (and any timers due) before asserting.

    ``connect()`` while CONNECTED or ERROR (refused) and ``disconnect()`` while DISCONNECTED are
    answered by the session thread with no side effect; two of them span a full loop iteration,
    timers included.
    """
    for _ in range(times):
        if h.client.state is S.DISCONNECTED:
            h.client.disconnect()
        elif h.client.state is S.ERROR:
            with pytest.raises(InvalidStateError):  # refused by the session thread itself
                h.client.connect(timeout=WAIT)
        else:
            h.client.connect(timeout=WAIT)


def answer_asks(h: Harness, chunks: list[str], emotion: str | None = None) -> None:
    h.server.responders["user_text_message"] = lambda msg: reply_frames(
        chunks, emotion, message_id=msg["data"]["message_id"])


# ============================================================================ connect & events


@pytest.mark.parametrize("policy", list(EventDeliveryPolicy), ids=lambda p: p.name)
def test_connect_ask_and_event_order(make: Make, policy: EventDeliveryPolicy) -> None:
    h = make(delivery_policy=policy)
    c = h.client
    timeline: Recorder[Any] = Recorder()  # one recorder on several channels: one global order
    c.events.on_session_state_changed.subscribe(timeline)
    c.events.on_bot_ready.subscribe(timeline)
    c.events.on_connected.subscribe(timeline)
    messages: Recorder[Any] = Recorder()
    c.events.on_message.subscribe(messages)

    assert c.state is S.DISCONNECTED
    h.connect()  # returns only after bot-ready, under every policy, without pump()
    assert state_of(c) is S.CONNECTED and c.is_bot_ready
    assert c.session_id == "sess-1" and c.character_session_id == "csid-1"

    answer_asks(h, ["Hel", "lo", "!"], emotion="happy")
    reply = c.ask("Hello", timeout=WAIT)
    assert reply.text == "Hello!"
    assert reply.chunks == ("Hel", "lo", "!")
    assert reply.emotion == "happy" and reply.emotion_scale == 2
    sent = h.server.wait_sent("user_text_message")
    assert sent["data"]["text"] == "Hello" and reply.message_id == sent["data"]["message_id"]

    if policy is P.MAIN_THREAD:
        assert len(timeline) == 0 and len(messages) == 0  # held until the host pumps
        pump_until(c, lambda: len(timeline) >= 4 and len(messages) >= 8)
    else:
        timeline.wait(4, WAIT)
        messages.wait(8, WAIT)

    kinds = [type(e) for e in timeline.events]
    assert kinds == [SessionStateChanged, BotReady, SessionStateChanged, Connected]
    changes = [e for e in timeline.events if isinstance(e, SessionStateChanged)]
    assert [(e.old_state, e.new_state) for e in changes] == [(S.DISCONNECTED, S.CONNECTING),
                                                             (S.CONNECTING, S.CONNECTED)]
    assert [e.is_connection_established for e in changes] == [False, True]
    assert not any(e.is_error or e.is_reconnecting or e.is_disconnected for e in changes)
    assert [type(e) for e in messages.events] == [FinalUserTranscription, BotLLMStarted, BotText, BotText, BotText,
                                                  BotEmotion, BotLLMStopped, BotTurnCompleted]
    expected_thread = {P.IMMEDIATE: "convai-session-", P.BACKGROUND: "convai-dispatch-",
                       P.MAIN_THREAD: threading.current_thread().name}[policy]
    assert all(name.startswith(expected_thread) for name in timeline.threads + messages.threads)


def test_connect_blocks_until_bot_ready(make: Make) -> None:
    h = make()
    fut = h.connect_async()
    h.server.wait_open(1)
    returned = threading.Event()
    fut.add_done_callback(lambda f: returned.set())
    assert not returned.wait(0.1)  # joined, but no bot-ready yet: still connecting
    assert h.client.state is S.CONNECTING and not h.client.is_bot_ready
    h.server.push(BOT_READY)
    fut.result(WAIT)
    assert state_of(h.client) is S.CONNECTED


# ============================================================================ sends & acks


def test_send_wait_returns_server_response(make: Make) -> None:
    h = make()
    acks: Recorder[ServerResponse] = Recorder()
    h.client.events.on_server_response.subscribe(acks, P.IMMEDIATE)
    h.connect()
    h.server.responders["user_text_message"] = lambda msg: [ack("user_text_message")]
    resp = h.client.send_text("hi", wait=True)
    assert isinstance(resp, ServerResponse)
    assert resp.event_type == "user_text_message" and resp.status == "success"
    assert acks.wait(1, WAIT)[0].status == "success"
    assert h.client.diagnostics()["pending_acks"] == 0


def test_send_without_wait_returns_none_at_once(make: Make) -> None:
    h = make()
    h.connect()
    assert h.client.send_text("fire and forget") is None
    assert h.server.wait_sent("user_text_message")["data"]["text"] == "fire and forget"


def test_error_ack_raises_convai_error(make: Make) -> None:
    h = make()
    acks: Recorder[ServerResponse] = Recorder()
    h.client.events.on_server_response.subscribe(acks, P.IMMEDIATE)
    h.connect()
    h.server.responders["user_text_message"] = lambda msg: [ack("user_text_message", "error", "rejected!")]
    with pytest.raises(ConvaiError) as info:
        h.client.send_text("hi", wait=True)
    assert info.value.error_code is E.SERVER_ERROR
    assert "rejected!" in str(info.value)
    assert acks.wait(1, WAIT)[0].is_error  # the event fires too
    assert h.client.state is S.CONNECTED


def test_missing_ack_times_out(make: Make) -> None:
    h = make(ack_timeout=0.2)
    h.connect()
    with pytest.raises(ConvaiTimeoutError) as info:
        h.client.send_text("hi", wait=True)
    assert isinstance(info.value, TimeoutError)
    assert info.value.error_code is E.CONNECTION_TIMEOUT
    assert h.client.diagnostics()["pending_acks"] == 0  # the waiter is forgotten


def test_sends_before_connected_raise_invalid_state(make: Make) -> None:
    h = make()
    with pytest.raises(InvalidStateError) as info:
        h.client.send_text("too early")
    assert info.value.error_code == "session.invalid_state"
    with pytest.raises(InvalidStateError):
        h.client.ask("too early", timeout=1)
    fut = h.connect_async()
    h.server.wait_open(1)
    assert h.client.state is S.CONNECTING
    for call in (lambda: h.client.send_text("connecting"), lambda: h.client.interrupt(),
                 lambda: h.client.ask("connecting", timeout=1)):
        with pytest.raises(InvalidStateError) as info:
            call()
        assert info.value.error_code is E.SESSION_INVALID_STATE
    assert h.server.sent == []
    h.server.push(BOT_READY)
    fut.result(WAIT)


# ============================================================================ ERROR state


def test_connect_from_error_refused_and_disconnect_resets(make: Make) -> None:
    api = FakeApi([E.CONNECTION_CONNECT_INVALID_API_KEY])
    h = make(api=api)
    with pytest.raises(ConvaiError) as first:
        h.client.connect(timeout=WAIT)
    assert first.value.error_code is E.CONNECTION_CONNECT_INVALID_API_KEY
    assert h.client.state is S.ERROR
    with pytest.raises(InvalidStateError) as info:
        h.client.connect(timeout=WAIT)
    assert info.value.error_code is E.SESSION_INVALID_STATE
    assert api.call_count == 1  # the refused connect made no attempt
    h.client.disconnect()
    assert state_of(h.client) is S.DISCONNECTED
    h.connect()  # usable again after the reset
    assert state_of(h.client) is S.CONNECTED and api.call_count == 2


def test_non_retryable_code_fails_after_one_attempt(make: Make) -> None:
    api = FakeApi(then=E.CONNECTION_CONNECT_INVALID_API_KEY)
    h = make(api=api, clock=SteppingClock())
    errors: Recorder[SessionError] = Recorder()
    h.client.events.on_session_error.subscribe(errors, P.IMMEDIATE)
    states: Recorder[SessionStateChanged] = Recorder()
    h.client.events.on_session_state_changed.subscribe(states, P.IMMEDIATE)
    with pytest.raises(ConvaiError) as info:
        h.client.connect(timeout=WAIT)
    assert info.value.error_code is E.CONNECTION_CONNECT_INVALID_API_KEY
    assert h.client.state is S.ERROR
    round_trip(h)  # would expose a late retry
    assert api.call_count == 1 and h.client.diagnostics()["connect_attempts"] == 1
    assert len(errors) == 1
    err = errors.events[0]
    assert err.error_code is E.CONNECTION_CONNECT_INVALID_API_KEY
    assert err.stage is SessionErrorStage.CONNECT_API and err.http_status_code == 401
    assert not err.is_recoverable
    last = states.events[-1]
    assert last.is_error and last.error_code == "connection.connect_invalid_api_key"


def test_connect_retry_delays_with_fake_clock(make: Make) -> None:
    clock = SteppingClock()
    api = FakeApi([SU, SU, SU])
    h = make(api=api, clock=clock)
    fut = h.connect_async()
    for n, delay in ((1, 1.0), (2, 2.0), (3, 4.0)):
        api.wait_calls(n)
        clock.wait_for_deadline(clock.monotonic() + delay)  # failure processed; backing off
        assert api.call_count == n  # no attempt without the clock moving
        clock.advance(delay)
    api.wait_calls(4)
    h.server.wait_open(1)
    h.server.push(BOT_READY)
    fut.result(WAIT)
    diag = h.client.diagnostics()
    assert diag["retry_delays"] == [0, 1, 2, 4]
    assert diag["connect_attempts"] == 4 and api.call_count == 4
    assert h.client.state is S.CONNECTED


def test_retries_spent_end_in_error_with_final_code(make: Make) -> None:
    clock = SteppingClock()
    api = FakeApi(then=SU)
    h = make(api=api, clock=clock)
    errors: Recorder[SessionError] = Recorder()
    h.client.events.on_session_error.subscribe(errors, P.IMMEDIATE)
    fut = h.connect_async()
    for n, delay in ((1, 1.0), (2, 2.0), (3, 4.0)):
        api.wait_calls(n)
        clock.step(delay)
    with pytest.raises(ConvaiError) as info:
        fut.result(WAIT)
    assert info.value.error_code is SU
    assert h.client.state is S.ERROR
    assert api.call_count == 4 and h.client.diagnostics()["connect_attempts"] == 4
    assert [e.error_code for e in errors.events] == [SU]  # fired once, after the last attempt
    assert h.client.last_error is not None and h.client.last_error.error_code is SU


def test_disconnect_during_backoff_stops_further_attempts(make: Make) -> None:
    clock = SteppingClock()
    api = FakeApi([SU])
    h = make(api=api, clock=clock)
    fut = h.connect_async()
    api.wait_calls(1)
    clock.wait_for_deadline(clock.monotonic() + 1.0)  # in the 1 s backoff
    done = run_async(h.client.disconnect, "test-disconnect")
    done.result(1.0)  # bounded, and no clock advance needed
    with pytest.raises(ConvaiError) as info:
        fut.result(WAIT)
    assert info.value.error_code is E.SESSION_CANCELLED
    assert h.client.state is S.DISCONNECTED
    clock.advance(60.0)
    round_trip(h)
    assert api.call_count == 1
    assert h.client.diagnostics()["connect_attempts"] == 1


def test_close_during_backoff_is_bounded_and_final(make: Make) -> None:
    clock = SteppingClock()
    api = FakeApi(then=SU)
    h = make(api=api, clock=clock)
    fut = h.connect_async()
    api.wait_calls(1)
    clock.wait_for_deadline(clock.monotonic() + 1.0)
    run_async(h.client.close, "test-close").result(WAIT)
    with pytest.raises(ConvaiError):
        fut.result(WAIT)
    clock.advance(60.0)
    assert_no_convai_threads()
    assert api.call_count == 1


def test_disconnect_during_connecting_cancels(make: Make) -> None:
    api = FakeApi()
    h = make(api=api)
    errors: Recorder[SessionError] = Recorder()
    h.client.events.on_session_error.subscribe(errors, P.IMMEDIATE)
    fut = h.connect_async()
    h.server.wait_open(1)  # joined; bot-ready is never pushed
    h.client.disconnect()
    with pytest.raises(ConvaiError) as info:
        fut.result(WAIT)
    assert info.value.error_code is E.SESSION_CANCELLED
    assert h.client.state is S.DISCONNECTED
    api.wait_disconnects(1)
    assert api.disconnects == ["sess-1"]  # the slot is released
    assert [e.error_code for e in errors.events] == [E.SESSION_CANCELLED]


# ============================================================================ drops & reconnects


def test_reconnect_after_drop_resumes_character_session(make: Make) -> None:
    clock = SteppingClock()
    api = FakeApi()
    h = make(api=api, clock=clock)
    reconnecting: Recorder[Reconnecting] = Recorder()
    reconnected: Recorder[Reconnected] = Recorder()
    disconnected: Recorder[Disconnected] = Recorder()
    states: Recorder[SessionStateChanged] = Recorder()
    h.client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
    h.client.events.on_reconnected.subscribe(reconnected, P.IMMEDIATE)
    h.client.events.on_disconnected.subscribe(disconnected, P.IMMEDIATE)
    h.client.events.on_session_state_changed.subscribe(states, P.IMMEDIATE)
    h.connect()
    h.server.drop()
    first = reconnecting.wait(1)[0]
    assert first.attempt == 1 and first.max_attempts == 3
    assert first.reason is DisconnectReason.UNKNOWN_REASON
    assert h.client.state is S.RECONNECTING
    clock.step(first.delay)
    api.wait_calls(2)
    assert api.calls[0][0] is None and api.calls[1][0] == "csid-1"
    h.server.wait_open(2)
    h.server.push(BOT_READY)
    reconnected.wait(1)
    assert state_of(h.client) is S.CONNECTED
    assert reconnected.events[0].character_session_id == "csid-1"
    round_trip(h)
    assert disconnected.events == []
    assert [(e.old_state, e.new_state) for e in states.events][-2:] == [(S.CONNECTED, S.RECONNECTING),
                                                                        (S.RECONNECTING, S.CONNECTED)]
    assert states.events[-1].is_reconnection_successful and states.events[-2].is_reconnecting
    # the new link works
    h.server.responders["user_text_message"] = lambda msg: [ack("user_text_message")]
    assert h.client.send_text("after reconnect", wait=True) is not None


def test_duplicate_identity_close_disconnects_without_retry(make: Make) -> None:
    api = FakeApi()
    h = make(api=api)
    disconnected: Recorder[Disconnected] = Recorder()
    reconnecting: Recorder[Reconnecting] = Recorder()
    h.client.events.on_disconnected.subscribe(disconnected, P.IMMEDIATE)
    h.client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
    h.connect()
    h.server.close(4000 + int(DisconnectReason.DUPLICATE_IDENTITY), "duplicate")
    disconnected.wait(1)
    round_trip(h)
    assert h.client.state is S.DISCONNECTED
    assert h.client.last_disconnect_reason is DisconnectReason.DUPLICATE_IDENTITY
    assert len(disconnected) == 1 and disconnected.events[0].reason is DisconnectReason.DUPLICATE_IDENTITY
    assert reconnecting.events == [] and api.call_count == 1


def test_reconnect_attempts_exhausted_end_in_error(make: Make) -> None:
    clock = SteppingClock()
    api = FakeApi([None], then=SU)
    h = make(api=api, clock=clock)
    reconnecting: Recorder[Reconnecting] = Recorder()
    errored: Recorder[SessionStateChanged] = Recorder(lambda e: e.new_state is S.ERROR)
    disconnected: Recorder[Disconnected] = Recorder()
    errors: Recorder[SessionError] = Recorder()
    h.client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
    h.client.events.on_session_state_changed.subscribe(errored, P.IMMEDIATE)
    h.client.events.on_disconnected.subscribe(disconnected, P.IMMEDIATE)
    h.client.events.on_session_error.subscribe(errors, P.IMMEDIATE)
    h.connect()
    h.server.drop()
    for n in (1, 2, 3):
        event = reconnecting.wait(n)[n - 1]
        assert event.attempt == n
        clock.step(event.delay)
        api.wait_calls(n + 1)
    errored.wait(1)
    assert h.client.state is S.ERROR
    # on_session_error: the drop itself, then the final code once the attempts are spent
    assert [e.error_code for e in errors.wait(2)] == [E.TRANSPORT_SIGNAL_DISCONNECTED, SU]
    err = errors.events[1]
    assert not err.is_recoverable
    assert err.stage is SessionErrorStage.SESSION_RECOVERY
    assert errored.events[0].error is err and h.client.last_error is err
    assert [e.attempt for e in reconnecting.events] == [1, 2, 3]
    assert disconnected.events == []
    assert h.client.diagnostics()["reconnect_attempts"] == 3 and api.call_count == 4


def test_server_shutdown_waits_at_least_five_seconds(make: Make) -> None:
    clock = SteppingClock()
    api = FakeApi()
    h = make(api=api, clock=clock)
    reconnecting: Recorder[Reconnecting] = Recorder()
    reconnected: Recorder[Reconnected] = Recorder()
    h.client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
    h.client.events.on_reconnected.subscribe(reconnected, P.IMMEDIATE)
    h.connect()
    h.server.close(1001, "going away")
    first = reconnecting.wait(1)[0]
    assert first.reason is DisconnectReason.SERVER_SHUTDOWN
    assert first.delay >= 5.0
    clock.wait_for_deadline(clock.monotonic() + first.delay)
    assert api.call_count == 1  # nothing before the delay
    clock.advance(first.delay)
    api.wait_calls(2)
    h.server.wait_open(2)
    h.server.push(BOT_READY)
    reconnected.wait(1)
    assert h.client.state is S.CONNECTED


# ============================================================================ runtime errors


def test_non_fatal_pipeline_error_keeps_session(make: Make) -> None:
    h = make()
    pipeline: Recorder[SessionError] = Recorder()
    errors: Recorder[SessionError] = Recorder()
    h.client.events.on_pipeline_error.subscribe(pipeline, P.IMMEDIATE)
    h.client.events.on_session_error.subscribe(errors, P.IMMEDIATE)
    h.connect()
    h.server.push(rtvi("error", error="tts hiccup", fatal=False))
    pipeline.wait(1)
    errors.wait(1)
    assert isinstance(pipeline.events[0], PipelineSessionError)
    assert pipeline.events[0].error_code is E.SERVER_ERROR and pipeline.events[0].is_recoverable
    assert errors.events[0].error_code is E.SERVER_ERROR
    round_trip(h)
    assert h.client.state is S.CONNECTED
    h.server.responders["user_text_message"] = lambda msg: [ack("user_text_message")]
    assert h.client.send_text("still here", wait=True) is not None


def test_fatal_pipeline_error_ends_session(make: Make) -> None:
    api = FakeApi()
    h = make(api=api)
    pipeline: Recorder[SessionError] = Recorder()
    errors: Recorder[SessionError] = Recorder()
    disconnected: Recorder[Disconnected] = Recorder()
    h.client.events.on_pipeline_error.subscribe(pipeline, P.IMMEDIATE)
    h.client.events.on_session_error.subscribe(errors, P.IMMEDIATE)
    h.client.events.on_disconnected.subscribe(disconnected, P.IMMEDIATE)
    h.connect()
    h.server.push(rtvi("error", error="pipeline crashed", fatal=True))
    disconnected.wait(1)
    assert pipeline.events[0].error_code is E.SERVER_FATAL_ERROR and not pipeline.events[0].is_recoverable
    assert [e.error_code for e in errors.events] == [E.SERVER_FATAL_ERROR]
    assert h.client.state is S.DISCONNECTED
    assert disconnected.events[0].error is not None
    assert disconnected.events[0].error.error_code is E.SERVER_FATAL_ERROR
    assert api.disconnects == ["sess-1"] and api.call_count == 1


def test_usage_limit_then_close_disconnects_without_reconnect(make: Make) -> None:
    api = FakeApi()
    h = make(api=api)
    usage: Recorder[UsageLimitReached] = Recorder()
    errors: Recorder[SessionError] = Recorder()
    disconnected: Recorder[Disconnected] = Recorder()
    reconnecting: Recorder[Reconnecting] = Recorder()
    h.client.events.on_usage_limit_reached.subscribe(usage, P.IMMEDIATE)
    h.client.events.on_session_error.subscribe(errors, P.IMMEDIATE)
    h.client.events.on_disconnected.subscribe(disconnected, P.IMMEDIATE)
    h.client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
    h.connect()
    h.server.push(form_b("usage-limit-reached", quota_type="minutes", message="Monthly minutes used up"))
    usage.wait(1)
    assert usage.events[0].quota_type == "minutes"
    assert usage.events[0].message == "Monthly minutes used up"
    assert [e.error_code for e in errors.wait(1)] == [E.SERVER_USAGE_LIMIT_REACHED]
    h.server.close(1008, "Usage limit exceeded")
    disconnected.wait(1)
    round_trip(h)
    assert h.client.state is S.DISCONNECTED
    assert reconnecting.events == [] and api.call_count == 1
    assert len(disconnected) == 1
    with pytest.raises(UsageLimitError) as info:
        h.client.send_text("more please")
    assert info.value.error_code is E.SERVER_USAGE_LIMIT_REACHED


@pytest.mark.parametrize(("frame", "code"), [
    ("this is not json{", E.PROTOCOL_PARSE_FAILED),
    ('{"label": "rtvi-ai", "data": {}}', E.PROTOCOL_MESSAGE_INVALID),
    ('{"label": "rtvi-ai", "type": "bot-llm-text", "data": {"text": 5}}', E.PROTOCOL_MESSAGE_INVALID),
], ids=["not-json", "missing-type", "bad-payload"])
def test_bad_frames_reported_and_session_keeps_running(make: Make, frame: str, code: ErrorCode) -> None:
    h = make()
    errors: Recorder[SessionError] = Recorder()
    h.client.events.on_session_error.subscribe(errors, P.IMMEDIATE)
    h.connect()
    h.server.push(frame)
    assert [e.error_code for e in errors.wait(1)] == [code]
    assert h.client.state is S.CONNECTED
    answer_asks(h, ["still ", "fine"])
    assert h.client.ask("ok?", timeout=WAIT).text == "still fine"
    assert h.client.diagnostics()["protocol_errors"] == 1


# ============================================================================ slots, caps, idle


def test_slot_wait_emits_waiting_then_connects(make: Make) -> None:
    clock = SteppingClock()
    api = FakeApi([CCL, CCL])
    h = make(api=api, clock=clock, slot_wait=SlotWaitPolicy(max_wait=10, interval=2))
    waiting: Recorder[WaitingForSlot] = Recorder()
    connected: Recorder[Connected] = Recorder()
    h.client.events.on_waiting_for_slot.subscribe(waiting, P.IMMEDIATE)
    h.client.events.on_connected.subscribe(connected, P.IMMEDIATE)
    fut = h.connect_async()
    for n in (1, 2):
        event = waiting.wait(n)[n - 1]
        assert event.retry_in == 2
        assert len(connected) == 0
        clock.step(2)
    api.wait_calls(3)
    h.server.wait_open(1)
    h.server.push(BOT_READY)
    fut.result(WAIT)
    assert h.client.state is S.CONNECTED and len(connected) == 1
    assert [(e.attempt, e.waited, e.retry_in) for e in waiting.events] == [(1, 0, 2), (2, 2, 2)]
    assert all(e.error is not None and e.error.error_code is CCL for e in waiting.events)


def test_slot_wait_gives_up_after_max_wait(make: Make) -> None:
    clock = SteppingClock()
    api = FakeApi(then=CCL)
    h = make(api=api, clock=clock, slot_wait=SlotWaitPolicy(max_wait=10, interval=2))
    waiting: Recorder[WaitingForSlot] = Recorder()
    h.client.events.on_waiting_for_slot.subscribe(waiting, P.IMMEDIATE)
    fut = h.connect_async()
    for n in range(1, 6):
        waiting.wait(n)
        clock.step(2)
    with pytest.raises(ConcurrencyLimitError) as info:
        fut.result(WAIT)
    assert info.value.error_code is CCL
    assert len(waiting) == 5 and waiting.events[-1].waited == 8
    assert api.call_count == 6
    assert h.client.state is S.ERROR


def test_slot_wait_attempt_numbering_restarts_per_connect(make: Make) -> None:
    clock = SteppingClock()
    api = FakeApi([CCL, None, CCL, None])
    h = make(api=api, clock=clock, slot_wait=SlotWaitPolicy(max_wait=10, interval=2))
    waiting: Recorder[WaitingForSlot] = Recorder()
    h.client.events.on_waiting_for_slot.subscribe(waiting, P.IMMEDIATE)
    for round_no in (1, 2):
        fut = h.connect_async()
        waiting.wait(round_no)
        clock.step(2)
        h.server.wait_open(round_no)
        h.server.push(BOT_READY)
        fut.result(WAIT)
        h.client.disconnect()
    assert [(e.attempt, e.waited) for e in waiting.events] == [(1, 0), (1, 0)]


def test_session_duration_cap_warns_then_ends(make: Make) -> None:
    clock = SteppingClock()
    api = FakeApi()
    h = make(api=api, clock=clock, max_session_duration=120.0)
    warnings: Recorder[SessionDurationWarning] = Recorder()
    disconnected: Recorder[Disconnected] = Recorder()
    h.client.events.on_session_duration_warning.subscribe(warnings, P.IMMEDIATE)
    h.client.events.on_disconnected.subscribe(disconnected, P.IMMEDIATE)
    h.connect()
    clock.step(60)
    assert warnings.wait(1)[0].remaining_seconds == 60
    clock.step(50)
    assert warnings.wait(2)[1].remaining_seconds == 10
    assert h.client.state is S.CONNECTED and disconnected.events == []
    clock.step(10)
    end = disconnected.wait(1)[0]
    assert end.error is not None and end.error.error_code is E.SESSION_DURATION_LIMIT_REACHED
    assert state_of(h.client) is S.DISCONNECTED
    assert api.disconnects == ["sess-1"]  # slot freed
    assert h.client.last_error is not None
    assert h.client.last_error.error_code is E.SESSION_DURATION_LIMIT_REACHED
    assert [w.max_session_duration for w in warnings.events] == [120.0, 120.0]


def test_user_idle_warning_then_timeout_elapsed(make: Make) -> None:
    clock = SteppingClock()
    h = make(clock=clock)
    warned: Recorder[UserIdleWarningReceived] = Recorder()
    elapsed: Recorder[UserIdleTimeoutElapsed] = Recorder()
    h.client.events.on_user_idle_warning.subscribe(warned, P.IMMEDIATE)
    h.client.events.on_user_idle_timeout.subscribe(elapsed, P.IMMEDIATE)
    h.connect()
    h.server.push(form_b("user-idle-warning", remaining_seconds=30, message="Are you there?"))
    warning = warned.wait(1)[0]
    assert warning.remaining_seconds == 30 and warning.message == "Are you there?"
    clock.wait_for_deadline(clock.monotonic() + 30)
    assert len(elapsed) == 0
    clock.advance(30)
    event = elapsed.wait(1)[0]
    assert (event.deadline - event.warning_received_at).total_seconds() == 30


@pytest.mark.parametrize("activity", ["send_text", "reset_idle_timer"])
def test_activity_before_idle_deadline_cancels_it(make: Make, activity: str) -> None:
    clock = SteppingClock()
    h = make(clock=clock)
    warned: Recorder[UserIdleWarningReceived] = Recorder()
    elapsed: Recorder[UserIdleTimeoutElapsed] = Recorder()
    h.client.events.on_user_idle_warning.subscribe(warned, P.IMMEDIATE)
    h.client.events.on_user_idle_timeout.subscribe(elapsed, P.IMMEDIATE)
    h.connect()
    h.server.push(form_b("user-idle-warning", remaining_seconds=30))
    warned.wait(1)
    clock.wait_for_deadline(clock.monotonic() + 30)
    if activity == "send_text":
        h.client.send_text("I'm here")
    else:
        h.client.reset_idle_timer()
        h.server.wait_sent("reset-idle-timer")
    clock.wait_for_idle_sleeper()  # the deadline timer is gone
    clock.advance(31)
    round_trip(h)
    assert elapsed.events == []


# ============================================================================ handlers calling the client


def test_disconnect_from_immediate_on_connected_handler(make: Make) -> None:
    h = make()
    returned = threading.Event()
    disconnected: Recorder[Disconnected] = Recorder()

    def on_connected(event: Connected) -> None:
        h.client.disconnect()  # must not join the session thread it is running on
        returned.set()

    h.client.events.on_connected.subscribe(on_connected, P.IMMEDIATE)
    h.client.events.on_disconnected.subscribe(disconnected, P.IMMEDIATE)
    h.connect()
    assert returned.wait(WAIT)
    disconnected.wait(1)
    assert disconnected.events[0].reason is DisconnectReason.CLIENT_INITIATED
    assert h.client.state is S.DISCONNECTED


@pytest.mark.parametrize("policy", [P.BACKGROUND, P.MAIN_THREAD], ids=lambda p: p.name)
def test_queued_handler_can_send_and_wait_for_ack(make: Make, policy: EventDeliveryPolicy) -> None:
    h = make()
    h.server.responders["user_text_message"] = lambda msg: [ack("user_text_message")]
    results: list[Any] = []
    done = threading.Event()

    def on_connected(event: Connected) -> None:
        try:
            results.append(h.client.send_text("from handler"))
            results.append(h.client.send_text("and wait", wait=True))
        except Exception as exc:
            results.append(exc)
        done.set()

    h.client.events.on_connected.subscribe(on_connected, policy)
    h.connect()
    if policy is P.MAIN_THREAD:
        pump_until(h.client, done.is_set)
    assert done.wait(WAIT)
    assert results[0] is None and isinstance(results[1], ServerResponse), results
    assert h.server.wait_sent("user_text_message")["data"]["text"] == "from handler"


@pytest.mark.parametrize("call", ["ask", "send_wait", "wait_for", "connect"])
def test_blocking_call_from_immediate_handler_raises_invalid_state(make: Make, call: str) -> None:
    h = make()
    box: list[BaseException | None] = []
    done = threading.Event()
    calls: dict[str, Callable[[], object]] = {
        "ask": lambda: h.client.ask("hi", timeout=30),
        "send_wait": lambda: h.client.send_text("hi", wait=True, timeout=30),
        "wait_for": lambda: h.client.wait_for(BotText, timeout=30),
        "connect": lambda: h.client.connect(timeout=30),
    }

    def on_connected(event: Connected) -> None:
        try:
            calls[call]()
            box.append(None)
        except BaseException as exc:
            box.append(exc)
        done.set()

    h.client.events.on_connected.subscribe(on_connected, P.IMMEDIATE)
    h.connect()
    assert done.wait(WAIT)  # at once: well inside the 30 s the call was given
    assert isinstance(box[0], InvalidStateError), box
    assert box[0].error_code is E.SESSION_INVALID_STATE
    assert h.client.state is S.CONNECTED


def test_strict_handlers_reraise_at_pump(make: Make) -> None:
    h = make(strict_handlers=True)

    def bad(event: Connected) -> None:
        raise RuntimeError("handler bug")

    h.client.events.on_connected.subscribe(bad, P.MAIN_THREAD)
    h.connect()
    with pytest.raises(RuntimeError, match="handler bug"):
        h.client.pump()
    assert h.client.pump() == 0


def test_close_is_idempotent_and_leaves_no_threads(make: Make) -> None:
    api = FakeApi()
    h = make(api=api, delivery_policy=P.BACKGROUND)
    h.client.events.on_message.subscribe(Recorder[ServerMessage]())
    h.connect()
    h.server.push(rtvi("bot-llm-text", text="x"))  # start the dispatcher too
    threads = [t for t in threading.enumerate() if t.name.startswith("convai-")]
    assert any(t.name.startswith("convai-session-") for t in threads)
    h.client.close()
    h.client.close()
    assert_no_convai_threads(grace=0.5)
    assert h.client.state is S.DISCONNECTED
    assert api.disconnects == ["sess-1"] and api.closed == 1
    with pytest.raises(InvalidStateError):
        h.client.send_text("closed")
    with pytest.raises(InvalidStateError):
        h.client.connect(timeout=1)


def test_no_thread_before_connect(make: Make) -> None:
    h = make()
    assert not [t for t in threading.enumerate() if t.name.startswith("convai-")]
    h.client.close()  # close without ever connecting
    assert h.client.state is S.DISCONNECTED


# ============================================================================ more lifecycle edges


def test_missing_bot_ready_is_connection_timeout(make: Make) -> None:
    clock = SteppingClock()
    api = FakeApi()
    h = make(api=api, clock=clock, connection_timeout=5.0, retry_policy=RetryPolicy(max_attempts=2))
    fut = h.connect_async()
    h.server.wait_open(1)
    clock.step(5.0)  # no bot-ready within connection_timeout
    clock.step(1.0)  # backoff before attempt 2
    h.server.wait_open(2)
    clock.step(5.0)
    with pytest.raises(ConvaiError) as info:
        fut.result(WAIT)
    assert info.value.error_code is E.CONNECTION_TIMEOUT
    assert h.client.state is S.ERROR
    api.wait_disconnects(2)
    assert api.disconnects == ["sess-1", "sess-2"]  # each joined attempt's slot is released


def test_ask_fails_when_session_drops_mid_turn(make: Make) -> None:
    clock = SteppingClock()
    h = make(clock=clock)
    h.connect()
    asking = run_async(lambda: h.client.ask("hello?", timeout=WAIT), "test-ask")
    h.server.wait_sent("user_text_message")
    h.server.push(rtvi("bot-llm-text", text="partial"))
    h.server.drop()
    with pytest.raises(ConvaiError) as info:
        asking.result(WAIT)
    assert info.value.error_code is E.TRANSPORT_SIGNAL_DISCONNECTED


def test_disconnect_during_reconnect_backoff(make: Make) -> None:
    clock = SteppingClock()
    api = FakeApi()
    h = make(api=api, clock=clock)
    reconnecting: Recorder[Reconnecting] = Recorder()
    disconnected: Recorder[Disconnected] = Recorder()
    h.client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
    h.client.events.on_disconnected.subscribe(disconnected, P.IMMEDIATE)
    h.connect()
    h.server.drop()
    delay = reconnecting.wait(1)[0].delay
    clock.wait_for_deadline(clock.monotonic() + delay)
    run_async(h.client.disconnect, "test-disconnect").result(1.0)
    assert h.client.state is S.DISCONNECTED
    clock.advance(60.0)
    round_trip(h)
    assert api.call_count == 1
    assert [d.reason for d in disconnected.events] == [DisconnectReason.CLIENT_INITIATED]


def test_late_connect_result_after_disconnect_is_released(make: Make) -> None:
    api = GateApi()
    h = make(api=api)
    fut = h.connect_async()
    assert api.entered.wait(WAIT)  # POST /connect in flight on convai-connect-*
    h.client.disconnect()  # returns without waiting for the HTTP call
    with pytest.raises(ConvaiError) as info:
        fut.result(WAIT)
    assert info.value.error_code is E.SESSION_CANCELLED
    api.gate.set()
    api.wait_disconnects(1)  # the late session is disconnected, freeing the slot
    assert api.disconnects == ["sess-1"]
    assert h.client.state is S.DISCONNECTED


def test_late_connect_result_after_close_is_released(make: Make) -> None:
    api = GateApi()
    h = make(api=api, close_timeout=0.2)
    fut = h.connect_async()
    assert api.entered.wait(WAIT)
    h.client.close()  # bounded: does not wait for the in-flight HTTP call
    with pytest.raises(ConvaiError):
        fut.result(WAIT)
    api.gate.set()
    api.wait_disconnects(1, timeout=2.0)


def test_close_from_immediate_handler(make: Make) -> None:
    api = FakeApi()
    h = make(api=api)
    returned = threading.Event()

    def on_connected(event: Connected) -> None:
        h.client.close()  # on the session thread: must not join itself
        returned.set()

    h.client.events.on_connected.subscribe(on_connected, P.IMMEDIATE)
    h.connect()
    assert returned.wait(WAIT)
    api.wait_disconnects(1)
    assert_no_convai_threads()
    assert h.client.state is S.DISCONNECTED


def test_close_from_background_handler(make: Make) -> None:
    api = FakeApi()
    h = make(api=api)
    returned = threading.Event()

    def on_connected(event: Connected) -> None:
        h.client.close()  # on the dispatcher: must not join itself
        returned.set()

    h.client.events.on_connected.subscribe(on_connected, P.BACKGROUND)
    h.connect()
    assert returned.wait(WAIT)
    assert_no_convai_threads()
    assert h.client.state is S.DISCONNECTED and api.disconnects == ["sess-1"]


def test_no_duration_warning_after_reconnect_failed(make: Make) -> None:
    clock = SteppingClock()
    api = FakeApi([None], then=SU)
    h = make(api=api, clock=clock, max_session_duration=120.0)
    warnings: Recorder[SessionDurationWarning] = Recorder()
    errored: Recorder[SessionStateChanged] = Recorder(lambda e: e.new_state is S.ERROR)
    reconnecting: Recorder[Reconnecting] = Recorder()
    h.client.events.on_session_duration_warning.subscribe(warnings, P.IMMEDIATE)
    h.client.events.on_session_state_changed.subscribe(errored, P.IMMEDIATE)
    h.client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
    h.connect()
    h.server.drop()
    for n in (1, 2, 3):
        clock.step(reconnecting.wait(n)[n - 1].delay)
    errored.wait(1)
    clock.advance(200.0)
    round_trip(h)  # lets any timer that is still armed fire
    assert h.client.state is S.ERROR
    assert warnings.events == []


def test_idle_deadline_cleared_by_reconnect(make: Make) -> None:
    clock = SteppingClock()
    h = make(clock=clock)
    warned: Recorder[UserIdleWarningReceived] = Recorder()
    elapsed: Recorder[UserIdleTimeoutElapsed] = Recorder()
    reconnected: Recorder[Reconnected] = Recorder()
    reconnecting: Recorder[Reconnecting] = Recorder()
    h.client.events.on_user_idle_warning.subscribe(warned, P.IMMEDIATE)
    h.client.events.on_user_idle_timeout.subscribe(elapsed, P.IMMEDIATE)
    h.client.events.on_reconnected.subscribe(reconnected, P.IMMEDIATE)
    h.client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
    h.connect()
    h.server.push(form_b("user-idle-warning", remaining_seconds=30))
    warned.wait(1)
    h.server.drop()
    clock.step(reconnecting.wait(1)[0].delay)
    h.server.wait_open(2)
    h.server.push(BOT_READY)
    reconnected.wait(1)
    clock.advance(60.0)
    round_trip(h)
    assert h.client.state is S.CONNECTED
    assert elapsed.events == []


def test_usage_limit_error_published_once(make: Make) -> None:
    h = make()
    errors: Recorder[SessionError] = Recorder()
    disconnected: Recorder[Disconnected] = Recorder()
    h.client.events.on_session_error.subscribe(errors, P.IMMEDIATE)
    h.client.events.on_disconnected.subscribe(disconnected, P.IMMEDIATE)
    h.connect()
    h.server.push(form_b("usage-limit-reached", quota_type="minutes"))
    h.server.push("not json")
    h.server.close(1008, "Usage limit exceeded")
    disconnected.wait(1)
    codes = [e.error_code for e in errors.events]
    assert codes.count(E.SERVER_USAGE_LIMIT_REACHED) == 1, codes


def test_fire_and_forget_ack_is_not_matched_to_a_later_wait() -> None:
    """server-response has no id: a wait=True send must get its own ack, not an earlier send's."""
    h = Harness()
    try:
        h.connect()

        def both_acks_after_second(msg: dict[str, Any]) -> list[dict[str, Any]]:
            if msg["data"].get("text") != "second":
                return []  # the first send's ack comes late, after the second send
            return [{"type": "server-response", "event_type": "context-update", "status": "success",
                     "extras": {"revision": n}} for n in (1, 2)]

        h.server.responders["context-update"] = both_acks_after_second
        assert h.client.update_context("first", wait=False) is None
        ack = h.client.update_context("second", wait=True)
        assert isinstance(ack, ServerResponse) and ack.extras is not None and ack.extras["revision"] == 2
    finally:
        h.close()
