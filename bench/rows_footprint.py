"""Footprint of one connected idle client: CPU, threads, RSS per extra client; LiveKit beside a raw room.

WebSocket CPU is that of the SDK's own threads (``convai-*``, from ``/proc/self/task``); LiveKit CPU is
the whole process's (the livekit library's native threads cannot be told apart), beside the same figure
for a raw ``rtc.Room``. Run the simulator out of process (the default) for clean figures.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from bench.common import (
    Row,
    SimHandle,
    client_config,
    na,
    native_threads,
    process_cpu_seconds,
    rss_kib,
    thread_cpu_seconds,
)
from bench.rows_livekit import RawRoom, livekit_info, release
from bench.rows_ws import RawSession
from convai_sync import (
    ConvaiClient,
)

WAIT = 20.0


def _settle() -> None:
    """Let a connect's leftovers end (its worker thread, the POST's log line) before measuring idleness."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(t.name.startswith(("convai-connect-", "convai-http-"))
                                              for t in threading.enumerate()):
        time.sleep(0.01)  # bench pacing, bounded
    time.sleep(0.5)


def _idle_cpu(seconds: float) -> float:
    """Percent of one core this process used while the caller's connections sat idle."""
    _settle()
    before, start = process_cpu_seconds(), time.monotonic()
    time.sleep(seconds)  # measuring idleness: there is nothing to wait for
    return 100.0 * (process_cpu_seconds() - before) / (time.monotonic() - start)


def _sdk_threads_cpu(seconds: float) -> float:
    """Percent of one core used by the SDK's own threads (``convai-*``) over an idle window."""
    _settle()
    threads = [t.native_id for t in threading.enumerate() if t.name.startswith("convai-") and t.native_id]
    before, start = sum(thread_cpu_seconds(n) for n in threads), time.monotonic()
    time.sleep(seconds)  # measuring idleness: there is nothing to wait for
    return 100.0 * (sum(thread_cpu_seconds(n) for n in threads) - before) / (time.monotonic() - start)


def footprint_rows(sim: SimHandle, quick: bool, livekit_sdk: Callable[[], bool]) -> list[Row]:
    idle = 3.0 if quick else 10.0
    clients = 30 if quick else 100
    group = "Footprint"
    rows: list[Row] = []
    # -- one idle client: CPU and threads (WebSocket first, before any LiveKit room starts the livekit
    #    library's native threads in this process)
    threads_before = threading.active_count()
    with ConvaiClient(client_config(sim)) as client:
        client.connect(timeout=WAIT)
        _settle()
        threads = threading.active_count() - threads_before
        sdk_cpu = _sdk_threads_cpu(idle)
    raw = RawSession(sim)
    raw_cpu = _idle_cpu(idle)
    raw.close()
    rows.append(Row(group, f"WebSocket idle CPU over {idle:g} s", "%", sdk_cpu, raw_cpu, "value<=", 0.2,
                    "the SDK's threads; baseline: this process with a raw idle websocket-client connection"))
    rows.append(Row(group, "WebSocket Python threads per client", "", float(threads), 0.0, "value<=", 3,
                    "session thread + transport reader (writer only while the peer is slow)"))
    # -- RSS per extra client
    rows.append(_rss_row(sim, clients))
    # -- LiveKit: the raw client's own figures, the SDK's beside them when it exists
    raw_cpu_lk, raw_threads = asyncio.run(_raw_livekit_idle(sim, idle))
    if livekit_sdk():
        python_before = threading.active_count()
        with ConvaiClient(client_config(sim, transport="livekit")) as client:
            client.connect(timeout=WAIT)
            _settle()
            lk_python = threading.active_count() - python_before
            lk_native = native_threads() - threading.active_count()
            lk_cpu = _idle_cpu(idle)
        rows.append(Row(group, f"LiveKit idle CPU over {idle:g} s", "%", lk_cpu, raw_cpu_lk, "info", None,
                        "baseline: a raw idle rtc.Room"))
        rows.append(Row(group, "LiveKit native threads, one room", "", float(lk_native), float(raw_threads), "info",
                        None, "the livekit library's threads (they outlive a room and do not grow)"))
        rows.append(Row(group, "LiveKit Python threads per client", "", float(lk_python), 0.0, "value<=", 3))
    else:
        row = na(group, f"LiveKit idle CPU over {idle:g} s", "%", "transport not available")
        row.baseline = raw_cpu_lk
        rows.append(row)
        row = na(group, "LiveKit native threads, one room", "", "transport not available")
        row.baseline = float(raw_threads)
        rows.append(row)
    return rows


def _rss_row(sim: SimHandle, count: int) -> Row:
    def sdk_open() -> Callable[[], None]:
        client = ConvaiClient(client_config(sim))
        client.connect(timeout=WAIT)
        return client.close

    def raw_open() -> Callable[[], None]:
        return RawSession(sim).close

    def per_client(opener: Callable[[], Callable[[], None]]) -> float:
        closers = [opener()]
        first = rss_kib()
        try:
            for _ in range(count - 1):
                closers.append(opener())
            return (rss_kib() - first) / (count - 1)
        finally:
            for close in closers:
                close()

    raw = per_client(raw_open)
    sdk = per_client(sdk_open)
    return Row("Footprint", f"WebSocket RSS per extra client ({count} clients)", "KiB", sdk, raw, "value<=", 256,
               "baseline: raw websocket-client sessions")


async def _raw_livekit_idle(sim: SimHandle, seconds: float) -> tuple[float, int]:
    raw = RawRoom.new()
    info = livekit_info(sim)
    await asyncio.wait_for(raw.room.connect(info["room_url"], info["token"]), WAIT)
    await raw.wait(lambda: raw.index_of("bot-ready", 0) is not None)
    # The livekit library's native threads outlive a room (12-13 stay after disconnect), so count them all: the
    # process's threads that are not Python threads, with one room connected.
    threads = native_threads() - threading.active_count()
    cpu_before, start = process_cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)  # measuring idleness
    cpu = 100.0 * (process_cpu_seconds() - cpu_before) / (time.monotonic() - start)
    await raw.close()
    release(sim, info["session_id"])
    return cpu, threads
