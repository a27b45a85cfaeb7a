"""The capacity row's load generator speaks LiveKit's protocol to the simulator and measures a spoken reply.

``bench/lk_wire.py``'s participant stands in for the real client in ``bench/run.py --only lkcapacity``; if the
simulator's LiveKit side changes under it, the row would report a capacity of 0 for the wrong reason. This
runs one small level of the ramp, two participants in two generator processes, against an in-process
simulator over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio

import pytest

from bench import rows_capacity
from bench.common import SimInproc


@pytest.mark.timeout(120)
def test_a_small_level_is_heard_on_time_by_wire_participants() -> None:
    sim = SimInproc()
    try:
        _ok, stats = asyncio.run(rows_capacity._level(sim, 2, 2, "wire"))
    finally:
        sim.stop()
    assert "failures" not in stats, stats
    # every reply was acknowledged, spoken and voiced: the figures exist and are causal (after the ask)
    for name in ("ack_p99", "speaking_p99", "audio_p99"):
        assert 0 < stats[name] < rows_capacity.WAIT, (name, stats)
    # the voice arrived paced in real time, not as a burst: its arrival span is close to its RTP span
    assert abs(stats["stall_max"]) < 1.0, stats
