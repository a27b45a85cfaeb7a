"""End to end: convai_sync against the in-process simulator over real sockets on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from convai_sync import (
    BotEmotion,
    BotReady,
    BotText,
    BotTurnCompleted,
    ConfigurationError,
    ConvaiClient,
    ConvaiError,
    Disconnected,
    EventDeliveryPolicy,
    InvalidStateError,
    ServerMessage,
    ServerResponse,
    SessionError,
    SessionState,
    SessionStateChanged,
)
from convai_sync.testing import Recorder
from simulator import Simulator
from tests.narrowing import state_of

pytestmark = pytest.mark.timeout(20)

POLICIES = list(EventDeliveryPolicy)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as server:
        yield server


def _pump_until(client: ConvaiClient, done: threading.Event, timeout: float = 5.0) -> None:
    """Play the host's tick: pump MAIN_THREAD events until ``done`` (bounded)."""
    end = time.monotonic() + timeout
    while not done.is_set() and time.monotonic() < end:
        client.pump()
        done.wait(0.005)  # the host's frame pacing, not synchronisation
    client.pump()
    assert done.is_set(), "event not delivered in time"


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_connect_ask_disconnect_under_each_policy(sim: Simulator, policy: EventDeliveryPolicy) -> None:
    states: Recorder[SessionStateChanged] = Recorder()
    messages: Recorder[ServerMessage] = Recorder()
    ready: Recorder[BotReady] = Recorder()
    disconnected: Recorder[Disconnected] = Recorder()
    turn_done = threading.Event()
    with ConvaiClient(sim.client_config(delivery_policy=policy)) as client:
        client.events.on_session_state_changed.subscribe(states)
        client.events.on_message.subscribe(messages)
        client.events.on_bot_ready.subscribe(ready)
        client.events.on_disconnected.subscribe(disconnected)
        client.events.on_message.subscribe(lambda m: turn_done.set() if isinstance(m, BotTurnCompleted) else None)

        client.connect(timeout=10)
        assert client.state is SessionState.CONNECTED
        assert client.is_bot_ready
        assert client.session_id == sim.wait_for_session().session_id

        reply = client.ask("Hello there", timeout=10)
        assert "Hello there" in reply.text
        assert reply.emotion is not None
        assert len(reply.chunks) > 1 and "".join(reply.chunks) == reply.text

        if policy is EventDeliveryPolicy.MAIN_THREAD:
            _pump_until(client, turn_done)
        else:
            turn_done.wait(5)
        texts = [m.text for m in messages.events if isinstance(m, BotText)]
        assert "".join(texts) == reply.text
        assert any(isinstance(m, BotEmotion) for m in messages.events)
        expected_thread = {EventDeliveryPolicy.MAIN_THREAD: threading.current_thread().name,
                           EventDeliveryPolicy.IMMEDIATE: "convai-session-",
                           EventDeliveryPolicy.BACKGROUND: "convai-dispatch-"}[policy]
        assert all(name.startswith(expected_thread) for name in messages.threads)

        client.disconnect()
        assert state_of(client) is SessionState.DISCONNECTED
        client.pump()  # MAIN_THREAD: deliver what disconnect() queued (no-op for other policies)
        disconnected.wait(1)
        states.wait(4)
    transitions = [(s.old_state, s.new_state) for s in states.events]
    assert transitions == [
        (SessionState.DISCONNECTED, SessionState.CONNECTING),
        (SessionState.CONNECTING, SessionState.CONNECTED),
        (SessionState.CONNECTED, SessionState.DISCONNECTING),
        (SessionState.DISCONNECTING, SessionState.DISCONNECTED),
    ]
    assert states.events[1].is_connection_established
    assert len(ready.events) == 1
    assert disconnected.events[0].error is None


def test_disconnect_frees_the_slot_via_post_disconnect() -> None:
    with Simulator(concurrency_limit=1) as sim:
        with ConvaiClient(sim.client_config()) as first:
            first.connect(timeout=10)
            assert sim.slots_in_use() == 1
            first.disconnect()
            sim.wait_for_slots(0)
        with ConvaiClient(sim.client_config()) as second:
            second.connect(timeout=10)
            assert second.state is SessionState.CONNECTED


def test_wait_true_returns_the_ack_and_error_ack_raises(sim: Simulator) -> None:
    acks: Recorder[ServerResponse] = Recorder()
    with ConvaiClient(sim.client_config()) as client:
        client.events.on_server_response.subscribe(acks, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=10)
        ack = client.update_context("The player holds a torch.", wait=True)
        assert ack is not None and ack.status == "success" and ack.event_type == "context-update"
        assert ack.max_tokens == 50_000 and ack.remaining_tokens is not None
        tts = client.toggle_tts(False, wait=True)
        assert tts is not None and tts.extras is not None and tts.extras.get("enabled") is False
        assert client.send_text("fire and forget") is None
        keys = client.update_template_keys({"player": "Ada"}, wait=True)
        assert keys is not None and keys.status == "success"
        # An empty trigger name is rejected locally before anything is sent.
        with pytest.raises(ValueError):
            client.send_trigger()
        # Four sends, four acks. wait=True returns when the reader completes the ack, which can be
        # before the session thread publishes it on on_server_response: wait for all four.
        acks.wait(4)
    assert {a.event_type for a in acks.events} >= {"context-update", "tts-toggle", "update-template-keys"}


def test_sends_before_connected_raise_invalid_state(sim: Simulator) -> None:
    with ConvaiClient(sim.client_config()) as client:
        with pytest.raises(InvalidStateError) as info:
            client.send_text("too early")
        assert info.value.error_code == "session.invalid_state"
        with pytest.raises(InvalidStateError):
            client.ask("too early")


@pytest.mark.parametrize(("field", "code"), [("api_key", "config.api_key_missing"),
                                              ("character_id", "config.character_id_missing")])
def test_config_errors_fire_before_any_traffic(sim: Simulator, field: str, code: str) -> None:
    errors: Recorder[SessionError] = Recorder()
    with ConvaiClient(sim.client_config(**{field: ""})) as client:
        client.events.on_session_error.subscribe(errors, EventDeliveryPolicy.IMMEDIATE)
        with pytest.raises(ConfigurationError) as info:
            client.connect(timeout=5)
        assert info.value.error_code == code
        assert client.state is SessionState.DISCONNECTED
    assert [e.error_code for e in errors.events] == [code]
    assert sim.slots_in_use() == 0 and sim.sessions == []


def test_failed_connect_raises_and_fires_session_error(sim: Simulator) -> None:
    errors: Recorder[SessionError] = Recorder()
    with ConvaiClient(sim.client_config(api_key="wrong-key")) as client:
        client.events.on_session_error.subscribe(errors, EventDeliveryPolicy.IMMEDIATE)
        with pytest.raises(ConvaiError) as info:
            client.connect(timeout=10)
        assert info.value.error_code == "connection.connect_invalid_api_key"
        assert info.value.error.http_status_code == 401
        assert client.state is SessionState.ERROR
        assert "wrong-key" not in str(info.value) and "wrong-key" not in repr(client.diagnostics())
    assert [e.error_code for e in errors.events] == ["connection.connect_invalid_api_key"]


def test_raising_handler_is_logged_and_contained(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    def boom(event: object) -> None:
        raise RuntimeError("handler bug")

    after: Recorder[BotReady] = Recorder()
    with caplog.at_level(logging.ERROR, logger="convai_sync"), ConvaiClient(sim.client_config()) as client:
        client.events.on_bot_ready.subscribe(boom, EventDeliveryPolicy.IMMEDIATE)
        client.events.on_bot_ready.subscribe(after, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=10)
        assert client.ask("still alive?", timeout=10).text
        assert client.diagnostics()["events"]["handler_errors"] == 1
    assert len(after.events) == 1
    assert any("handler bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_strict_handlers_reraise_on_the_callers_thread(sim: Simulator) -> None:
    def boom(event: object) -> None:
        raise RuntimeError("strict bug")

    client = ConvaiClient(sim.client_config(strict_handlers=True))
    try:
        client.events.on_connected.subscribe(boom, EventDeliveryPolicy.IMMEDIATE)
        with pytest.raises(RuntimeError, match="strict bug"):
            client.connect(timeout=10)
    finally:
        client.close()


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_disconnect_from_inside_a_handler(sim: Simulator, policy: EventDeliveryPolicy) -> None:
    gone: Recorder[Disconnected] = Recorder()
    with ConvaiClient(sim.client_config()) as client:
        client.events.on_disconnected.subscribe(gone, EventDeliveryPolicy.IMMEDIATE)
        client.events.on_connected.subscribe(lambda e: client.disconnect(), policy)
        client.connect(timeout=10)
        if policy is EventDeliveryPolicy.MAIN_THREAD:
            client.pump()
        gone.wait(1, timeout=5)
        assert client.state is SessionState.DISCONNECTED
    sim.wait_for_slots(0)


def test_reconnect_after_server_drop_resumes_the_conversation(sim: Simulator) -> None:
    from convai_sync import DisconnectReason, Reconnected, Reconnecting, ReconnectPolicy

    config = sim.client_config(reconnect_policy=ReconnectPolicy(delays=(0.05,)))
    reconnecting: Recorder[Reconnecting] = Recorder()
    reconnected: Recorder[Reconnected] = Recorder()
    disconnected: Recorder[Disconnected] = Recorder()
    with ConvaiClient(config) as client:
        client.events.on_reconnecting.subscribe(reconnecting, EventDeliveryPolicy.IMMEDIATE)
        client.events.on_reconnected.subscribe(reconnected, EventDeliveryPolicy.IMMEDIATE)
        client.events.on_disconnected.subscribe(disconnected, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=10)
        csid, first_session = client.character_session_id, client.session_id
        client.ask("remember me", timeout=10)
        sim.inject(DisconnectReason.SIGNAL_CLOSE)
        reconnected.wait(1, timeout=10)
        assert client.state is SessionState.CONNECTED
        assert client.character_session_id == csid
        assert client.session_id != first_session
        assert "turn 2" in client.ask("again", timeout=10).text  # history resumed
    assert reconnecting.events[0].attempt == 1 and reconnecting.events[0].reason is DisconnectReason.SIGNAL_CLOSE
    assert [d.reason for d in disconnected.events] == [DisconnectReason.CLIENT_INITIATED]


def test_abrupt_drop_is_unknown_reason_and_is_retried(sim: Simulator) -> None:
    from convai_sync import DisconnectReason, Reconnected, Reconnecting, ReconnectPolicy

    reconnecting: Recorder[Reconnecting] = Recorder()
    with ConvaiClient(sim.client_config(reconnect_policy=ReconnectPolicy(delays=(0.05,)))) as client:
        client.events.on_reconnecting.subscribe(reconnecting, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=10)
        sim.inject(DisconnectReason.UNKNOWN_REASON)
        client.wait_for(Reconnected, timeout=10)
    assert reconnecting.events[0].reason is DisconnectReason.UNKNOWN_REASON
    assert reconnecting.events[0].error is not None
    assert reconnecting.events[0].error.error_code == "transport.signal_disconnected"


def test_close_is_idempotent_and_leaves_no_threads(sim: Simulator) -> None:
    client = ConvaiClient(sim.client_config())
    client.connect(timeout=10)
    client.close()
    client.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("convai-") and t.is_alive()]
    with pytest.raises(InvalidStateError):
        client.connect()
