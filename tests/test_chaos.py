"""Chaos, short: ``send_text(wait=True)`` under a seeded fault schedule (``bench/chaos.py`` runs 10,000).

Also the rule for a message sent while RECONNECTING: it raises ``InvalidStateError`` at once and is
not sent (nothing is queued for after the reconnect), and a ``wait=True`` send whose link drops
fails with the drop's error at once instead of waiting for ``ack_timeout``.
"""

from __future__ import annotations

import threading
import time

import pytest

from bench.chaos import CALL_TIMEOUT, FAULTS, run_chaos
from bench.chaos_proxy import ChaosProxy, _FrameTap
from convai_sync import (
    ConvaiClient,
    ConvaiError,
    DisconnectReason,
    EventDeliveryPolicy,
    InvalidStateError,
    Reconnected,
    ReconnectPolicy,
    SessionState,
)
from simulator import Simulator

GENEROUS = 10.0  # "returned before a generous deadline"; precise figures are bench/'s


@pytest.mark.timeout(240)
def test_seeded_chaos_loses_nothing_and_hangs_nothing() -> None:
    result = run_chaos(calls=500, seed=11, fault_rate=0.06)
    assert result.violations == [], result.summary()
    assert result.calls == 500
    assert sum(result.outcomes.values()) == 500
    assert result.outcomes["acked"] > 300, result.summary()
    # The schedule really injected faults of every kind, and they really bit.
    assert set(result.faults) >= {name for name, _ in FAULTS} - {"restart"}, result.summary()
    assert result.outcomes["timed out"] + result.outcomes["not sent"] > 0, result.summary()
    assert result.longest_call <= CALL_TIMEOUT + GENEROUS
    assert result.acks_delivered >= result.outcomes["acked"]


@pytest.mark.timeout(240)
def test_chaos_survives_a_simulator_restart() -> None:
    result = run_chaos(calls=150, seed=5, fault_rate=0.0, restart_at=(50, 100))
    assert result.violations == [], result.summary()
    assert result.faults["restart"] == 2
    assert result.outcomes["acked"] >= 140, result.summary()


def test_frame_tap_reads_masked_client_frames_split_anywhere() -> None:
    """The proxy's record of what reached the server is what the chaos checks rest on."""
    import json

    import websocket

    seen: list[object] = []
    tap = _FrameTap(seen.append, b"GET /chat")
    data = b"GET /chat?session_id=s HTTP/1.1\r\nHost: x\r\n\r\n"
    messages = [{"type": "user_text_message", "data": {"text": "t" * size}} for size in (0, 5, 200, 70_000)]
    for message in messages:
        data += websocket.ABNF.create_frame(json.dumps(message), websocket.ABNF.OPCODE_TEXT).format()
    for start in range(0, len(data), 7):
        tap.feed(data[start:start + 7])
    assert seen == messages


@pytest.mark.timeout(30)
def test_send_while_reconnecting_raises_at_once_and_sends_nothing() -> None:
    with Simulator() as sim:
        proxy = ChaosProxy(sim.port)
        config = sim.client_config(url=proxy.url, reconnect_policy=ReconnectPolicy(delays=(0.5,)))
        try:
            with ConvaiClient(config) as client:
                reconnecting = threading.Event()
                reconnected = threading.Event()
                client.events.on_reconnecting.subscribe(lambda _e: reconnecting.set(), EventDeliveryPolicy.IMMEDIATE)
                client.events.on_reconnected.subscribe(lambda _e: reconnected.set(), EventDeliveryPolicy.IMMEDIATE)
                client.connect(timeout=GENEROUS)
                sim.inject(DisconnectReason.SIGNAL_CLOSE)
                assert reconnecting.wait(GENEROUS)
                assert client.state is SessionState.RECONNECTING
                for wait in (False, True):
                    started = time.monotonic()
                    with pytest.raises(InvalidStateError) as info:
                        client.send_text(f"while reconnecting wait={wait}", wait=wait, timeout=GENEROUS)
                    assert time.monotonic() - started < GENEROUS / 2  # at once, not after a timeout
                    assert "RECONNECTING" in str(info.value)
                assert reconnected.wait(GENEROUS)
                assert client.send_text("after", wait=True, timeout=GENEROUS).status == "success"
                assert proxy.forwarded("after")
                assert not proxy.forwarded("while reconnecting wait=False")
                assert not proxy.forwarded("while reconnecting wait=True")
        finally:
            proxy.stop()


@pytest.mark.timeout(30)
def test_wait_true_send_fails_with_the_drop_not_after_ack_timeout() -> None:
    with Simulator() as sim:
        proxy = ChaosProxy(sim.port)
        config = sim.client_config(url=proxy.url, ack_timeout=60.0,
                                   reconnect_policy=ReconnectPolicy(delays=(0.05,)))
        try:
            with ConvaiClient(config) as client:
                client.connect(timeout=GENEROUS)
                proxy.delay = 3600.0  # the ack will never come back through the proxy...
                outcome: list[ConvaiError] = []

                def send() -> None:
                    try:
                        client.send_text("doomed", wait=True)
                    except ConvaiError as exc:
                        outcome.append(exc)
                sender = threading.Thread(target=send, name="test-sender")
                sender.start()
                assert sim.wait_for_received(client.session_id or "", "user_text_message", GENEROUS)
                proxy.cut_all()  # ...and the link drops while the send waits for it
                proxy.delay = 0.0  # the reconnect's traffic passes (the cut link's pump still holds)
                sender.join(GENEROUS)
                assert not sender.is_alive()
                assert outcome and not isinstance(outcome[0], InvalidStateError), outcome
                assert outcome[0].error_code.value.startswith("transport."), outcome
                if client.state is not SessionState.CONNECTED:
                    client.wait_for(Reconnected, timeout=GENEROUS)
                assert client.send_text("next", wait=True, timeout=GENEROUS).status == "success"
        finally:
            proxy.stop()
