"""Shutdown rows: ``disconnect()`` and ``close()`` in each state, on each transport (<= 1 s always;
p50 <= 50 ms when connected).

States the simulator produces run on both transports: connected, never connected, RECONNECTING (in a
long backoff), CONNECTING (waiting for a ``bot-ready`` the simulator delays), ERROR (a refused connect).
States only a misbehaving server produces come from ``tests/support/peers.py`` (WebSocket only: a hung
``/connect`` or handshake, no ``bot-ready``, a silent peer, one that ignores the close frame, one that
stopped reading, a hung ``/disconnect``).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable

import requests

from bench.common import Row, SimHandle, SimProcess, client_config, percentile
from convai_sync import ConvaiClient, ConvaiConfig, ConvaiError, DisconnectReason, ReconnectPolicy, RetryPolicy
from tests.support.peers import Mode, Peer

WAIT = 20.0
LIMIT = 1.0


def _timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _while_connecting(client: ConvaiClient, ready: Callable[[], None], method: str) -> float:
    """Time ``disconnect()``/``close()`` while ``connect()`` blocks in another thread."""
    thread = threading.Thread(target=_connect_quietly, args=(client,), name="bench-connect", daemon=True)
    thread.start()
    ready()
    took = _timed(getattr(client, method))
    thread.join(WAIT)
    client.close()
    return took


def _connect_quietly(client: ConvaiClient) -> None:
    try:
        client.connect(timeout=WAIT)
    except ConvaiError:
        pass  # cancelled by the disconnect() being timed


def _peer_config(peer: Peer) -> ConvaiConfig:
    return ConvaiConfig(api_key="sim-api-key", character_id="sim-character", url=peer.url,
                        retry_policy=RetryPolicy(max_attempts=1), connection_timeout=WAIT)


def _peer_case(mode: Mode, method: str, stage: str) -> float:
    with Peer(mode) as peer:
        client = ConvaiClient(_peer_config(peer))
        if stage == "connecting":
            wanted = "GET /chat" if mode.connect == "ok" else "POST /connect"
            return _while_connecting(client, lambda: peer.seen.wait(
                lambda: any(r.startswith(wanted) for r in peer.seen.requests), WAIT), method)
        try:
            client.connect(timeout=WAIT)
            if mode.after_ready == "stall":
                for _ in range(2000):  # fill the TCP buffers so frames wait in the SDK's queue
                    try:
                        client.update_dynamic_info("x" * 1024)
                    except ConvaiError:
                        break
            return _timed(getattr(client, method))
        finally:
            client.close()


class _Sims:
    """The shared simulator plus, on demand, one that delays bot-ready and one that refuses connects."""

    def __init__(self, sim: SimHandle) -> None:
        self.sim = sim
        self._slow: SimProcess | None = None
        self._refusing: SimProcess | None = None

    @property
    def slow(self) -> SimProcess:
        if self._slow is None:
            self._slow = SimProcess(extra=["--bot-ready-delay", "60"])
        return self._slow

    @property
    def refusing(self) -> SimProcess:
        if self._refusing is None:
            self._refusing = SimProcess(extra=["--no-realtime"])
        return self._refusing

    def stop(self) -> None:
        for sim in (self._slow, self._refusing):
            if sim is not None:
                sim.stop()


def _sim_case(sims: _Sims, transport: str, state: str, method: str) -> float:
    sim = sims.sim
    if state == "connecting":
        slow = sims.slow
        client = ConvaiClient(client_config(slow, transport=transport, connection_timeout=WAIT))
        return _while_connecting(client, lambda: _wait_pending_session(slow), method)
    if state == "error":
        client = ConvaiClient(client_config(sims.refusing, transport=transport))
        try:
            try:
                client.connect(timeout=WAIT)
            except ConvaiError:
                pass  # the point: the session is now in ERROR
            return _timed(getattr(client, method))
        finally:
            client.close()
    overrides: dict[str, object] = {"transport": transport}
    if state == "reconnecting":
        overrides["reconnect_policy"] = ReconnectPolicy(delays=(30.0,))
    client = ConvaiClient(client_config(sim, **overrides))
    try:
        if state == "never":
            return _timed(getattr(client, method))
        client.connect(timeout=WAIT)
        if state == "reconnecting":
            got = threading.Event()
            client.events.on_reconnecting.subscribe(lambda _e: got.set())
            _inject(sim, DisconnectReason.SIGNAL_CLOSE.name, client.session_id or "")
            if not got.wait(WAIT):
                raise TimeoutError("no Reconnecting")
        return _timed(getattr(client, method))
    finally:
        client.close()


def _control(sim: SimHandle, method: str, route: str, body: dict[str, object] | None = None) -> requests.Response:
    answer = requests.request(method, f"{sim.url}/_sim/{route}", json=body,
                              headers={"X-Sim-Control-Token": sim.control_token}, timeout=WAIT)
    answer.raise_for_status()
    return answer


def _inject(sim: SimHandle, code: str, session_id: str) -> None:
    _control(sim, "POST", "inject", {"code": code, "session_id": session_id})


def _wait_pending_session(sim: SimHandle) -> None:
    """Until the simulator has a session whose transport is open but whose bot-ready is still delayed."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        sessions = _control(sim, "GET", "sessions").json()["sessions"]
        if any(s.get("open") for s in sessions):
            return
        time.sleep(0.005)  # bench pacing, bounded
    raise TimeoutError("the client never opened its transport")


def _transport_rows(transport: str, cases: list[tuple[str, Callable[[str], float]]], repeat: int,
                    connected_extra: Callable[[], float], extra_runs: int) -> list[Row]:
    group = f"Shutdown ({'WebSocket' if transport == 'websocket' else 'LiveKit'})"
    rows: list[Row] = []
    connected: list[float] = []
    worst, worst_case = 0.0, ""
    for label, case in cases:
        times = {method: [case(method) for _ in range(repeat)] for method in ("disconnect", "close")}
        if label == "connected":
            connected += times["disconnect"] + times["close"]
        longest = max(max(t) for t in times.values())
        if longest > worst:
            worst, worst_case = longest, label
        rows.append(Row(group, f"{label}: max", "s", longest, None, "value<=", LIMIT,
                        f"disconnect() {max(times['disconnect']) * 1e3:.0f} ms, close() "
                        f"{max(times['close']) * 1e3:.0f} ms"))
    connected += [connected_extra() for _ in range(extra_runs)]
    return [Row(group, "disconnect()/close() when connected p50", "s", percentile(connected, 0.5), None,
                "value<=", 0.05, f"{len(connected)} runs"),
            Row(group, "worst case, every state", "s", worst, None, "value<=", LIMIT, worst_case), *rows]


def shutdown_rows(sim: SimHandle, quick: bool, livekit_sdk: Callable[[], bool]) -> list[Row]:
    repeat = 2 if quick else 5
    sims = _Sims(sim)
    rows: list[Row] = []
    try:
        for transport in ("websocket", "livekit") if livekit_sdk() else ("websocket",):
            def case(state: str, t: str = transport) -> Callable[[str], float]:
                return lambda method: _sim_case(sims, t, state, method)
            cases = [("connected", case("connected")), ("never connected", case("never")),
                     ("RECONNECTING (backoff)", case("reconnecting")),
                     ("CONNECTING: waiting for bot-ready", case("connecting")), ("ERROR", case("error"))]
            if transport == "websocket":
                cases += [
                    ("CONNECTING: /connect hangs", lambda m: _peer_case(Mode(connect="hang"), m, "connecting")),
                    ("CONNECTING: handshake hangs", lambda m: _peer_case(Mode(handshake="hang"), m, "connecting")),
                    ("CONNECTING: no bot-ready (peer)", lambda m: _peer_case(Mode(bot_ready=False), m, "connecting")),
                    ("connected: silent peer", lambda m: _peer_case(Mode(after_ready="silent"), m, "connected")),
                    ("connected: peer ignores close",
                     lambda m: _peer_case(Mode(after_ready="ignore_close"), m, "connected")),
                    ("connected: peer stopped reading",
                     lambda m: _peer_case(Mode(after_ready="stall"), m, "connected")),
                    ("connected: /disconnect hangs", lambda m: _peer_case(Mode(disconnect="hang"), m, "connected")),
                ]
            extra = 8 if quick else 40
            connected = case("connected")
            rows += _transport_rows(transport, cases, repeat, functools.partial(connected, "disconnect"), extra)
    finally:
        sims.stop()
    return rows
