"""50 join/leave cycles of the real ``livekit`` client: nothing accumulates on either side."""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import pytest

from simulator import Simulator
from tests.livekit_helpers import Participant, assert_only_routing_probes, connect_info, native_threads

CYCLES = 50


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.timeout(90)
def test_fifty_join_leave_cycles_leak_nothing() -> None:
    joins: list[float] = []
    round_trips: list[float] = []
    with Simulator() as sim:
        async def cycle() -> None:
            info = connect_info(sim)
            client = Participant()
            joins.append(await client.join(info))
            await client.wait_message("bot-ready")
            mark = len(client.messages)
            sent = time.monotonic()
            await client.send({"type": "reset-idle-timer", "data": {}})
            await client.wait_message("server-response", mark)
            round_trips.append(time.monotonic() - sent)
            await client.close()

        async def scenario() -> tuple[int, int, int, int]:
            await cycle()
            sim.wait_for_slots(0)
            threads, fds = native_threads(), _open_fds()
            for _ in range(CYCLES - 1):
                await cycle()
            sim.wait_for_slots(0)
            return threads, fds, native_threads(), _open_fds()

        threads_before, fds_before, threads_after, fds_after = asyncio.run(scenario())
        assert sim.sessions == []
        stats = sim.livekit_stats()
        assert stats["connections"] == 0
        assert stats["tasks"] == 0, stats
        assert stats["rooms"] <= CYCLES
    # The client keeps a fixed pool of native threads after its first room; it must not grow per room.
    assert threads_after - threads_before <= 3, (threads_before, threads_after)
    assert fds_after - fds_before <= 5, (fds_before, fds_after)  # no UDP ports or sockets left behind
    assert len(joins) == CYCLES and max(joins) < 5
    print(f"\njoin p50 {statistics.median(joins) * 1000:.0f} ms max {max(joins) * 1000:.0f} ms; "
          f"data round trip p50 {statistics.median(round_trips) * 1000:.1f} ms "
          f"max {max(round_trips) * 1000:.1f} ms; native threads {threads_before} -> {threads_after}")
    assert_only_routing_probes()
