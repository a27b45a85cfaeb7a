"""Soak, short: connect/ask/close cycles against one simulator leave nothing behind (WebSocket, LiveKit).

The same code as ``bench/soak.py`` (1,000 cycles per transport there). The simulator runs in its own
process (``python -m simulator`` on 127.0.0.1), so the RSS measured here is the client's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.common import SimProcess, client_config
from bench.soak import raw_livekit_growth, soak
from convai_sync import ConvaiClient, ConvaiConfig

CYCLES = 100
LIVEKIT_CYCLES = 40
RSS_LIMIT_KIB = 5 * 1024


@pytest.fixture(scope="module")
def sim_process() -> Iterator[SimProcess]:
    sim = SimProcess()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.mark.timeout(120)
def test_websocket_cycles_leak_no_thread_fd_or_memory(sim_process: SimProcess) -> None:
    result = soak(client_config(sim_process), CYCLES)
    assert result.problems(RSS_LIMIT_KIB) == [], result.summary()
    assert result.leaked_threads == []
    assert result.after.fds <= result.before.fds
    assert result.after.native_threads <= result.before.native_threads


@pytest.mark.timeout(180)
def test_livekit_cycles_leak_nothing_beyond_the_livekit_library(sim_process: SimProcess) -> None:
    """LiveKit: no Python thread or fd left, native threads flat, RSS no worse than the raw client's.

    The livekit library keeps ~330 KiB per joined room (livekit/python-sdks #449), so the RSS bound
    is the same number of raw ``rtc.Room`` cycles' growth plus 5 MiB.
    """
    result = soak(client_config(sim_process, transport="livekit", tts_enabled=False), LIVEKIT_CYCLES, warmup=10)
    raw = raw_livekit_growth(sim_process, LIVEKIT_CYCLES, warmup=0)
    assert result.problems(RSS_LIMIT_KIB + max(0, raw)) == [], (result.summary(), f"raw growth {raw} KiB")


@pytest.mark.timeout(60)
def test_soak_detects_a_client_left_open(sim_process: SimProcess) -> None:
    """The check itself can fail: clients never closed show up as leaked threads and fds."""
    clients: list[ConvaiClient] = []

    def leaky(config: ConvaiConfig) -> None:
        client = ConvaiClient(config)
        client.connect(timeout=30)
        clients.append(client)  # not closed until the soak has measured

    try:
        result = soak(client_config(sim_process), 3, warmup=0, run_cycle=leaky, native_settle=0.2)
    finally:
        for client in clients:
            client.close()
    problems = result.problems(RSS_LIMIT_KIB)
    assert any("Python threads left over" in p for p in problems), problems
    assert any("file descriptors grew" in p for p in problems), problems
