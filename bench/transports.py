"""LiveKit vs WebSocket through ``ConvaiClient`` on loopback (prints figures; not a test).

    python bench/transports.py [--connects 20] [--asks 10] [--idle 10]

The simulator runs in a child process (so this process's CPU and threads are the client's alone),
with a two-word reply so an ``ask`` measures the round trip rather than the scripted voice's length.
This process re-executes itself under the loopback shim (convai_sync/loopback.py), which the real
``livekit`` client needs on a machine whose only address is 127.0.0.1. Figures, per transport:

* ``connect()`` wall time (p50 / max over ``--connects`` fresh clients), and one ``connect()`` +
  ``close()`` cycle's Python and native thread counts;
* ``ask()`` round trip (p50) and an acknowledged ``reset_idle_timer(wait=True)`` (p50);
* LiveKit: the delay from ``bot-started-speaking`` reaching the client to the first audible frame on
  ``on_audio`` (p50);
* CPU of this process while one client sits connected and idle for ``--idle`` seconds (LiveKit with
  and without ``receive_audio``).
"""

from __future__ import annotations

import argparse
import array
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from convai_sync.loopback import ensure_loopback_preload  # noqa: E402

CHILD = """
import sys, threading
from simulator import Simulator
with Simulator(responder=lambda text: "Hi there!") as sim:
    print(sim.url, flush=True)
    sys.stdin.read()
"""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _peak(pcm: bytes) -> int:
    samples = array.array("h")
    samples.frombytes(pcm)
    return max(max(samples), -min(samples)) if samples else 0


def _ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"


def run(url: str, transport: str, args: argparse.Namespace) -> None:
    from convai_sync import BotStartedSpeaking, ConvaiClient, ConvaiConfig, EventDeliveryPolicy

    def config(**overrides: Any) -> ConvaiConfig:
        return ConvaiConfig(api_key="sim-api-key", character_id="sim-character", url=url, transport=transport,
                            **overrides)

    print(f"--- {transport}")
    connects: list[float] = []
    python_before, native_before = threading.active_count(), _native_threads()
    for _ in range(args.connects):
        with ConvaiClient(config()) as client:
            started = time.monotonic()
            client.connect(timeout=30)
            connects.append(time.monotonic() - started)
            python_connected, native_connected = threading.active_count(), _native_threads()
    print(f"connect(): {_ms(connects)} over {len(connects)} clients")
    print(f"threads: Python {python_before} before, {python_connected} connected, {threading.active_count()} "
          f"after close; native (all, /proc) {native_before} before, {native_connected} connected, "
          f"{_native_threads()} after close")

    started_at: list[float] = []
    audible_at: list[float] = []
    lock = threading.Lock()

    def speaking(event: object) -> None:
        if isinstance(event, BotStartedSpeaking):
            with lock:
                started_at.append(time.monotonic())

    def audio(frame: Any) -> None:
        with lock:
            if len(audible_at) < len(started_at) and _peak(frame.data) >= 1000:
                audible_at.append(time.monotonic())

    with ConvaiClient(config()) as client:
        client.events.on_message.subscribe(speaking, EventDeliveryPolicy.IMMEDIATE)
        client.events.on_audio.subscribe(audio, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=30)
        asks, acks = [], []
        for index in range(args.asks):
            started = time.monotonic()
            client.ask(f"question {index}", timeout=30)
            asks.append(time.monotonic() - started)
        for _ in range(args.asks * 5):
            started = time.monotonic()
            client.reset_idle_timer(wait=True, timeout=10)
            acks.append(time.monotonic() - started)
        print(f"ask(): {_ms(asks)}; acknowledged send: {_ms(acks)}")
        with lock:
            latencies = [a - s for s, a in zip(started_at, audible_at, strict=False)]
        if latencies:
            print(f"bot-started-speaking -> first audible frame: {_ms(latencies)} over {len(latencies)} turns")
        else:
            print("bot-started-speaking -> first audible frame: no audio on this transport")

    variants = [("", {})] if transport == "websocket" else [("receive_audio=True", {}),
                                                            ("receive_audio=False", {"receive_audio": False})]
    for label, overrides in variants:
        with ConvaiClient(config(**overrides)) as client:
            client.connect(timeout=30)
            time.sleep(1.0)  # let the join settle before measuring (nothing to wait on)
            cpu, started = _cpu(), time.monotonic()
            time.sleep(args.idle)  # measuring an idle client: nothing happens on purpose
            share = 100 * (_cpu() - cpu) / (time.monotonic() - started)
            print(f"idle CPU of a connected client {label}: {share:.1f} % of a core over {args.idle:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connects", type=int, default=20)
    parser.add_argument("--asks", type=int, default=10)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    ensure_loopback_preload()
    child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        print(f"simulator (child process) at {url}")
        for transport in ("websocket", "livekit"):
            run(url, transport, args)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(10)


if __name__ == "__main__":
    main()
