"""End to end (issue 6): concurrency slots, "please wait", session duration caps, idle, usage limits.

Real sockets on 127.0.0.1 against the embedded simulator, with short configured durations. Nothing
sleeps: every wait is on an event (Recorder / wait_for / Simulator.wait_for_*).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from convai_sync import (
    ConcurrencyLimitError,
    ConvaiClient,
    ConvaiError,
    Disconnected,
    DisconnectReason,
    EventDeliveryPolicy,
    ReconnectPolicy,
    RetryPolicy,
    SessionDurationWarning,
    SessionError,
    SessionErrorStage,
    SessionState,
    SlotWaitPolicy,
    UsageLimitError,
    UsageLimitReached,
    UserIdleTimeoutElapsed,
    UserIdleWarningReceived,
    WaitingForSlot,
)
from convai_sync.testing import Recorder
from simulator import Simulator
from tests.narrowing import state_of

pytestmark = pytest.mark.timeout(30)

IMMEDIATE = EventDeliveryPolicy.IMMEDIATE
FAST_RETRY = RetryPolicy(delays=(0, 0.01, 0.01, 0.01))
FAST_RECONNECT = ReconnectPolicy(delays=(0.01,), server_shutdown_delay=0.05)
CONCURRENCY = "connection.connect_concurrency_limit_reached"


def client_for(sim: Simulator, **overrides: Any) -> ConvaiClient:
    fields: dict[str, Any] = {"retry_policy": FAST_RETRY, "reconnect_policy": FAST_RECONNECT}
    fields.update(overrides)
    return ConvaiClient(sim.client_config(**fields))


def on(channel: Any) -> Recorder[Any]:
    rec: Recorder[Any] = Recorder()
    channel.subscribe(rec, IMMEDIATE)
    return rec


class Caller:
    """Runs a blocking SDK call on a plain (non convai-/sim-) thread and keeps its outcome."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._fn = fn
        self.thread = threading.Thread(target=self._run, name="test-caller")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = 10.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the blocking call did not return"


# ============================================================================ concurrency


def test_concurrency_limit_without_slot_wait_raises_after_retry_attempts() -> None:
    with Simulator(concurrency_limit=1) as sim, client_for(sim) as a, client_for(sim) as b:
        a.connect(timeout=10)
        errors = on(b.events.on_session_error)
        waits = on(b.events.on_waiting_for_slot)
        with pytest.raises(ConcurrencyLimitError) as info:
            b.connect(timeout=10)
        err = info.value.error
        assert info.value.error_code == CONCURRENCY
        assert err.http_status_code == 429 and err.stage is SessionErrorStage.CONNECT_API
        assert errors.wait(1) == [err]  # one error, after the last attempt
        assert waits.events == []  # no SlotWaitPolicy: no "please wait"
        diag = b.diagnostics()
        assert diag["connect_attempts"] == 4  # RetryPolicy default: the code is auto-retried
        assert diag["retry_delays"] == [0, 0.01, 0.01, 0.01]
        assert b.state is SessionState.ERROR
        assert a.state is SessionState.CONNECTED and sim.slots_in_use() == 1


def test_slot_wait_shows_please_wait_until_the_slot_frees() -> None:
    with (Simulator(concurrency_limit=1) as sim,
          client_for(sim) as a, client_for(sim, slot_wait=SlotWaitPolicy(max_wait=5, interval=0.05)) as b):
        a.connect(timeout=10)
        waits = on(b.events.on_waiting_for_slot)
        connected = on(b.events.on_connected)
        errors = on(b.events.on_session_error)
        caller = Caller(lambda: b.connect(timeout=10))
        try:
            waits.wait(2)  # "Please wait…" is showing while A holds the slot
            assert connected.events == [] and b.state is SessionState.CONNECTING
            a.disconnect()
        finally:
            caller.join()
        assert caller.error is None
        assert state_of(b) is SessionState.CONNECTED
        done = connected.wait(1)[0]
        seen: list[WaitingForSlot] = list(waits.events)
        assert len(seen) >= 2
        assert [w.attempt for w in seen] == list(range(1, len(seen) + 1))
        assert [w.waited for w in seen] == pytest.approx([0.05 * i for i in range(len(seen))])
        assert all(w.retry_in == pytest.approx(0.05) for w in seen)
        assert all(w.error is not None and w.error.error_code == CONCURRENCY for w in seen)
        assert all(w.timestamp <= done.timestamp for w in seen)
        assert errors.events == []  # waiting for a slot is not an error
        assert b.diagnostics()["connect_attempts"] == len(seen) + 1
        assert sim.slots_in_use() == 1


def test_slot_wait_gives_up_with_concurrency_limit_error_after_max_wait() -> None:
    with (Simulator(concurrency_limit=1) as sim,
          client_for(sim) as a, client_for(sim, slot_wait=SlotWaitPolicy(max_wait=0.1, interval=0.05)) as b):
        a.connect(timeout=10)
        waits = on(b.events.on_waiting_for_slot)
        errors = on(b.events.on_session_error)
        with pytest.raises(ConcurrencyLimitError) as info:
            b.connect(timeout=10)
        assert info.value.error_code == CONCURRENCY
        assert not info.value.error.is_recoverable  # the app's wait is over
        assert [(w.attempt, w.waited) for w in waits.events] == [(1, 0.0), (2, pytest.approx(0.05))]
        assert errors.wait(1) == [info.value.error]
        assert b.state is SessionState.ERROR
        assert b.diagnostics()["connect_attempts"] == 3
        assert sim.slots_in_use() == 1


def test_disconnect_during_slot_wait_returns_promptly_and_cancels_connect() -> None:
    # A long interval: disconnect() must interrupt the wait, not sit it out.
    with (Simulator(concurrency_limit=1) as sim,
          client_for(sim) as a, client_for(sim, slot_wait=SlotWaitPolicy(max_wait=30, interval=5)) as b):
        a.connect(timeout=10)
        waits = on(b.events.on_waiting_for_slot)
        disconnected = on(b.events.on_disconnected)
        caller = Caller(lambda: b.connect(timeout=20))
        try:
            waits.wait(1)
            started = time.monotonic()
            b.disconnect()
            took = time.monotonic() - started
        finally:
            caller.join()
        assert took < 1.0
        assert isinstance(caller.error, ConvaiError)
        assert caller.error.error_code == "session.cancelled"
        assert b.state is SessionState.DISCONNECTED
        assert disconnected.wait(1)[0].reason is DisconnectReason.CLIENT_INITIATED
        assert b.diagnostics()["connect_attempts"] == 1  # no attempt after the cancel
        assert len(waits.events) == 1
        assert a.state is SessionState.CONNECTED and sim.slots_in_use() == 1


# ============================================================================ duration cap


def test_duration_cap_warns_then_ends_the_session_and_frees_the_slot() -> None:
    with (Simulator() as sim,
          client_for(sim, max_session_duration=0.6, session_duration_warnings=(0.4, 0.2)) as client):
        warnings = on(client.events.on_session_duration_warning)
        disconnected = on(client.events.on_disconnected)
        errors = on(client.events.on_session_error)
        client.connect(timeout=10)
        assert sim.slots_in_use() == 1
        disc: Disconnected = disconnected.wait(1, timeout=5)[0]
        seen: list[SessionDurationWarning] = list(warnings.events)
        assert [w.remaining_seconds for w in seen] == [0.4, 0.2]
        assert all(w.max_session_duration == 0.6 for w in seen)
        assert seen[-1].timestamp <= disc.timestamp
        assert disc.error is not None
        assert disc.error.error_code == "session.duration_limit_reached"
        assert errors.events == [disc.error]
        assert client.state is SessionState.DISCONNECTED
        assert client.diagnostics()["reconnect_attempts"] == 0
        sim.wait_for_slots(0)  # transport closed and /disconnect called


@pytest.mark.parametrize("reset", [False, True], ids=["kept", "reset"])
def test_duration_clock_across_a_reconnect(reset: bool) -> None:
    with Simulator() as sim, client_for(sim, max_session_duration=1.0, session_duration_warnings=(0.5,),
                    reset_duration_on_reconnect=reset) as client:
        connected = on(client.events.on_connected)
        warnings = on(client.events.on_session_duration_warning)
        reconnected = on(client.events.on_reconnected)
        disconnected = on(client.events.on_disconnected)
        client.connect(timeout=10)
        warnings.wait(1)  # halfway through the cap
        sim.inject(DisconnectReason.SIGNAL_CLOSE)
        reconnected.wait(1)
        disc: Disconnected = disconnected.wait(1, timeout=5)[0]
        assert disc.error is not None and disc.error.error_code == "session.duration_limit_reached"
        lasted = (disc.timestamp - connected.events[0].timestamp).total_seconds()
        if reset:
            assert lasted >= 1.4  # ~0.5 s before the drop + a fresh 1.0 s cap
        else:
            assert lasted < 1.3  # the cap counts from the first connect


# ============================================================================ idle


def idle_sim() -> Simulator:
    return Simulator(idle_timeout=1.0, idle_warning_lead=0.6, idle_warning_interval=0.3)


def test_idle_warning_then_reset_postpones_the_server_close() -> None:
    with idle_sim() as sim, client_for(sim) as client:
        warnings = on(client.events.on_user_idle_warning)
        disconnected = on(client.events.on_disconnected)
        client.connect(timeout=10)
        first: UserIdleWarningReceived = warnings.wait(1)[0]
        original_close = time.monotonic() + 0.6  # the server closes 0.6 s after its first warning
        assert first.remaining_seconds == 1  # 0.6 s announced in whole seconds, rounded up
        ack = client.reset_idle_timer(wait=True)
        assert ack is not None and ack.event_type == "reset-idle-timer" and ack.status == "success"
        assert sim.wait_for_received(client.session_id or "", "reset-idle-timer") is not None
        warnings.wait(3)  # the countdown restarted: two more warnings, 0.4 s and 0.7 s after the reset
        assert time.monotonic() > original_close
        assert disconnected.events == [] and client.state is SessionState.CONNECTED
        disc = disconnected.wait(1, timeout=5)[0]
        assert disc.reason is DisconnectReason.ROOM_DELETED
        assert len(warnings.events) == 3


def test_idle_without_reset_the_server_closes_the_session() -> None:
    with idle_sim() as sim, client_for(sim) as client:
        warnings = on(client.events.on_user_idle_warning)
        disconnected = on(client.events.on_disconnected)
        reconnecting = on(client.events.on_reconnecting)
        client.connect(timeout=10)
        disc: Disconnected = disconnected.wait(1, timeout=5)[0]
        assert [w.remaining_seconds for w in warnings.events] == [1, 1]  # 0.6 s and 0.3 s, rounded up
        assert disc.reason is DisconnectReason.ROOM_DELETED  # WS close 1000 "Idle timeout"
        assert disc.error is not None and disc.error.error_code == "session.idle_timeout"
        assert client.state is SessionState.DISCONNECTED
        assert client.last_disconnect_reason is DisconnectReason.ROOM_DELETED
        assert reconnecting.events == [] and client.diagnostics()["reconnect_attempts"] == 0
        sim.wait_for_slots(0)


def test_idle_server_close_reports_idle_timeout_and_the_local_deadline() -> None:
    with idle_sim() as sim, client_for(sim) as client:
        warnings = on(client.events.on_user_idle_warning)
        disconnected = on(client.events.on_disconnected)
        timeouts = on(client.events.on_user_idle_timeout)
        errors = on(client.events.on_session_error)
        client.connect(timeout=10)
        disc: Disconnected = disconnected.wait(1, timeout=5)[0]
        # Reported before the disconnect, for the last warning's deadline.
        elapsed: UserIdleTimeoutElapsed = timeouts.wait(1)[0]
        assert elapsed.warning_received_at == warnings.events[-1].timestamp
        assert elapsed.timestamp <= disc.timestamp
        assert disc.error is not None and disc.error.error_code == "session.idle_timeout"
        assert [e.error_code for e in errors.events] == ["session.idle_timeout"]
        assert not errors.events[0].is_recoverable


def test_local_idle_deadline_fires_when_the_server_stays_silent_and_reset_cancels_it() -> None:
    with Simulator() as sim, client_for(sim) as client:
        warnings = on(client.events.on_user_idle_warning)
        timeouts = on(client.events.on_user_idle_timeout)
        client.connect(timeout=10)
        sid = client.session_id or ""
        sim.send_idle_warning(sid, 1)
        first: UserIdleWarningReceived = warnings.wait(1)[0]
        assert first.remaining_seconds == 1
        client.reset_idle_timer()  # cancels the local deadline of the first warning
        sim.send_idle_warning(sid, 1)
        second: UserIdleWarningReceived = warnings.wait(2)[1]
        elapsed: UserIdleTimeoutElapsed = timeouts.wait(1, timeout=5)[0]
        # The first deadline (earlier) did not fire: the one event belongs to the second warning.
        assert elapsed.warning_received_at == second.timestamp
        assert elapsed.deadline == second.timestamp + timedelta(seconds=1)
        assert len(timeouts.events) == 1
        assert client.state is SessionState.CONNECTED  # the server never closed


# ============================================================================ usage limit


def _assert_usage_ended(client: ConvaiClient, usage: Recorder[UsageLimitReached], errors: Recorder[SessionError],
                        disconnected: Recorder[Disconnected], quota_type: str) -> None:
    event: UsageLimitReached = usage.wait(1)[0]
    assert event.quota_type == quota_type and event.message
    disc: Disconnected = disconnected.wait(1)[0]
    assert [e.error_code for e in errors.events] == ["server.usage_limit_reached"]
    err = errors.events[0]
    assert not err.is_recoverable and err.stage is SessionErrorStage.RUNTIME
    assert disc.error is not None and disc.error.error_code == "server.usage_limit_reached"
    assert client.state is SessionState.DISCONNECTED
    diag = client.diagnostics()
    assert diag["reconnect_attempts"] == 0 and diag["connect_attempts"] == 1  # no futile retries
    with pytest.raises(UsageLimitError):
        client.send_text("one more?")
    with pytest.raises(UsageLimitError):
        client.send_text("one more?", wait=True)


def test_usage_quota_second_ask_hits_the_limit() -> None:
    with Simulator(usage_quota=1) as sim, client_for(sim) as client:
        usage = on(client.events.on_usage_limit_reached)
        errors = on(client.events.on_session_error)
        disconnected = on(client.events.on_disconnected)
        client.connect(timeout=10)
        assert "first" in client.ask("first question", timeout=10).text
        with pytest.raises(UsageLimitError) as info:
            client.ask("second question", timeout=10)  # pending when the limit hits
        assert info.value.error_code == "server.usage_limit_reached"
        _assert_usage_ended(client, usage, errors, disconnected, "interaction")
        sim.wait_for_slots(0)


def test_send_usage_limit_minutes_fails_a_pending_ask() -> None:
    gate = threading.Event()

    def slow(text: str) -> str:
        gate.wait(10)
        return f"late reply to {text}"

    with Simulator(responder=slow) as sim:
        try:
            with client_for(sim) as client:
                usage = on(client.events.on_usage_limit_reached)
                errors = on(client.events.on_session_error)
                disconnected = on(client.events.on_disconnected)
                client.connect(timeout=10)
                sid = client.session_id or ""
                caller = Caller(lambda: client.ask("are you there?", timeout=10))
                try:
                    sim.wait_for_received(sid, "user_text_message")
                    sim.send_usage_limit(sid, "minutes")
                finally:
                    caller.join()
                assert isinstance(caller.error, UsageLimitError)
                assert caller.error.error_code == "server.usage_limit_reached"
                _assert_usage_ended(client, usage, errors, disconnected, "minutes")
                sim.wait_for_slots(0)
        finally:
            gate.set()

