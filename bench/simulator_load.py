"""Load benchmark: N concurrent sessions against the simulator, side by side with a bare echo server.

Each phase starts a fresh server in its own process (``python -m simulator`` or this file's
``--serve-echo``, both on 127.0.0.1), opens N sessions to it from this process (one asyncio loop, aiohttp
client WebSockets), sends M ``reset-idle-timer`` messages per second per session for the phase's
duration and measures the time to each ``server-response`` ack (echo: to each echoed frame). It reports
p50/p99 latency, errors and the server process's RSS (``/proc/<pid>/status``), then stops the server.

Everything is bounded: loopback only, at most ``MAX_SESSIONS`` sessions, and every wait has a deadline.

    python bench/simulator_load.py              # 2,000 @ 1/s for 10 s, then 1,000 @ 10/s for 10 s
    python bench/simulator_load.py --quick      # 200 @ 1/s and 100 @ 10/s, 3 s each
    python bench/simulator_load.py --sessions 500 --rate 5 --duration 5
    python bench/simulator_load.py --workers 2     # 1 worker vs 2 workers sharing a Redis, side by side

``--workers N`` compares ``convai-sim --workers 1 --state redis://...`` with ``--workers N`` (same Redis store, so
only the process count differs), each phase on a fresh ``redis-server`` this script starts on 127.0.0.1 without
persistence (Debian package ``redis-server``): sessions held, connects per second while opening them, the ack
p99, and what each connect cost in Redis: the workers' round trips (``GET /_sim/stats``), and the commands Redis
ran (its ``total_commands_processed``: the commands inside each Lua script count one by one; heartbeats included).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import STOP_TIMEOUT, process_cpu_seconds, stop_process
from simulator.http.fanout import LOCAL_HEADER

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
MAX_SESSIONS = 5000
OPEN_CONCURRENCY = 100
START_TIMEOUT = 15.0
#: Workers start one after another's imports on a shared machine: their supervisor may take longer.
WORKERS_START_TIMEOUT = 60.0
OPEN_TIMEOUT = 120.0
DRAIN_TIMEOUT = 5.0
MESSAGE = json.dumps({"label": "rtvi-ai", "type": "reset-idle-timer", "id": "bench", "data": {}})


@dataclass(frozen=True)
class Phase:
    sessions: int
    rate: float
    duration: float

    @property
    def label(self) -> str:
        return f"{self.sessions:,} @ {self.rate:g}/s, {self.duration:g} s"


@dataclass
class Result:
    target: str
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    opened: int = 0
    open_seconds: float = 0.0
    rss_kb: int = 0
    hwm_kb: int = 0
    cpu_percent: float = 0.0
    #: Redis commands processed while the sessions opened (``--workers`` rows only).
    redis_commands: int = 0
    #: Round trips the workers made to Redis while the sessions opened (their own count).
    round_trips: int = 0

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


# --------------------------------------------------------------------------- servers (child processes)


async def _serve_echo(port: int) -> None:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, backlog=1024)
    await site.start()
    print(f"listening on http://{HOST}:{runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    await stop.wait()
    await runner.cleanup()


class Redis:
    """A private ``redis-server`` on 127.0.0.1 without persistence, and its command counter."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("--workers needs redis-server (Debian: apt-get install -y redis-server)")
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            self.port = int(probe.getsockname()[1])
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly",
                                      "no"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.url = f"redis://{HOST}:{self.port}/0"

    async def ready(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while True:
            line = await asyncio.wait_for(loop.run_in_executor(None, stdout.readline), max(0.1, deadline - loop.time()))
            if not line:
                raise RuntimeError(f"redis-server exited before it was ready (rc={self.proc.poll()})")
            if "Ready to accept connections" in line:
                # Its log is not read from here on: redis-server logs little after start, and the pipe's buffer
                # holds that; it is closed at stop().
                return

    async def commands(self) -> int:
        """Commands Redis processed so far (INFO stats)."""
        import redis.asyncio as aioredis

        client = aioredis.Redis(host=HOST, port=self.port, socket_timeout=START_TIMEOUT)
        try:
            stats = await client.info("stats")
        finally:
            await client.aclose()
        return int(stats["total_commands_processed"])

    def stop(self) -> None:
        stop_process(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Server:
    """A server child process; ``url`` once it printed its listening line. ``target`` is ``sim``, ``echo``, or
    ``workers:N`` (``convai-sim --workers N --state <state>``)."""

    def __init__(self, target: str, state: str = "") -> None:
        self.target = target
        self.workers = 0
        self.pids: list[int] = []
        #: Each worker's own URL (workers mode), and the control token that reads its /_sim/stats.
        self.worker_urls: list[str] = []
        self.control_token = ""
        if target == "sim":
            command = [sys.executable, "-m", "simulator", "--host", HOST, "--port", "0", "--log-level", "WARNING"]
        elif target.startswith("workers:"):
            count = int(target.split(":", 1)[1])
            self.workers = count if count > 1 else 0  # one worker is a plain simulator process (same store)
            command = [sys.executable, "-m", "simulator", "--host", HOST, "--port", "0", "--log-level", "WARNING",
                       "--transport-default", "websocket", "--workers", str(count), "--state", state]
        else:
            command = [sys.executable, str(Path(__file__).resolve()), "--serve-echo"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.url = ""

    async def ready(self) -> str:
        stdout = self.proc.stdout
        assert stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (WORKERS_START_TIMEOUT if self.workers else START_TIMEOUT)
        while not self.url:
            line = await asyncio.wait_for(loop.run_in_executor(None, stdout.readline),
                                          max(0.1, deadline - loop.time()))
            if not line:
                raise RuntimeError(f"server exited before it was ready (rc={self.proc.poll()})")
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].split()[0]
        while not self.control_token and self.target != "echo":
            line = await asyncio.wait_for(loop.run_in_executor(None, stdout.readline),
                                          max(0.1, deadline - loop.time()))
            if not line:
                raise RuntimeError(f"server exited before it was ready (rc={self.proc.poll()})")
            if line.startswith("Control token: "):
                self.control_token = line.split()[2]
        while len(self.pids) < self.workers:  # the supervisor's banner then names each worker's pid
            line = await asyncio.wait_for(loop.run_in_executor(None, stdout.readline),
                                          max(0.1, deadline - loop.time()))
            if not line:
                raise RuntimeError(f"server exited before it was ready (rc={self.proc.poll()})")
            if line.startswith("Worker "):
                self.pids.append(int(line.split()[1].rstrip(":")))
                self.worker_urls.append(line.split()[2])
        return self.url

    async def store_round_trips(self, http: aiohttp.ClientSession) -> int:
        """Round trips to the plan store so far, summed over the workers (their ``GET /_sim/stats``, each asked for
        its own: a merged answer would count every worker once per worker and cost the peer look-up's trips)."""
        total = 0
        headers = {"X-Sim-Control-Token": self.control_token, LOCAL_HEADER: "1"}
        for url in self.worker_urls or [self.url]:
            async with http.get(f"{url}/_sim/stats", headers=headers) as answer:
                total += int((await answer.json())["store"]["round_trips"])
        return total

    def memory(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in kB."""
        values = {"VmRSS": 0, "VmHWM": 0}
        for pid in self.pids or [self.proc.pid]:  # workers: their sum
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    key = line.split(":", 1)[0]
                    if key in values:
                        values[key] += int(line.split()[1])
        return values["VmRSS"], values["VmHWM"]

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process (workers: all of them) has used."""
        total = 0.0
        for pid in self.pids or [self.proc.pid]:
            with contextlib.suppress(OSError):  # a worker that has exited
                total += process_cpu_seconds(pid)
        return total

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGINT)  # the simulator's graceful shutdown (workers: the supervisor's)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# --------------------------------------------------------------------------- load generator (this process)


class Client:
    """One session: its WebSocket and the send times of messages awaiting their ack."""

    __slots__ = ("pending", "ws")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        self.ws = ws
        self.pending: deque[float] = deque()


async def _open_sim(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse[bool]:
    body = {"character_id": "sim-character", "transport": "websocket", "connection_type": "audio"}
    async with http.post(f"{url}/connect", json=body, headers={"X-API-Key": "sim-api-key"}) as response:
        if response.status != 200:
            raise RuntimeError(f"/connect answered {response.status}")
        room_url = (await response.json())["room_url"]
    ws = await http.ws_connect(room_url, max_msg_size=0)
    while True:  # interaction-created, then bot-ready
        msg = await ws.receive()
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"session closed before bot-ready ({msg.type.name})")
        if '"bot-ready"' in msg.data:
            return ws


async def _open(http: aiohttp.ClientSession, target: str, url: str, gate: asyncio.Semaphore,
                result: Result) -> Client | None:
    async with gate:
        try:
            if target == "sim" or target.startswith("workers:"):
                ws = await _open_sim(http, url)
            else:
                ws = await http.ws_connect(f"{url.replace('http', 'ws', 1)}/ws", max_msg_size=0)
        except (aiohttp.ClientError, RuntimeError, OSError, asyncio.TimeoutError) as exc:
            result.error(f"open: {type(exc).__name__}: {exc}"[:80])
            return None
    return Client(ws)


async def _read(client: Client, result: Result, measuring: list[bool]) -> None:
    ws, pending = client.ws, client.pending
    async for msg in ws:
        if msg.type is not aiohttp.WSMsgType.TEXT:
            continue
        now = time.perf_counter()
        data: str = msg.data
        if data.startswith('{"type":"server-response"') or data == MESSAGE:
            if not pending:
                result.error("unexpected ack")
                continue
            sent = pending.popleft()
            if '"status":"error"' in data:
                result.error("error ack")
            elif measuring[0]:
                result.latencies.append(now - sent)
    if measuring[0]:
        result.error(f"closed by server ({ws.close_code})")


async def _send_loop(clients: list[Client], phase: Phase, result: Result) -> None:
    """Send ``phase.rate`` messages/s per session, spread evenly, until ``phase.duration`` is over."""
    interval = 1.0 / phase.rate
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + phase.duration
    schedule = [(start + random.random() * interval, index) for index in range(len(clients))]
    heapq.heapify(schedule)
    while schedule:
        now = loop.time()
        if now >= end:
            break
        while schedule and schedule[0][0] <= now:
            due, index = heapq.heappop(schedule)
            client = clients[index]
            if client.ws.closed:
                continue
            client.pending.append(time.perf_counter())
            try:
                await client.ws.send_str(MESSAGE)
            except (ConnectionError, RuntimeError):
                client.pending.pop()
                result.error("send failed")
                continue
            result.sent += 1
            if due + interval < end:
                heapq.heappush(schedule, (due + interval, index))
        if schedule:
            await asyncio.sleep(max(0.0, min(schedule[0][0], end) - loop.time()))


async def run_phase(target: str, phase: Phase, redis: Redis | None = None) -> Result:
    result = Result(target)
    server = Server(target, "" if redis is None else redis.url)
    try:
        url = await server.ready()
        commands = 0 if redis is None else await redis.commands()
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            gate = asyncio.Semaphore(OPEN_CONCURRENCY)
            trips = await server.store_round_trips(http) if redis is not None else 0
            began = time.perf_counter()
            opened = await asyncio.wait_for(
                asyncio.gather(*(_open(http, target, url, gate, result) for _ in range(phase.sessions))),
                OPEN_TIMEOUT)
            result.open_seconds = time.perf_counter() - began
            if redis is not None:
                result.redis_commands = await redis.commands() - commands - 1  # less the INFO itself
                result.round_trips = await server.store_round_trips(http) - trips
            clients = [c for c in opened if c is not None]
            result.opened = len(clients)
            measuring = [True]
            readers = [asyncio.create_task(_read(c, result, measuring)) for c in clients]
            cpu_before, wall_before = server.cpu_seconds(), time.perf_counter()
            await _send_loop(clients, phase, result)
            result.cpu_percent = 100 * (server.cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before)
            deadline = time.perf_counter() + DRAIN_TIMEOUT
            while any(c.pending for c in clients) and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)  # bench pacing: let the last acks arrive
            missing = sum(len(c.pending) for c in clients)
            if missing:
                result.errors += missing
                result.error_kinds["no ack"] = missing
            result.rss_kb, result.hwm_kb = server.memory()
            measuring[0] = False
            await asyncio.wait_for(asyncio.gather(*(c.ws.close() for c in clients), return_exceptions=True),
                                   STOP_TIMEOUT)
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    finally:
        server.stop()
    return result


# --------------------------------------------------------------------------- report


def _ms(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f} ms"


def report(rows: list[tuple[Phase, Result, Result | None]]) -> bool:
    header = (f"{'scenario':<22} {'sim p50':>9} {'sim p99':>9} {'echo p50':>9} {'echo p99':>9} {'p99 ratio':>9}  "
              f"{'target':<24} {'errors sim/echo':>15} {'RSS sim/echo (MB)':>18}")
    print(header)
    print("-" * len(header))
    all_pass = True
    for phase, sim, echo in rows:
        ratio = sim.percentile(0.99) / echo.percentile(0.99) if echo and echo.latencies else float("nan")
        if phase.rate <= 1:
            passed = ratio <= 2.0 and sim.errors == 0
            target = f"p99 <= 2x echo: {'PASS' if passed else 'FAIL'}"
        else:
            passed = sim.errors == 0
            target = f"0 errors: {'PASS' if passed else 'FAIL'}"
        all_pass &= passed
        echo_p50, echo_p99 = (echo.percentile(0.5), echo.percentile(0.99)) if echo else (float("nan"),) * 2
        errors = f"{sim.errors}/{echo.errors if echo else '-'}"
        rss = f"{sim.rss_kb / 1024:.0f}/{echo.rss_kb / 1024:.0f}" if echo else f"{sim.rss_kb / 1024:.0f}/-"
        print(f"{phase.label:<22} {_ms(sim.percentile(0.5)):>9} {_ms(sim.percentile(0.99)):>9} {_ms(echo_p50):>9} "
              f"{_ms(echo_p99):>9} {ratio:>9.2f}  {target:<24} {errors:>15} {rss:>18}")
    print()
    for phase, sim, echo in rows:
        for result in (sim, echo):
            if result is None:
                continue
            print(f"  {phase.label} {result.target}: {result.opened} sessions opened in {result.open_seconds:.1f} s, "
                  f"{result.sent:,} sent, {len(result.latencies):,} acks timed, server CPU "
                  f"{result.cpu_percent:.0f}% of a core, peak RSS "
                  f"{result.hwm_kb / 1024:.0f} MB" + (f", errors {result.error_kinds}" if result.errors else ""))
    return all_pass


def report_workers(count: int, rows: list[tuple[Phase, Result, Result]]) -> bool:
    """1 worker vs ``count`` workers, side by side; True when neither side had errors."""
    header = (f"{'scenario':<22} {'workers':>7} {'held':>6} {'connects/s':>10} {'ack p50':>9} {'ack p99':>9} "
              f"{'round trips/connect':>19} {'Redis cmds/connect':>18} {'CPU % of a core':>15} {'errors':>6}")
    print(header)
    print("-" * len(header))
    clean = True
    for phase, one, many in rows:
        for workers, result in ((1, one), (count, many)):
            rate = result.opened / result.open_seconds if result.open_seconds else float("nan")
            per_connect = result.redis_commands / result.opened if result.opened else float("nan")
            trips = result.round_trips / result.opened if result.opened else float("nan")
            print(f"{phase.label:<22} {workers:>7} {result.opened:>6,} {rate:>10.0f} "
                  f"{_ms(result.percentile(0.5)):>9} {_ms(result.percentile(0.99)):>9} {trips:>19.2f} "
                  f"{per_connect:>18.2f} "
                  f"{result.cpu_percent:>15.0f} {result.errors:>6}")
            clean &= result.errors == 0
    return clean


async def workers_async(args: argparse.Namespace) -> bool:
    rows: list[tuple[Phase, Result, Result]] = []
    for phase in _phases(args):
        results = []
        for count in (1, args.workers):
            print(f"phase {phase.label}: {count} worker(s) sharing a fresh Redis...", flush=True)
            redis = Redis()
            try:
                await redis.ready()
                results.append(await run_phase(f"workers:{count}", phase, redis))
            finally:
                redis.stop()
        rows.append((phase, results[0], results[1]))
    print()
    return report_workers(args.workers, rows)


def _phases(args: argparse.Namespace) -> list[Phase]:
    if args.sessions is not None or args.rate is not None or args.duration is not None:
        phases = [Phase(args.sessions or 200, args.rate or 1.0, args.duration or 10.0)]
    elif args.quick:
        phases = [Phase(200, 1.0, 3.0), Phase(100, 10.0, 3.0)]
    else:
        phases = [Phase(2000, 1.0, 10.0), Phase(1000, 10.0, 10.0)]
    for phase in phases:
        if not (1 <= phase.sessions <= MAX_SESSIONS and 0 < phase.rate <= 100 and 0 < phase.duration <= 120):
            raise SystemExit(f"bounds: 1..{MAX_SESSIONS} sessions, rate 0..100/s, duration 0..120 s; got {phase}")
    return phases


def _raise_fd_limit(sessions: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 2 * sessions + 256))
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # inherited by the server processes


async def main_async(args: argparse.Namespace) -> bool:
    rows: list[tuple[Phase, Result, Result | None]] = []
    for phase in _phases(args):
        print(f"phase {phase.label}: simulator...", flush=True)
        sim = await run_phase("sim", phase)
        echo = None
        if not args.no_echo:
            print(f"phase {phase.label}: bare echo...", flush=True)
            echo = await run_phase("echo", phase)
        rows.append((phase, sim, echo))
    print()
    if args.json:
        Path(args.json).write_text(json.dumps([
            {"phase": phase.label, **{name: None if result is None else {
                "p50_ms": result.percentile(0.5), "p99_ms": result.percentile(0.99), "errors": result.errors,
                "opened": result.opened, "sent": result.sent} for name, result in (("sim", sim), ("echo", echo))}}
            for phase, sim, echo in rows]))
    return report(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, help="sessions of a single custom phase")
    parser.add_argument("--rate", type=float, help="messages per second per session (custom phase)")
    parser.add_argument("--duration", type=float, help="seconds of sending (custom phase)")
    parser.add_argument("--quick", action="store_true", help="200 @ 1/s and 100 @ 10/s, 3 s each")
    parser.add_argument("--no-echo", action="store_true", help="skip the bare echo baseline")
    parser.add_argument("--json", metavar="FILE", help="also write each phase's figures as JSON")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="compare 1 worker with N workers sharing a Redis (needs redis-server); no echo")
    parser.add_argument("--serve-echo", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workers is not None and not 2 <= args.workers <= 16:
        parser.error(f"--workers takes 2..16, got {args.workers}")
    if args.serve_echo:
        asyncio.run(_serve_echo(0))
        return 0
    _raise_fd_limit(max(p.sessions for p in _phases(args)))
    if args.workers is not None:
        return 0 if asyncio.run(workers_async(args)) else 1
    return 0 if asyncio.run(main_async(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
