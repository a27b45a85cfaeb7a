"""Footprint of a connected idle client (CPU, threads, RSS per client) and shutdown times per state.

CPU is this process's user+system time over the idle window (``/proc/self/stat``), so run the
simulator out of process (the default) for a clean figure; ``--inproc`` adds the simulator's share.
Shutdown states come from ``tests/support/peers.py``'s misbehaving peers where the simulator is too
polite to produce them (a hung ``/connect`` or handshake, no ``bot-ready``, a silent or stalled peer,
a hung ``/disconnect``).
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
    percentile,
    process_cpu_seconds,
    rss_kib,
)
from bench.rows_livekit import RawRoom, livekit_info, release
from bench.rows_ws import RawSession
from convai_sync import (
    ConvaiClient,
    ConvaiConfig,
    ConvaiError,
    DisconnectReason,
    ReconnectPolicy,
    RetryPolicy,
)
from tests.support.peers import Mode, Peer

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


def footprint_rows(sim: SimHandle, quick: bool, livekit_sdk: bool) -> list[Row]:
    idle = 3.0 if quick else 10.0
    clients = 30 if quick else 100
    group = "Footprint"
    rows: list[Row] = []
    # -- one idle client: CPU and threads
    threads_before = threading.active_count()
    with ConvaiClient(client_config(sim)) as client:
        client.connect(timeout=WAIT)
        _settle()
        threads = threading.active_count() - threads_before
        sdk_cpu = _idle_cpu(idle)
    raw = RawSession(sim)
    raw_cpu = _idle_cpu(idle)
    raw.close()
    rows.append(Row(group, f"WebSocket idle CPU over {idle:g} s", "%", sdk_cpu, raw_cpu, "value<=", 0.2,
                    "baseline: a raw idle websocket-client connection"))
    rows.append(Row(group, "WebSocket Python threads per client", "", float(threads), 0.0, "value<=", 3,
                    "session thread + transport reader (writer only while the peer is slow)"))
    # -- RSS per extra client
    rows.append(_rss_row(sim, clients))
    # -- LiveKit: the raw client's own figures, the SDK's beside them when it exists
    raw_cpu_lk, raw_threads = asyncio.run(_raw_livekit_idle(sim, idle))
    if livekit_sdk:
        with ConvaiClient(client_config(sim, transport="livekit")) as client:
            client.connect(timeout=WAIT)
            lk_native = native_threads() - threading.active_count()
            lk_cpu = _idle_cpu(idle)
        rows.append(Row(group, f"LiveKit idle CPU over {idle:g} s", "%", lk_cpu, raw_cpu_lk, "info", None,
                        "baseline: a raw idle rtc.Room"))
        rows.append(Row(group, "LiveKit native threads, one room", "", float(lk_native), float(raw_threads)))
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


# --------------------------------------------------------------------------- shutdown


def _timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _peer_config(peer: Peer, **kw: object) -> ConvaiConfig:
    fields: dict[str, object] = {"api_key": "sim-api-key", "character_id": "sim-character", "url": peer.url,
                                 "retry_policy": RetryPolicy(max_attempts=1)}
    fields.update(kw)
    return ConvaiConfig(**fields)  # type: ignore[arg-type]


def _while_connecting(config: ConvaiConfig, ready: Callable[[], None], method: str) -> float:
    """Time ``disconnect()``/``close()`` while ``connect()`` blocks in another thread."""
    client = ConvaiClient(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            client.connect(timeout=WAIT)
        except ConvaiError as exc:
            errors.append(exc)
    thread = threading.Thread(target=run, name="bench-connect", daemon=True)
    thread.start()
    ready()
    took = _timed(getattr(client, method))
    thread.join(WAIT)
    client.close()
    return took


def _peer_case(mode: Mode, method: str, stage: str) -> float:
    with Peer(mode) as peer:
        config = _peer_config(peer, connection_timeout=WAIT)
        if stage == "connecting":
            def seen() -> None:
                wanted = "GET /chat" if mode.connect == "ok" else "POST /connect"
                peer.seen.wait(lambda: any(r.startswith(wanted) for r in peer.seen.requests), WAIT)
            return _while_connecting(config, seen, method)
        client = ConvaiClient(config)
        try:
            client.connect(timeout=WAIT)
            if mode.after_ready == "stall":
                for _ in range(2000):  # fill the TCP buffers so a frame waits in the SDK's queue
                    try:
                        client.update_dynamic_info("x" * 1024)
                    except ConvaiError:
                        break
            return _timed(getattr(client, method))
        finally:
            client.close()


def _sim_case(sim: SimHandle, state: str, method: str) -> float:
    if state == "connected":
        client = ConvaiClient(client_config(sim))
        client.connect(timeout=WAIT)
        try:
            return _timed(getattr(client, method))
        finally:
            client.close()
    if state == "reconnecting":
        client = ConvaiClient(client_config(sim, reconnect_policy=ReconnectPolicy(delays=(30.0, 30.0, 30.0))))
        client.connect(timeout=WAIT)
        try:
            got = threading.Event()
            client.events.on_reconnecting.subscribe(lambda _e: got.set())
            _drop(sim, client.session_id or "")
            if not got.wait(WAIT):
                raise TimeoutError("no Reconnecting")
            return _timed(getattr(client, method))
        finally:
            client.close()
    client = ConvaiClient(client_config(sim))  # never connected
    try:
        return _timed(getattr(client, method))
    finally:
        client.close()


def _drop(sim: SimHandle, session_id: str) -> None:
    import requests

    answer = requests.post(f"{sim.url}/_sim/inject", json={"code": DisconnectReason.SIGNAL_CLOSE.name,
                                                            "session_id": session_id},
                           headers={"X-Sim-Control-Token": sim.control_token}, timeout=WAIT)
    answer.raise_for_status()


def _error_case(method: str) -> float:
    with Peer(Mode(connect="error503")) as peer:
        client = ConvaiClient(_peer_config(peer))
        try:
            try:
                client.connect(timeout=WAIT)
            except ConvaiError:
                pass  # the point: the session is now in ERROR
            return _timed(getattr(client, method))
        finally:
            client.close()


def shutdown_rows(sim: SimHandle, quick: bool, livekit_sdk: bool) -> list[Row]:
    repeat = 2 if quick else 5
    cases: list[tuple[str, Callable[[str], float]]] = [
        ("connected (simulator)", lambda m: _sim_case(sim, "connected", m)),
        ("never connected", lambda m: _sim_case(sim, "never", m)),
        ("RECONNECTING (backoff)", lambda m: _sim_case(sim, "reconnecting", m)),
        ("ERROR", _error_case),
        ("CONNECTING: /connect hangs", lambda m: _peer_case(Mode(connect="hang"), m, "connecting")),
        ("CONNECTING: handshake hangs", lambda m: _peer_case(Mode(handshake="hang"), m, "connecting")),
        ("CONNECTING: no bot-ready", lambda m: _peer_case(Mode(bot_ready=False), m, "connecting")),
        ("connected: silent peer", lambda m: _peer_case(Mode(after_ready="silent"), m, "connected")),
        ("connected: peer ignores close", lambda m: _peer_case(Mode(after_ready="ignore_close"), m, "connected")),
        ("connected: peer stopped reading", lambda m: _peer_case(Mode(after_ready="stall"), m, "connected")),
        ("connected: /disconnect hangs", lambda m: _peer_case(Mode(disconnect="hang"), m, "connected")),
    ]
    rows: list[Row] = []
    connected_times: list[float] = []
    worst = 0.0
    worst_case = ""
    for label, case in cases:
        times = {method: [case(method) for _ in range(repeat)] for method in ("disconnect", "close")}
        if label.startswith("connected (simulator)"):
            connected_times += times["disconnect"] + times["close"]
        longest = max(max(t) for t in times.values())
        if longest > worst:
            worst, worst_case = longest, label
        rows.append(Row("Shutdown (WebSocket)", f"{label}: max", "s", longest, None, "value<=", 1.0,
                        f"disconnect() {max(times['disconnect']) * 1e3:.0f} ms, close() "
                        f"{max(times['close']) * 1e3:.0f} ms"))
    connected_times += [_sim_case(sim, "connected", "disconnect") for _ in range(8 if quick else 40)]
    rows.insert(0, Row("Shutdown (WebSocket)", "disconnect()/close() when connected p50", "s",
                       percentile(connected_times, 0.5), None, "value<=", 0.05, f"{len(connected_times)} runs"))
    rows.insert(1, Row("Shutdown (WebSocket)", "worst case, every state", "s", worst, None, "value<=", 1.0, worst_case))
    if not livekit_sdk:
        rows.append(na("Shutdown (LiveKit)", "disconnect()/close() in each state", "s", "transport not available"))
    return rows
