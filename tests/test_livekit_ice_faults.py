"""Withheld connectivity on a LiveKit session: what the real client shows, and where the SDK takes it.

libwebrtc notices withheld ICE or a closed peer connection only at its own ICE timeout (~15 s) and
the ``livekit`` client exposes no shorter setting, so every scenario of this module runs once, all
of them in parallel against one simulator: the real ``livekit.rtc.Room`` on its own (no convai_sync
code in the way) and ``ConvaiClient`` over LiveKit, for ``transport.ice_failed`` and
``transport.peer_connection_failed`` each.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from convai_sync import (
    ConvaiClient,
    DisconnectReason,
    ErrorCode,
    EventDeliveryPolicy,
    Reconnected,
    ReconnectPolicy,
    SessionError,
)
from convai_sync.testing import Recorder
from simulator import Simulator
from simulator.core.character import default_reply
from tests.livekit_helpers import Participant, connect_info

FAULTS = ("transport.ice_failed", "transport.peer_connection_failed")
WAIT = 20.0


def _raw_client(sim: Simulator, fault: str, results: dict[str, Any]) -> None:
    async def scenario() -> None:
        info = connect_info(sim)
        client = Participant()
        await client.join(info)
        await client.wait_message("bot-ready")
        started = time.monotonic()
        sim.inject(fault, session_id=info["session_id"])
        reason = await client.wait_disconnected(40)
        elapsed = time.monotonic() - started
        names = [name for _t, name, _v in client.events if name in ("reconnecting", "reconnected", "disconnected")]
        await client.close()
        results[fault] = (reason, names, elapsed)

    asyncio.run(scenario())


def _sdk_client(sim: Simulator, fault: str, results: dict[str, Any]) -> None:
    errors: Recorder[SessionError] = Recorder()
    reconnected: Recorder[Reconnected] = Recorder()
    config = sim.client_config(transport="livekit", connection_timeout=15.0,
                               reconnect_policy=ReconnectPolicy(delays=(0.0,), server_shutdown_delay=0.0))
    with ConvaiClient(config) as client:
        client.events.on_session_error.subscribe(errors, EventDeliveryPolicy.IMMEDIATE)
        client.events.on_reconnected.subscribe(reconnected, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=WAIT)
        csid = client.character_session_id
        started = time.monotonic()
        sim.inject(fault, session_id=client.session_id)
        reconnected.wait(1, 60.0)
        results[fault] = (time.monotonic() - started, [e.error_code for e in errors.events],
                          client.last_disconnect_reason, client.character_session_id == csid,
                          client.ask("back?", timeout=WAIT).text)


@pytest.mark.timeout(90)
def test_withheld_connectivity_as_the_real_client_and_the_sdk_see_it() -> None:
    raw: dict[str, Any] = {}
    sdk: dict[str, Any] = {}
    with Simulator() as sim:
        workers = [threading.Thread(target=target, args=(sim, fault, out), name=f"ice-{kind}-{fault}")
                   for kind, target, out in (("raw", _raw_client, raw), ("sdk", _sdk_client, sdk))
                   for fault in FAULTS]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(80.0)
        sim.wait_for_slots(0)
    for fault in FAULTS:
        # The real client: nothing until its ICE timeout, then reconnecting, then MEDIA_FAILURE.
        reason, names, elapsed = raw[fault]
        assert reason == DisconnectReason.MEDIA_FAILURE, fault
        assert names == ["reconnecting", "disconnected"], fault
        assert 5 < elapsed < 40, fault  # the client's own ICE timeout fires (about 15 s measured)
        # The SDK: it cannot tell a closed DTLS transport from failed ICE (both MEDIA_FAILURE), reports
        # transport.ice_failed and retries (convai_sync.closes.classify_livekit_close), resuming the
        # conversation.
        elapsed, codes, last_reason, resumed, answer = sdk[fault]
        assert codes == [ErrorCode.TRANSPORT_ICE_FAILED] and last_reason is DisconnectReason.MEDIA_FAILURE, fault
        assert resumed and answer == default_reply("back?", 1) and 5 < elapsed < 60, fault
