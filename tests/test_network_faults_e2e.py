"""convai_sync under every network fault of ``simulator.faultkit`` on both transports (real sockets, 127.0.0.1).

Each fault takes hold of the client's session with a fixed seed. A fault that drops the connection must
bring ``Reconnecting`` and then ``Reconnected`` (the fault is switched off once the drop is seen, as the
kit's recipe says), and the conversation goes on; a fault that only slows the wire must leave the session
answering within the client's own deadlines. Closing the client afterwards is bounded as always.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from convai_sync import (
    ConvaiClient,
    ConvaiError,
    ConvaiTimeoutError,
    Disconnected,
    DisconnectReason,
    EventDeliveryPolicy,
    Reconnected,
    Reconnecting,
    ReconnectPolicy,
    SessionState,
)
from convai_sync.testing import Recorder
from simulator import Simulator
from simulator.faultkit import NetworkFault, faults_for, network_fault

pytestmark = pytest.mark.timeout(60)

WAIT = 20.0
CASES = [pytest.param(transport, fault, id=f"{transport}-{fault}")
         for transport in ("websocket", "livekit") for fault in faults_for(transport)]


#: Every reply: the faults act on the connection, whatever a reply says, and over LiveKit ask() waits the
#: voice out in real time (0.42 s of voice here against 1.76 s for the default reply, three asks a case).
SHORT_REPLY = "Hi! Nice to meet you."


@pytest.fixture  # one per test: a responder runs on the simulator's pool, whose threads end with it
def sim() -> Iterator[Simulator]:
    with Simulator(responder=lambda _text: SHORT_REPLY) as simulator:
        yield simulator


def _config(sim: Simulator, transport: str) -> Any:
    return sim.client_config(transport=transport, keepalive_interval=0.5, keepalive_timeout=1.0,
                             reconnect_policy=ReconnectPolicy(delays=(0.05, 0.2, 0.5)))


@pytest.mark.parametrize("transport, fault", CASES)
def test_the_client_survives_the_fault(sim: Simulator, transport: str, fault: NetworkFault) -> None:
    reconnecting: Recorder[Reconnecting] = Recorder()
    reconnected: Recorder[Reconnected] = Recorder()
    client = ConvaiClient(_config(sim, transport))
    try:
        client.events.on_reconnecting.subscribe(reconnecting, EventDeliveryPolicy.IMMEDIATE)
        client.events.on_reconnected.subscribe(reconnected, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=WAIT)
        assert client.ask("before", timeout=WAIT).text
        with network_fault(sim, fault, client.session_id, seed=11):
            if fault.drops:
                if fault.kind == "limit_data":  # cut by the next reply's bytes
                    threading.Thread(target=_ask_quietly, args=(client,), daemon=True).start()
                reconnecting.wait(1, timeout=WAIT)
            else:
                [toxic] = sim.state()["toxics"]
                assert toxic["holding"] == 1  # it acts on the client's connection
                assert client.ask("during", timeout=WAIT).text
        if fault.drops:
            reconnected.wait(1, timeout=WAIT)
        assert client.state is SessionState.CONNECTED
        assert client.ask("after", timeout=WAIT).text
    finally:
        started = time.monotonic()
        client.close()
        assert time.monotonic() - started < 5.0  # close_timeout (1 s) plus the LiveKit room's teardown
    assert not [t for t in threading.enumerate() if t.name.startswith("convai-") and t.is_alive()]


def _ask_quietly(client: ConvaiClient) -> None:
    """An ask the fault interrupts: its ConvaiError is the point (the test checks the reconnect)."""
    try:
        client.ask("cut me off", timeout=WAIT)
    except ConvaiError as exc:
        logging.getLogger(__name__).info("the interrupted ask failed as expected: %s", exc.error_code)


@pytest.mark.parametrize("transport", ["websocket", "livekit"])
def test_slow_close_delays_a_server_side_end_but_it_arrives(sim: Simulator, transport: str) -> None:
    gone: Recorder[Disconnected] = Recorder()
    with ConvaiClient(_config(sim, transport)) as client:
        client.events.on_disconnected.subscribe(gone, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=WAIT)
        with sim.toxic("slow_close", client.session_id, delay=0.4, seed=1):
            started = time.monotonic()
            sim.inject(DisconnectReason.ROOM_DELETED, session_id=client.session_id)
            gone.wait(1, timeout=WAIT)
            assert time.monotonic() - started >= 0.4
        assert gone.events[0].reason is DisconnectReason.ROOM_DELETED


def test_a_stall_without_timeout_is_found_by_the_keepalive_on_the_websocket(sim: Simulator) -> None:
    reconnected: Recorder[Reconnected] = Recorder()
    with ConvaiClient(_config(sim, "websocket")) as client:
        client.events.on_reconnected.subscribe(reconnected, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=WAIT)
        with sim.toxic("stall", client.session_id, seed=2):
            # keepalive_interval + keepalive_timeout = 1.5 s without a pong: the client reconnects (a new
            # session, which the session-scoped stall does not hold).
            reconnected.wait(1, timeout=WAIT)
        assert client.ask("after", timeout=WAIT).text


def test_a_stall_on_livekit_holds_the_reply_until_it_is_removed(sim: Simulator) -> None:
    with ConvaiClient(_config(sim, "livekit")) as client:
        client.connect(timeout=WAIT)
        stall = sim.toxic("stall", client.session_id, seed=3)
        done = threading.Event()
        answer: list[str] = []

        def ask() -> None:
            answer.append(client.ask("held", timeout=WAIT).text)
            done.set()

        threading.Thread(target=ask, daemon=True).start()
        assert not done.wait(0.5)  # nothing passes while stalled
        stall.remove()
        assert done.wait(WAIT) and answer[0]


def test_a_leave_with_disconnect_is_a_server_shutdown_the_client_reconnects_from(sim: Simulator) -> None:
    reconnecting: Recorder[Reconnecting] = Recorder()
    reconnected: Recorder[Reconnected] = Recorder()
    config = _config(sim, "livekit").replace(
        reconnect_policy=ReconnectPolicy(delays=(0.05,), server_shutdown_delay=0.1))
    with ConvaiClient(config) as client:
        client.events.on_reconnecting.subscribe(reconnecting, EventDeliveryPolicy.IMMEDIATE)
        client.events.on_reconnected.subscribe(reconnected, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=WAIT)
        first = client.session_id
        with sim.toxic("leave", client.session_id, action="disconnect", seed=4):
            reconnecting.wait(1, timeout=WAIT)
        reconnected.wait(1, timeout=WAIT)
        assert reconnecting.events[0].reason is DisconnectReason.SERVER_SHUTDOWN
        assert client.session_id != first  # a fresh /connect: the leave said not to come back
        assert client.ask("after", timeout=WAIT).text


def test_a_resume_whose_signal_is_dropped_still_recovers(sim: Simulator) -> None:
    reconnecting: Recorder[Reconnecting] = Recorder()
    reconnected: Recorder[Reconnected] = Recorder()
    with ConvaiClient(_config(sim, "livekit")) as client:
        client.events.on_reconnecting.subscribe(reconnecting, EventDeliveryPolicy.IMMEDIATE)
        client.events.on_reconnected.subscribe(reconnected, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=WAIT)
        session_id = client.session_id
        assert session_id is not None
        with sim.toxic("drop_signal_on_resume", session_id, seed=5):
            cut = sim.toxic("abort", session_id, seed=6)  # the signal goes: LiveKit's client resumes
            reconnecting.wait(1, timeout=WAIT)
            cut.remove()
            reconnected.wait(1, timeout=WAIT)
        assert client.ask("after", timeout=WAIT).text


def test_oversized_data_is_dropped_and_what_fits_still_travels(sim: Simulator) -> None:
    with ConvaiClient(_config(sim, "livekit").replace(ack_timeout=1.0)) as client:
        client.connect(timeout=WAIT)
        with sim.toxic("oversized_data", client.session_id, limit=2048, seed=8):
            with pytest.raises(ConvaiTimeoutError):  # dropped: no ack ever comes
                client.send_text("x" * 4096, wait=True, timeout=1.0)
            assert client.ask("short enough", timeout=WAIT).text
