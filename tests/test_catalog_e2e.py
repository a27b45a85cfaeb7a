"""End to end over the whole error catalog and every disconnect reason (issue 4).

Every ``ErrorCode`` member and every ``DisconnectReason`` (0..16) is produced against the real
simulator over sockets on 127.0.0.1 (or, for the few codes no Python audio-only client can ever
produce, shown to be refused by ``Simulator.inject`` with their catalog row checked), and the test
asserts the event that fired, the state reached, ``is_recoverable``, ``stage`` and the number of
connect / reconnect attempts.

The expected tables below are written from PROTOCOL.md §1.5, §2.2 and §2.6 (and issue 6 for the
client-side codes the SDK adds); they are NOT read from ``convai_sync.errors.CATALOG``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from convai_sync import (
    ConcurrencyLimitError,
    ConfigurationError,
    Connected,
    ConvaiClient,
    ConvaiError,
    Disconnected,
    DisconnectReason,
    ErrorCode,
    EventDeliveryPolicy,
    InvalidStateError,
    PipelineSessionError,
    Reconnected,
    Reconnecting,
    ReconnectPolicy,
    RetryPolicy,
    SessionError,
    SessionErrorStage,
    SessionState,
    SessionStateChanged,
    UsageLimitError,
    UsageLimitReached,
)
from convai_sync.testing import Recorder
from convai_sync.transports.websocket import WebSocketTransport
from simulator import Simulator
from tests.narrowing import state_of

pytestmark = pytest.mark.timeout(30)

IMMEDIATE = EventDeliveryPolicy.IMMEDIATE
CFG = SessionErrorStage.CONFIGURATION
API = SessionErrorStage.CONNECT_API
TRN = SessionErrorStage.TRANSPORT
RUN = SessionErrorStage.RUNTIME
REC = SessionErrorStage.SESSION_RECOVERY

FAST_RETRY = RetryPolicy(delays=(0, 0.01, 0.01, 0.01))
FAST_RECONNECT = ReconnectPolicy(delays=(0.01,), server_shutdown_delay=0.05)
#: RetryPolicy's documented default number of connect attempts (PROTOCOL.md §2.7).
DEFAULT_CONNECT_ATTEMPTS = 4

# ---------------------------------------------------------------------------------------------
# Expected facts, written from PROTOCOL.md §2.2: code -> (recoverable per the Unity source column,
# on seed 003's auto-retry list, stage). The last three rows are client-side codes from issues 4/6.
# ---------------------------------------------------------------------------------------------
DOC: dict[str, tuple[bool, bool, SessionErrorStage]] = {
    "config.api_key_missing": (False, False, CFG),
    "config.character_id_missing": (False, False, CFG),
    "config.auth_token_provider_missing": (False, False, CFG),
    "config.auth_token_endpoint_invalid": (False, False, CFG),
    "config.auth_token_mode_required": (False, False, CFG),
    "connection.connect_invalid_api_key": (False, False, API),
    "connection.auth_failed": (False, False, API),
    "connection.invalid_token": (False, False, API),
    "connection.auth_token_fetch_failed": (True, False, API),
    "connection.connect_invalid_session_id": (False, False, API),
    "connection.connect_character_not_found": (False, False, API),
    "connection.connect_realtime_not_allowed": (False, False, API),
    "connection.connect_multi_character_not_allowed": (False, False, API),
    "connection.connect_multi_character_roster_limit": (False, False, API),
    "connection.connect_concurrency_limit_reached": (True, True, API),
    "connection.connect_speaker_limit_reached": (False, False, API),
    "connection.connect_bot_start_failed": (True, True, API),
    "connection.connect_unhandled_server_exception": (True, True, API),
    "connection.connect_validation_error": (False, False, API),
    "connection.timeout": (True, True, API),  # §2.2 stage "ConnectApi / Transport"
    "connection.network_error": (True, True, API),
    "connection.rate_limited": (True, True, API),
    "connection.service_unavailable": (True, True, API),
    "connection.server_error": (True, True, API),
    "connection.not_found": (False, False, API),
    "connection.bad_request": (False, False, API),
    "connection.failed": (False, False, API),
    "transport.ice_failed": (True, True, TRN),
    "transport.peer_connection_failed": (False, False, TRN),
    "transport.livekit_error": (False, False, TRN),
    "transport.signal_disconnected": (True, True, TRN),
    "audio.mic_unavailable": (False, False, RUN),
    "audio.mic_permission_denied": (False, False, RUN),
    "audio.mic_publish_failed": (False, False, RUN),
    "server.usage_limit_reached": (False, False, RUN),
    "server.fatal_error": (False, False, RUN),
    "server.error": (True, True, RUN),
    "session.token_expired": (False, False, REC),
    "session.invalid_state": (False, False, RUN),
    "session.cancelled": (False, False, RUN),
    "protocol.message_invalid": (False, False, RUN),
    "protocol.parse_failed": (False, False, RUN),
    # client-side additions (not in Convai's table): every other bad config value, issue 6's caps
    "config.invalid": (False, False, CFG),
    "session.duration_limit_reached": (False, False, RUN),
    "session.idle_timeout": (False, False, RUN),
}

#: Connect-API codes (PROTOCOL.md §1.5): injected code -> (code the client's classifier reports,
#: HTTP status on the wire or None). The fallback-only codes come back as their specific sibling
#: ("Consequence" paragraph of §1.5).
CONNECT: dict[str, tuple[str, int | None]] = {
    "connection.connect_invalid_api_key": ("connection.connect_invalid_api_key", 401),
    "connection.invalid_token": ("connection.connect_invalid_api_key", 401),
    "connection.auth_failed": ("connection.connect_realtime_not_allowed", 403),
    "connection.connect_invalid_session_id": ("connection.connect_invalid_session_id", 400),
    "connection.connect_character_not_found": ("connection.connect_character_not_found", 404),
    "connection.not_found": ("connection.connect_character_not_found", 404),
    "connection.connect_realtime_not_allowed": ("connection.connect_realtime_not_allowed", 403),
    "connection.connect_multi_character_not_allowed": ("connection.connect_multi_character_not_allowed", 403),
    "connection.connect_multi_character_roster_limit": ("connection.connect_multi_character_roster_limit", 403),
    "connection.connect_concurrency_limit_reached": ("connection.connect_concurrency_limit_reached", 429),
    "connection.connect_speaker_limit_reached": ("connection.connect_speaker_limit_reached", 429),
    "connection.rate_limited": ("connection.connect_concurrency_limit_reached", 429),
    "connection.connect_bot_start_failed": ("connection.connect_bot_start_failed", 500),
    "connection.connect_unhandled_server_exception": ("connection.connect_unhandled_server_exception", 500),
    "connection.connect_validation_error": ("connection.connect_validation_error", 422),
    "connection.service_unavailable": ("connection.service_unavailable", 503),
    "connection.server_error": ("connection.server_error", 502),
    "connection.bad_request": ("connection.bad_request", 400),
    "connection.network_error": ("connection.network_error", 0),
    "connection.timeout": ("connection.timeout", None),
    "connection.failed": ("connection.failed", None),
}

#: Codes the server produces on a live session -> what the session does next.
LIVE: dict[str, str] = {
    "transport.ice_failed": "reconnect",
    "transport.signal_disconnected": "reconnect",
    "transport.peer_connection_failed": "end",
    "transport.livekit_error": "end",
    "server.usage_limit_reached": "end",
    "server.fatal_error": "end",
    "session.token_expired": "end",
    "server.error": "continue",
    "protocol.parse_failed": "continue",
    "protocol.message_invalid": "continue",
}

#: Codes produced by the client itself, each with its own trigger below.
CLIENT_TRIGGERED = frozenset({
    "config.api_key_missing", "config.character_id_missing", "config.invalid",
    "session.invalid_state", "session.cancelled", "session.duration_limit_reached",
    "session.idle_timeout",
})

#: Codes this Python, audio-only, API-key SDK can never produce (no auth-token mode, no microphone
#: stack): refused by Simulator.inject and checked against their catalog row only.
UNPRODUCIBLE = frozenset({
    "config.auth_token_provider_missing", "config.auth_token_endpoint_invalid",
    "config.auth_token_mode_required", "connection.auth_token_fetch_failed",
    "audio.mic_unavailable", "audio.mic_permission_denied", "audio.mic_publish_failed",
})

#: PROTOCOL.md §2.6 "Auto-retry?" column (seed 004 rows plus the PROPOSED rows 8, 14, 15).
RETRIED_REASONS = frozenset({0, 3, 6, 8, 9, 14, 15})


def test_expected_tables_cover_the_whole_enum_exactly() -> None:
    values = {c.value for c in ErrorCode}
    assert set(DOC) == values
    groups = [set(CONNECT), set(LIVE), set(CLIENT_TRIGGERED), set(UNPRODUCIBLE)]
    assert set().union(*groups) == values
    assert sum(len(g) for g in groups) == len(values)  # each code in exactly one scenario
    assert [int(r) for r in DisconnectReason] == list(range(17))


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


@dataclass
class Rec:
    """Recorders on every lifecycle/error channel, delivered IMMEDIATE (in publish order)."""

    errors: Recorder[SessionError]
    pipeline: Recorder[SessionError]
    disconnected: Recorder[Disconnected]
    reconnecting: Recorder[Reconnecting]
    reconnected: Recorder[Reconnected]
    connected: Recorder[Connected]
    states: Recorder[SessionStateChanged]
    usage: Recorder[UsageLimitReached]


def record(client: ConvaiClient) -> Rec:
    rec = Rec(Recorder(), Recorder(), Recorder(), Recorder(), Recorder(), Recorder(), Recorder(), Recorder())
    ch = client.events
    # One call per channel (not a loop over pairs), so mypy checks each recorder against its channel.
    ch.on_session_error.subscribe(rec.errors, IMMEDIATE)
    ch.on_pipeline_error.subscribe(rec.pipeline, IMMEDIATE)
    ch.on_disconnected.subscribe(rec.disconnected, IMMEDIATE)
    ch.on_reconnecting.subscribe(rec.reconnecting, IMMEDIATE)
    ch.on_reconnected.subscribe(rec.reconnected, IMMEDIATE)
    ch.on_connected.subscribe(rec.connected, IMMEDIATE)
    ch.on_session_state_changed.subscribe(rec.states, IMMEDIATE)
    ch.on_usage_limit_reached.subscribe(rec.usage, IMMEDIATE)
    return rec


def client_for(sim: Simulator, **overrides: Any) -> ConvaiClient:
    fields: dict[str, Any] = {"retry_policy": FAST_RETRY, "reconnect_policy": FAST_RECONNECT}
    fields.update(overrides)
    return ConvaiClient(sim.client_config(**fields))


def assert_row(err: SessionError, code: str) -> None:
    recoverable, _, stage = DOC[code]
    assert err.error_code == code
    assert err.is_recoverable is recoverable
    if code == "connection.timeout":
        assert err.stage in (API, TRN)  # PROTOCOL.md §2.2: "ConnectApi / Transport"
    else:
        assert err.stage is stage


def assert_catalog_row(code: ErrorCode) -> None:
    """The SDK's catalog row agrees with PROTOCOL.md §2.2 (the table above)."""
    recoverable, retried, stage = DOC[code.value]
    assert code.is_recoverable is recoverable
    assert code.is_retried is retried
    assert code.stage is stage


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as server:
        yield server


# ---------------------------------------------------------------------------------------------
# scenarios
# ---------------------------------------------------------------------------------------------


def _connect_api(sim: Simulator, code: str) -> None:
    client_code, status = CONNECT[code]
    retried = DOC[client_code][1]
    attempts = DEFAULT_CONNECT_ATTEMPTS if retried else 1
    # Answer every attempt the policy may make, so the attempt count is the SDK's decision.
    assert sim.inject(code, times=DEFAULT_CONNECT_ATTEMPTS) == 0
    overrides: dict[str, Any] = {"connection_timeout": 0.5} if code == "connection.timeout" else {}
    with client_for(sim, **overrides) as client:
        rec = record(client)
        expected_exc = (ConcurrencyLimitError if client_code == "connection.connect_concurrency_limit_reached"
                        else ConvaiError)
        with pytest.raises(expected_exc) as info:
            client.connect(timeout=15)
        if expected_exc is ConvaiError:
            assert not isinstance(info.value, ConcurrencyLimitError)
        assert_row(info.value.error, client_code)
        # on_session_error fires once, after the last attempt, with the final code
        assert len(rec.errors.wait(1)) == 1
        assert rec.errors.events[0] is info.value.error
        if status is not None:
            assert info.value.error.http_status_code == status
        assert client.state is SessionState.ERROR
        assert rec.states.events[-1].new_state is SessionState.ERROR
        assert rec.states.events[-1].error_code == client_code
        assert rec.connected.events == [] and rec.disconnected.events == []
        diag = client.diagnostics()
        assert diag["connect_attempts"] == attempts
        assert diag["reconnect_attempts"] == 0
        assert diag["retry_delays"] == list(FAST_RETRY.delays[:attempts])
        assert diag["last_error_code"] == client_code
    sim.wait_for_slots(0)


def _live(sim: Simulator, code: str) -> None:
    outcome = LIVE[code]
    with client_for(sim) as client:
        rec = record(client)
        client.connect(timeout=10)
        session_id, csid = client.session_id, client.character_session_id
        assert sim.inject(code) == 1
        err = rec.errors.wait(1)[0]
        assert_row(err, code)
        diag_after = None
        if code.startswith("server.") and code != "server.usage_limit_reached":
            pipe = rec.pipeline.wait(1)[0]
            assert isinstance(pipe, PipelineSessionError) and pipe is err
        else:
            assert rec.pipeline.events == []
        if outcome == "reconnect":
            rec.reconnected.wait(1, timeout=10)
            assert rec.reconnecting.events[0].attempt == 1
            assert rec.reconnecting.events[0].error is err
            assert client.state is SessionState.CONNECTED
            assert client.character_session_id == csid and client.session_id != session_id
            assert rec.disconnected.events == []
        elif outcome == "end":
            disc = rec.disconnected.wait(1)[0]
            assert disc.error is not None and disc.error.error_code == code
            assert client.state is SessionState.DISCONNECTED
            assert client.last_disconnect_reason is disc.reason
            assert rec.reconnecting.events == []
            if code == "server.usage_limit_reached":
                assert rec.usage.wait(1)[0].quota_type == "interaction"
                with pytest.raises(UsageLimitError):
                    client.send_text("still there?")
        else:  # the session keeps running: a full turn still works
            assert "still" in client.ask("still there?", timeout=10).text
            assert client.state is SessionState.CONNECTED
            assert rec.disconnected.events == [] and rec.reconnecting.events == []
        assert len(rec.errors.events) == 1  # published once (a fatal error and its close are one error)
        diag_after = client.diagnostics()
        assert diag_after["connect_attempts"] == 1
        assert diag_after["reconnect_attempts"] == (1 if outcome == "reconnect" else 0)
        assert diag_after["last_error_code"] == code


def _client_triggered(sim: Simulator, code: str) -> None:
    if code == "config.invalid":
        with pytest.raises(ConfigurationError) as info:
            sim.client_config(connection_timeout=121)  # > 120 s max (PROTOCOL.md §2.7)
        assert_row(info.value.error, code)
        assert sim.slots_in_use() == 0
        return
    if code in ("config.api_key_missing", "config.character_id_missing"):
        field = "api_key" if code == "config.api_key_missing" else "character_id"
        with client_for(sim, **{field: ""}) as client:
            rec = record(client)
            with pytest.raises(ConfigurationError) as info:
                client.connect(timeout=5)
            assert_row(info.value.error, code)
            assert rec.errors.wait(1)[0].error_code == code
            assert client.state is SessionState.DISCONNECTED
            assert rec.states.events == []
            assert client.diagnostics()["connect_attempts"] == 0
        assert sim.slots_in_use() == 0
        return
    if code == "session.invalid_state":
        sim.inject("connection.connect_invalid_api_key")
        with client_for(sim) as client:
            rec = record(client)
            with pytest.raises(ConvaiError):
                client.connect(timeout=5)
            assert client.state is SessionState.ERROR
            with pytest.raises(InvalidStateError) as refused:
                client.connect(timeout=5)  # connect() from ERROR is refused
            assert_row(refused.value.error, code)
            with pytest.raises(InvalidStateError):
                client.send_text("not connected")
            assert client.state is SessionState.ERROR
            assert client.diagnostics()["connect_attempts"] == 1  # the refused connect made none
            assert [e.error_code for e in rec.errors.events] == ["connection.connect_invalid_api_key"]
            client.disconnect()  # resets ERROR
            assert state_of(client) is SessionState.DISCONNECTED
        return
    if code == "session.cancelled":
        sim.inject("connection.timeout")  # the session never sends bot-ready: connect stays CONNECTING
        with client_for(sim, connection_timeout=10) as client:
            rec = record(client)
            outcome: list[BaseException] = []

            def run() -> None:
                try:
                    client.connect(timeout=15)
                except BaseException as exc:
                    outcome.append(exc)

            caller = threading.Thread(target=run, name="test-connect-caller")
            caller.start()
            try:
                sim.wait_for_session()
                assert client.state is SessionState.CONNECTING
                client.disconnect()
            finally:
                caller.join(10)
            assert not caller.is_alive()
            assert len(outcome) == 1 and isinstance(outcome[0], ConvaiError)
            assert_row(outcome[0].error, code)
            assert_row(rec.errors.wait(1)[0], code)
            disc = rec.disconnected.wait(1)[0]
            assert disc.reason is DisconnectReason.CLIENT_INITIATED
            assert state_of(client) is SessionState.DISCONNECTED
            assert client.diagnostics()["connect_attempts"] == 1
        sim.wait_for_slots(0)
        return
    if code == "session.duration_limit_reached":
        with client_for(sim, max_session_duration=0.2, session_duration_warnings=(0.1,)) as client:
            rec = record(client)
            client.connect(timeout=10)
            disc = rec.disconnected.wait(1)[0]
            assert disc.error is not None
            assert_row(disc.error, code)
            assert rec.errors.events == [disc.error]
            assert client.state is SessionState.DISCONNECTED
            assert client.last_error is disc.error
            diag = client.diagnostics()
            assert diag["connect_attempts"] == 1 and diag["reconnect_attempts"] == 0
        sim.wait_for_slots(0)
        return
    if code == "session.idle_timeout":
        # The server's idle close (WS 1000 "Idle timeout") after a user-idle-warning.
        with Simulator(idle_timeout=0.3, idle_warning_lead=0.2) as idle_sim, client_for(idle_sim) as client:
            rec = record(client)
            timeouts: Recorder[Any] = Recorder()
            client.events.on_user_idle_timeout.subscribe(timeouts, IMMEDIATE)
            client.connect(timeout=10)
            disc = rec.disconnected.wait(1, timeout=5)[0]
            assert disc.reason is DisconnectReason.ROOM_DELETED
            assert disc.error is not None
            assert_row(disc.error, code)
            assert rec.errors.events == [disc.error]
            assert len(timeouts.events) == 1  # the local idle deadline is reported too
            assert client.state is SessionState.DISCONNECTED
            diag = client.diagnostics()
            assert diag["connect_attempts"] == 1 and diag["reconnect_attempts"] == 0
            idle_sim.wait_for_slots(0)
        return
    raise AssertionError(f"no trigger for {code}")


def _unproducible(sim: Simulator, code: ErrorCode) -> None:
    with pytest.raises(ValueError, match="client-side"):
        sim.inject(code)
    assert_catalog_row(code)
    assert code.http_status is None
    assert sim.slots_in_use() == 0


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_every_error_code_end_to_end(sim: Simulator, code: ErrorCode) -> None:
    assert_catalog_row(code)
    value = code.value
    if value in CONNECT:
        _connect_api(sim, value)
    elif value in LIVE:
        _live(sim, value)
    elif value in CLIENT_TRIGGERED:
        with pytest.raises(ValueError, match="client-side"):
            sim.inject(code)
        _client_triggered(sim, value)
    else:
        assert value in UNPRODUCIBLE
        _unproducible(sim, code)


def test_retryable_connect_code_succeeds_when_injected_fewer_times_than_attempts(sim: Simulator) -> None:
    sim.inject("connection.service_unavailable", times=2)
    with client_for(sim) as client:
        rec = record(client)
        client.connect(timeout=10)
        assert client.state is SessionState.CONNECTED
        assert len(rec.connected.wait(1)) == 1
        assert rec.errors.events == []  # intermediate failures are retried silently
        diag = client.diagnostics()
        assert diag["connect_attempts"] == 3
        assert diag["retry_delays"] == [0, 0.01, 0.01]


# ---------------------------------------------------------------------------------------------
# disconnect reasons
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(DisconnectReason), ids=lambda r: f"{int(r)}-{r.name}")
def test_every_disconnect_reason_end_to_end(sim: Simulator, reason: DisconnectReason) -> None:
    retried = int(reason) in RETRIED_REASONS
    assert reason.should_retry is retried
    with client_for(sim) as client:
        rec = record(client)
        client.connect(timeout=10)
        session_id, csid = client.session_id, client.character_session_id
        assert sim.inject(reason) == 1
        if retried:
            rec.reconnected.wait(1, timeout=10)
            first = rec.reconnecting.events[0]
            assert first.reason is reason and first.attempt == 1
            assert first.max_attempts == FAST_RECONNECT.max_attempts
            if reason is DisconnectReason.SERVER_SHUTDOWN:
                assert first.delay >= FAST_RECONNECT.server_shutdown_delay
            else:
                assert first.delay == 0.01
            assert rec.reconnected.events[0].attempts == 1
            assert client.state is SessionState.CONNECTED
            assert client.character_session_id == csid and client.session_id != session_id
            assert rec.disconnected.events == []
            assert [s.new_state for s in rec.states.events[-2:]] == [SessionState.RECONNECTING,
                                                                      SessionState.CONNECTED]
            if reason is DisconnectReason.UNKNOWN_REASON:
                # an abrupt TCP drop (no close frame) is reported as a transport error
                err = rec.errors.wait(1)[0]
                assert err.error_code == "transport.signal_disconnected" and err.is_recoverable
            else:
                assert rec.errors.events == []
            sim.wait_for_slots(1)
        else:
            # CLIENT_INITIATED sent by the server (close 4001) is taken at its word: not retried.
            disc = rec.disconnected.wait(1)[0]
            assert disc.reason is reason
            assert client.state is SessionState.DISCONNECTED
            assert client.last_disconnect_reason is reason
            assert client.diagnostics()["last_disconnect_reason"] == reason.name
            assert rec.reconnecting.events == [] and rec.reconnected.events == []
            assert rec.states.events[-1].new_state is SessionState.DISCONNECTED
            sim.wait_for_slots(0)
        diag = client.diagnostics()
        assert diag["connect_attempts"] == 1
        assert diag["reconnect_attempts"] == (1 if retried else 0)


def test_agent_error_reason_surfaces_as_a_server_error(sim: Simulator) -> None:
    with client_for(sim) as client:
        rec = record(client)
        client.connect(timeout=10)
        sim.inject(DisconnectReason.AGENT_ERROR)
        disc = rec.disconnected.wait(1)[0]
        assert disc.reason is DisconnectReason.AGENT_ERROR
        assert disc.error is not None
        assert disc.error.error_code in ("server.fatal_error", "server.error")
        assert rec.errors.events and rec.errors.events[0] is disc.error


class _HeldOpen(WebSocketTransport):
    """The real WebSocket transport, whose ``open`` returns only when the test lets it."""

    def __init__(self, opened: threading.Event, release: threading.Event) -> None:
        super().__init__()
        self._opened, self._release = opened, release

    def open(self, endpoint: Any, listener: Any, *, timeout: float, canceller: Any = None) -> None:
        super().open(endpoint, listener, timeout=timeout, canceller=canceller)
        self._opened.set()
        self._release.wait(10)


def test_close_right_after_a_cancelled_connect_releases_the_late_attempt(sim: Simulator) -> None:
    """session.cancelled race: the attempt's handshake finishes after disconnect() and close().

    Deterministic version of a race seen in the catalog test: the late WebSocket must be closed and
    its slot freed even though the session loop has already stopped.
    """
    opened, release = threading.Event(), threading.Event()
    client = ConvaiClient(sim.client_config(retry_policy=FAST_RETRY),
                          transport_factory=lambda: _HeldOpen(opened, release))
    try:
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                client.connect(timeout=10)
            except BaseException as exc:  # handed to the test thread
                outcome.append(exc)

        caller = threading.Thread(target=run, name="test-connect-caller")
        caller.start()
        assert opened.wait(5)  # the handshake is done; the session has not seen the result yet
        client.disconnect()
        caller.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], ConvaiError)
        assert outcome[0].error_code == "session.cancelled"
        loop = [t for t in threading.enumerate() if t.name.startswith("convai-session-")]
        assert len(loop) == 1

        def release_when_the_loop_is_gone() -> None:
            loop[0].join(10)
            release.set()

        releaser = threading.Thread(target=release_when_the_loop_is_gone, name="test-releaser")
        releaser.start()
        client.close()  # stops the loop, then joins the attempt worker (released only now)
        releaser.join(10)
    finally:
        release.set()
        client.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("convai-") and t.is_alive()]
    sim.wait_for_slots(0, timeout=2)
