"""LiveKit transport pieces that need no room: join-failure and close classification, participant
kinds, the ``/connect`` audio_config, the missing extra, and the session's handling of LiveKit's
own link recovery (driven through the in-memory transport's listener, with a FakeClock)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest

from convai_sync import (
    ConvaiClient,
    ConvaiError,
    Disconnected,
    DisconnectReason,
    ErrorCode,
    EventDeliveryPolicy,
    InvalidStateError,
    ParticipantJoined,
    ParticipantType,
    Reconnected,
    Reconnecting,
    ReconnectPolicy,
    SessionError,
    SessionState,
)
from convai_sync.closes import classify_close
from convai_sync.connect import Endpoint, build_request
from convai_sync.testing import Recorder
from convai_sync.transports import livekit as lk
from convai_sync.transports.base import TransportClosed, TransportOpenError
from convai_sync.transports.livekit_map import http_status, join_error_code, participant_type
from tests.helpers_memory import BOT_READY, FakeApi, Harness, SteppingClock, assert_no_convai_threads, make_config
from tests.narrowing import state_of

pytestmark = pytest.mark.timeout(15)

E = ErrorCode
R = DisconnectReason
S = SessionState
P = EventDeliveryPolicy

# ============================================================================ pure mappings

#: ``ConnectError`` texts of the real client (livekit 1.2.1), as the simulator's docstring lists them.
JOIN_FAILURES = {
    "engine: signal failure: handshake error: 401 Unauthorized": (E.CONNECTION_INVALID_TOKEN, 401),
    "engine: signal failure: client error: 401 Unauthorized - invalid token: token is expired":
        (E.CONNECTION_INVALID_TOKEN, 401),
    "engine: signal failure: handshake error: 403 Forbidden": (E.CONNECTION_AUTH_FAILED, 403),
    "engine: signal failure: handshake error: 404 Not Found": (E.CONNECTION_NOT_FOUND, 404),
    "engine: signal failure: handshake error: 429 Too Many Requests": (E.CONNECTION_RATE_LIMITED, 429),
    "engine: signal failure: handshake error: 400 Bad Request": (E.CONNECTION_BAD_REQUEST, 400),
    "engine: signal failure: handshake error: 503 Service Unavailable": (E.CONNECTION_SERVER_ERROR, 503),
    "engine: connection error: wait_pc_connection timed out": (E.TRANSPORT_ICE_FAILED, None),
    "engine: rtc error: failed to set remote description (sdp)": (E.TRANSPORT_PEER_CONNECTION_FAILED, None),
    "engine: signal failure: transport timed out": (E.TRANSPORT_SIGNAL_DISCONNECTED, None),
    "engine: signal failure: ws failure: Connection refused (os error 111)": (E.TRANSPORT_SIGNAL_DISCONNECTED, None),
    "engine: internal error: something new": (E.TRANSPORT_LIVEKIT_ERROR, None),
}


@pytest.mark.parametrize("text", list(JOIN_FAILURES))
def test_join_failures_map_to_codes(text: str) -> None:
    code, status = JOIN_FAILURES[text]
    assert join_error_code(text) is code
    if status is not None:
        assert http_status(text) == status


def test_participant_kinds() -> None:
    assert participant_type(4, is_local=False) is ParticipantType.CHARACTER  # ParticipantInfo.Kind AGENT
    assert participant_type(0, is_local=False) is ParticipantType.REMOTE_PLAYER  # STANDARD
    assert participant_type(0, is_local=True) is ParticipantType.LOCAL_PLAYER
    for kind in (1, 2, 3, 5, 6):  # ingress, egress, SIP, connector, bridge
        assert participant_type(kind, is_local=False) is ParticipantType.UNKNOWN


def _lk_close(reason: R, initiator: Any) -> TransportClosed:
    return TransportClosed(int(reason), f"LiveKit disconnected: {reason.name}", initiator, disconnect_reason=reason)


@pytest.mark.parametrize("reason", list(R), ids=lambda r: r.name)
def test_a_livekit_leave_is_its_own_reason(reason: R) -> None:
    outcome = classify_close(_lk_close(reason, "server"))
    assert outcome.reason is reason
    if reason is R.AGENT_ERROR:
        assert not outcome.retry and outcome.error is not None
        assert outcome.error.error_code is E.SERVER_FATAL_ERROR
    else:
        assert outcome.retry is reason.should_retry and outcome.error is None


def test_a_failed_livekit_recovery_is_a_lost_link_unless_the_session_is_over() -> None:
    lost = classify_close(_lk_close(R.STATE_MISMATCH, "network"))
    assert lost.retry and lost.reason is R.STATE_MISMATCH
    assert lost.error is not None and lost.error.error_code is E.TRANSPORT_SIGNAL_DISCONNECTED
    media = classify_close(_lk_close(R.MEDIA_FAILURE, "network"))
    assert media.retry and media.error is not None and media.error.error_code is E.TRANSPORT_ICE_FAILED
    rejoin_refused = classify_close(_lk_close(R.JOIN_FAILURE, "network"))  # e.g. a rejoin with an old token
    assert rejoin_refused.retry
    for final in (R.DUPLICATE_IDENTITY, R.PARTICIPANT_REMOVED, R.ROOM_DELETED, R.ROOM_CLOSED):
        outcome = classify_close(_lk_close(final, "network"))
        assert (outcome.reason, outcome.retry) == (final, False), final
    mine = classify_close(_lk_close(R.CLIENT_INITIATED, "client"))
    assert (mine.reason, mine.retry) == (R.CLIENT_INITIATED, False)


def test_websocket_close_codes_are_not_mistaken_for_livekit_reasons() -> None:
    # A WebSocket close code 5 (no marker) is not ROOM_DELETED; 4005 (the simulator extension) is.
    assert classify_close(TransportClosed(5, "", "server")).reason is R.UNKNOWN_REASON
    assert classify_close(TransportClosed(4005, "", "server")).reason is R.ROOM_DELETED
    assert classify_close(TransportClosed(1008, "Session expired. Please reconnect via /connect", "server")
                          ).reason is R.ROOM_DELETED


def test_audio_config_goes_with_livekit_only() -> None:
    base = {"api_key": "k", "character_id": "c"}
    routed = make_config(**base, transport="livekit", audio_routing="data_only", audio_sample_rate=16000)
    assert build_request(routed, None)["audio_config"] == {"output": {"audio_routing": "data_only",
                                                                      "sample_rate": 16000}}
    both = make_config(**base, transport="livekit", audio_routing="both")
    assert build_request(both, None)["audio_config"] == {"output": {"audio_routing": "both"}}
    assert "audio_config" not in build_request(make_config(**base, transport="livekit"), None)
    # Convai answers 400 to audio_config on any other transport: never sent there.
    ws = make_config(**base, transport="websocket", audio_routing="data_only", audio_sample_rate=16000)
    assert "audio_config" not in build_request(ws, None)
    assert build_request(routed, None)["transport"] == "livekit"


def test_without_the_livekit_package_connect_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def missing(name: str, package: str | None = None) -> Any:
        if name.startswith("livekit"):
            raise ModuleNotFoundError("No module named 'livekit'")
        return real(name, package)

    # convai_sync.transports.livekit_join loads livekit.rtc through importlib.import_module.
    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(TransportOpenError) as failed:
        lk.LiveKitTransport().open(Endpoint(session_id="s", room_url="ws://127.0.0.1:9", token="t"),
                                   Recorder(), timeout=1.0)  # type: ignore[arg-type]
    assert failed.value.error.error_code is E.TRANSPORT_LIVEKIT_ERROR
    assert "pip install 'convai-sync[livekit]'" in failed.value.error.message
    api = FakeApi()
    with ConvaiClient(make_config(transport="livekit"), connect_api=api) as client:
        with pytest.raises(ConvaiError) as connect_failed:
            client.connect(timeout=5.0)
        assert connect_failed.value.error_code is E.TRANSPORT_LIVEKIT_ERROR
        assert api.call_count == 1  # not retried: installing a package is not transient
    assert_no_convai_threads()


# ============================================================================ the session and LiveKit's recovery


@pytest.fixture
def harness() -> Iterator[Harness]:
    made: list[Harness] = []

    def build(**overrides: Any) -> Harness:
        clock = overrides.pop("clock", None)
        api = overrides.pop("api", None)
        h = Harness(make_config(**overrides), clock=clock, api=api)
        made.append(h)
        return h

    yield build  # type: ignore[misc]
    for h in made:
        h.close()
    assert_no_convai_threads()


def _listener(h: Harness) -> Any:
    transport = h.server.transport
    assert transport is not None and transport.listener is not None
    return transport, transport.listener


def test_a_recovery_that_succeeds_keeps_the_session(harness: Any) -> None:
    h: Harness = harness()
    reconnecting: Recorder[Reconnecting] = Recorder()
    reconnected: Recorder[Reconnected] = Recorder()
    h.client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
    h.client.events.on_reconnected.subscribe(reconnected, P.IMMEDIATE)
    h.connect()
    session_id = h.client.session_id
    transport, listener = _listener(h)
    listener.on_transport_reconnecting(transport)
    (first,) = reconnecting.wait(1)
    assert (first.attempt, first.max_attempts, first.delay) == (1, 3, 0.0)
    assert h.client.state is S.RECONNECTING
    with pytest.raises(InvalidStateError):
        h.client.send_text("while the link is down")
    listener.on_transport_reconnected(transport)
    (done,) = reconnected.wait(1)
    assert done.attempts == 1 and done.session_id == session_id
    assert state_of(h.client) is S.CONNECTED and h.client.session_id == session_id
    assert h.api.call_count == 1 and h.api.disconnects == []  # no new /connect: the same session goes on
    assert h.client.diagnostics()["transport_resumes"] == 1


def test_a_refused_recovery_reconnects_with_a_new_connect(harness: Any) -> None:
    clock = SteppingClock()
    h: Harness = harness(clock=clock)
    reconnecting: Recorder[Reconnecting] = Recorder()
    reconnected: Recorder[Reconnected] = Recorder()
    errors: Recorder[SessionError] = Recorder()
    h.client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
    h.client.events.on_reconnected.subscribe(reconnected, P.IMMEDIATE)
    h.client.events.on_session_error.subscribe(errors, P.IMMEDIATE)
    h.connect()
    transport, listener = _listener(h)
    listener.on_transport_reconnecting(transport)
    reconnecting.wait(1)
    transport.closed_by_peer(_lk_close(R.STATE_MISMATCH, "network"))  # the server refused the resume
    second = reconnecting.wait(2)[1]
    assert second.attempt == 2 and second.reason is R.STATE_MISMATCH
    assert [e.error_code for e in errors.events] == [E.TRANSPORT_SIGNAL_DISCONNECTED]
    h.api.wait_disconnects(1)  # the dropped session's slot is freed first
    clock.step(second.delay)
    h.api.wait_calls(2)
    assert h.api.calls[1][0] == "csid-1"  # the conversation is resumed
    h.server.wait_open(2)
    h.server.push(BOT_READY)
    (done,) = reconnected.wait(1)
    assert done.attempts == 2 and h.client.session_id == "sess-2"
    assert h.client.last_disconnect_reason is R.STATE_MISMATCH


def test_a_recovery_is_bounded_by_the_connection_timeout(harness: Any) -> None:
    clock = SteppingClock()
    h: Harness = harness(clock=clock, connection_timeout=7.0)
    reconnecting: Recorder[Reconnecting] = Recorder()
    h.client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
    h.connect()
    transport, listener = _listener(h)
    listener.on_transport_reconnecting(transport)
    reconnecting.wait(1)
    clock.step(7.0)  # LiveKit never says how it went
    second = reconnecting.wait(2)[1]
    assert second.attempt == 2 and second.error is not None
    assert second.error.error_code is E.CONNECTION_TIMEOUT and "link recovery" in second.error.message
    assert transport._closed  # the stalled room was left


def test_no_reconnects_means_no_recovery_either(harness: Any) -> None:
    h: Harness = harness(reconnect_policy=ReconnectPolicy(max_attempts=0))
    disconnected: Recorder[Disconnected] = Recorder()
    reconnecting: Recorder[Reconnecting] = Recorder()
    h.client.events.on_disconnected.subscribe(disconnected, P.IMMEDIATE)
    h.client.events.on_reconnecting.subscribe(reconnecting, P.IMMEDIATE)
    h.connect()
    transport, listener = _listener(h)
    listener.on_transport_reconnecting(transport)
    (gone,) = disconnected.wait(1)
    assert gone.reason is R.UNKNOWN_REASON and h.client.state is S.DISCONNECTED
    assert reconnecting.events == [] and h.api.call_count == 1


def test_a_final_reason_during_recovery_ends_the_session(harness: Any) -> None:
    h: Harness = harness()
    disconnected: Recorder[Disconnected] = Recorder()
    h.client.events.on_disconnected.subscribe(disconnected, P.IMMEDIATE)
    h.connect()
    transport, listener = _listener(h)
    listener.on_transport_reconnecting(transport)
    transport.closed_by_peer(_lk_close(R.DUPLICATE_IDENTITY, "network"))
    (gone,) = disconnected.wait(1)
    assert gone.reason is R.DUPLICATE_IDENTITY and h.client.state is S.DISCONNECTED
    assert h.api.call_count == 1


def test_participants_reach_their_channels(harness: Any) -> None:
    h: Harness = harness()
    joined: Recorder[ParticipantJoined] = Recorder()
    h.client.events.on_participant_joined.subscribe(joined, P.IMMEDIATE)
    h.connect()
    transport, listener = _listener(h)
    listener.on_transport_participant(transport, ParticipantJoined(
        participant_id="PA_x", identity="sim-character", participant_type=ParticipantType.CHARACTER))
    (event,) = joined.wait(1)
    assert event.identity == "sim-character" and event.participant_type is ParticipantType.CHARACTER
