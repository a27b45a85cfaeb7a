"""Benchmark the event hub's three delivery policies against plain-Python baselines.

Every figure is measured in this process, side by side with its baseline, best of ``--repeat``
runs (``time.perf_counter``; the garbage collector is paused inside timed regions):

(a) IMMEDIATE: cost of ``EventHub.publish`` per event with one IMMEDIATE subscriber, vs calling
    the same handler directly. Target: at most 10x the bare call.
(b) BACKGROUND: throughput of publishing N events to one BACKGROUND subscriber until the
    handler has seen all of them, vs a producer thread putting N events into a plain
    ``queue.Queue`` that one consumer thread drains. Target: at least 1x. Also reported, without
    a target: latency from the publish timestamp carried in the event to the handler, during that
    burst and for isolated events (publish one, wait until it is handled, repeat).
(c) MAIN_THREAD: with N events already queued, time ``hub.pump()`` draining them on this thread,
    vs draining a pre-filled ``queue.Queue`` with ``get_nowait`` on one thread. Target: at least 2x
    the drain rate.

    python bench/events.py                # default --events 100000
    python bench/events.py --events 50000 --repeat 3

No test asserts these numbers; they are for people.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import no_gc
from convai_sync import EventDeliveryPolicy, EventHub

perf = time.perf_counter
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Tick:
    """The benchmark's event: a sequence number and the ``perf_counter()`` at publish time."""

    seq: int
    t: float


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


# ---------------------------------------------------------------------------------- (a) IMMEDIATE


def immediate_publish(n: int) -> float:
    """Seconds per event for ``hub.publish`` with one IMMEDIATE subscriber."""
    hub = EventHub(default_policy=EventDeliveryPolicy.IMMEDIATE, queue_size=n + 10, immediate_budget=1.0)
    seen = [0]

    def handler(event: Tick) -> None:
        seen[0] += 1

    hub.subscribe(Tick, handler)
    events = [Tick(seq=i, t=0.0) for i in range(n)]
    publish = hub.publish
    hub.publish(events[0])  # warm the type cache
    with no_gc():
        start = perf()
        for event in events:
            publish(event)
        elapsed = perf() - start
    hub.close(1.0)
    assert seen[0] == n + 1
    return elapsed / n


def bare_call(n: int) -> float:
    """Seconds per event for calling the same handler directly."""
    seen = [0]

    def handler(event: Tick) -> None:
        seen[0] += 1

    events = [Tick(seq=i, t=0.0) for i in range(n)]
    with no_gc():
        start = perf()
        for event in events:
            handler(event)
        elapsed = perf() - start
    assert seen[0] == n
    return elapsed / n


# --------------------------------------------------------------------------------- (b) BACKGROUND


@dataclass
class Burst:
    throughput: float  # events per second, first publish -> last handled
    p50: float  # seconds
    p99: float


class Sink:
    """The handler both sides use: stamps receive latency; signals when ``expected`` arrived."""

    def __init__(self, expected: int) -> None:
        self.latencies = [0.0] * expected
        self.count = 0
        self.expected = expected
        self.done = threading.Event()

    def __call__(self, event: Tick) -> None:
        self.latencies[self.count] = perf() - event.t
        self.count += 1
        if self.count == self.expected:
            self.done.set()

    def result(self, elapsed: float) -> Burst:
        lat = sorted(self.latencies)
        return Burst(self.expected / elapsed, percentile(lat, 0.50), percentile(lat, 0.99))


def background_burst(n: int) -> Burst:
    hub = EventHub(default_policy=EventDeliveryPolicy.BACKGROUND, queue_size=n + 10)
    sink = Sink(n)
    hub.subscribe(Tick, sink)
    hub.publish(Tick(seq=-1, t=perf()))  # start the dispatcher thread and warm the type cache
    while sink.count < 1:
        sink.done.wait(0.001)
    sink.count, sink.expected = 0, n
    sink.done.clear()
    publish = hub.publish
    with no_gc():
        start = perf()
        for i in range(n):
            publish(Tick(seq=i, t=perf()))
        if not sink.done.wait(60):
            raise RuntimeError(f"BACKGROUND handler saw {sink.count}/{n} events")
        elapsed = perf() - start
    hub.close(5.0)
    return sink.result(elapsed)


_STOP = object()


def queue_burst(n: int) -> Burst:
    q: queue.Queue[object] = queue.Queue()
    sink = Sink(n)

    def consumer() -> None:
        get = q.get
        while True:
            item = get()
            if item is _STOP:
                return
            sink(item)  # type: ignore[arg-type]

    thread = threading.Thread(target=consumer, name="bench-queue-consumer")
    thread.start()
    put = q.put
    with no_gc():
        start = perf()
        for i in range(n):
            put(Tick(seq=i, t=perf()))
        if not sink.done.wait(60):
            raise RuntimeError(f"queue consumer saw {sink.count}/{n} events")
        elapsed = perf() - start
    q.put(_STOP)
    thread.join(5.0)
    return sink.result(elapsed)


def ping_pong(send: Callable[[Tick], None], received: threading.Event, rounds: int,
              latencies: list[float]) -> Burst:
    start = perf()
    for i in range(rounds):
        received.clear()
        send(Tick(seq=i, t=perf()))
        if not received.wait(5):
            raise RuntimeError("an isolated event was not handled within 5 s")
    elapsed = perf() - start
    lat = sorted(latencies)
    return Burst(rounds / elapsed, percentile(lat, 0.50), percentile(lat, 0.99))


def background_isolated(rounds: int) -> Burst:
    hub = EventHub(default_policy=EventDeliveryPolicy.BACKGROUND, queue_size=rounds + 10)
    latencies: list[float] = []
    received = threading.Event()

    def handler(event: Tick) -> None:
        if event.seq >= 0:
            latencies.append(perf() - event.t)
        received.set()

    hub.subscribe(Tick, handler)
    hub.publish(Tick(seq=-1, t=perf()))
    received.wait(5)
    result = ping_pong(hub.publish, received, rounds, latencies)
    hub.close(5.0)
    return result


def queue_isolated(rounds: int) -> Burst:
    q: queue.Queue[object] = queue.Queue()
    latencies: list[float] = []
    received = threading.Event()

    def consumer() -> None:
        while True:
            item = q.get()
            if item is _STOP:
                return
            assert isinstance(item, Tick)
            latencies.append(perf() - item.t)
            received.set()

    thread = threading.Thread(target=consumer, name="bench-queue-consumer")
    thread.start()
    result = ping_pong(q.put, received, rounds, latencies)
    q.put(_STOP)
    thread.join(5.0)
    return result


# -------------------------------------------------------------------------------- (c) MAIN_THREAD


def main_thread_pump(n: int) -> float:
    """Events per second delivered by ``hub.pump()`` from a queue of ``n``."""
    hub = EventHub(default_policy=EventDeliveryPolicy.MAIN_THREAD, queue_size=n + 10)
    seen = [0]

    def handler(event: Tick) -> None:
        seen[0] += 1

    hub.subscribe(Tick, handler)
    for i in range(n):
        hub.publish(Tick(seq=i, t=0.0))
    with no_gc():
        start = perf()
        delivered = hub.pump()
        elapsed = perf() - start
    hub.close(1.0)
    assert delivered == n == seen[0], (delivered, seen[0])
    return n / elapsed


def queue_drain(n: int) -> float:
    """Events per second drained from a pre-filled ``queue.Queue`` with ``get_nowait``."""
    q: queue.Queue[Tick] = queue.Queue()
    seen = [0]

    def handler(event: Tick) -> None:
        seen[0] += 1

    for i in range(n):
        q.put(Tick(seq=i, t=0.0))
    get_nowait = q.get_nowait
    with no_gc():
        start = perf()
        while True:
            try:
                item = get_nowait()
            except queue.Empty:
                break
            handler(item)
        elapsed = perf() - start
    assert seen[0] == n
    return n / elapsed


# -------------------------------------------------------------------------------------- report


def paired(ours: Callable[[], T], base: Callable[[], T], repeat: int) -> tuple[list[T], list[T]]:
    """Run ours and the baseline alternately ``repeat`` times, so drifting machine load hits both."""
    a: list[T] = []
    b: list[T] = []
    for _ in range(repeat):
        a.append(ours())
        b.append(base())
    return a, b


def best_burst(runs: list[Burst]) -> Burst:
    return Burst(max(r.throughput for r in runs), min(r.p50 for r in runs), min(r.p99 for r in runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per run (default 100000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the best is kept (default 5)")
    parser.add_argument("--rounds", type=int, default=2_000, help="isolated-latency round trips (default 2000)")
    args = parser.parse_args(argv)
    n, rep = args.events, args.repeat
    if n < 100 or rep < 1 or args.rounds < 10:
        parser.error("need --events >= 100, --repeat >= 1, --rounds >= 10")

    wall = perf()
    imm_runs, bare_runs = paired(lambda: immediate_publish(n), lambda: bare_call(n), rep)
    imm, bare = min(imm_runs), min(bare_runs)  # seconds per event: lower is better
    bg_runs, qb_runs = paired(lambda: background_burst(n), lambda: queue_burst(n), rep)
    bg, qb = best_burst(bg_runs), best_burst(qb_runs)
    iso_runs, qiso_runs = paired(lambda: background_isolated(args.rounds), lambda: queue_isolated(args.rounds), rep)
    bg_iso, q_iso = best_burst(iso_runs), best_burst(qiso_runs)
    pump_runs, drain_runs = paired(lambda: main_thread_pump(n), lambda: queue_drain(n), rep)
    pump, drain = max(pump_runs), max(drain_runs)  # events per second: higher is better
    wall = perf() - wall

    def us(seconds: float) -> str:
        return f"{seconds * 1e6:,.2f} µs"

    def rate(per_s: float) -> str:
        return f"{per_s:,.0f} ev/s"

    rows: list[tuple[str, str, str, float, str, str]] = []

    def row(metric: str, ours: str, base: str, ratio: float, target: str, ok: bool | None) -> None:
        verdict = "info" if ok is None else ("PASS" if ok else "MISS")
        rows.append((metric, ours, base, ratio, target, verdict))

    row("IMMEDIATE publish, 1 handler (per event) vs bare call", us(imm), us(bare), imm / bare, "<= 10x",
        imm / bare <= 10)
    row("BACKGROUND throughput vs queue.Queue 2-thread", rate(bg.throughput), rate(qb.throughput),
        bg.throughput / qb.throughput, ">= 1x", bg.throughput >= qb.throughput)
    row("BACKGROUND latency p50, burst of N", us(bg.p50), us(qb.p50), bg.p50 / qb.p50, "-", None)
    row("BACKGROUND latency p99, burst of N", us(bg.p99), us(qb.p99), bg.p99 / qb.p99, "-", None)
    row("BACKGROUND latency p50, isolated event", us(bg_iso.p50), us(q_iso.p50), bg_iso.p50 / q_iso.p50, "-", None)
    row("BACKGROUND latency p99, isolated event", us(bg_iso.p99), us(q_iso.p99), bg_iso.p99 / q_iso.p99, "-", None)
    row("MAIN_THREAD pump() vs queue.Queue get_nowait drain", rate(pump), rate(drain), pump / drain, ">= 2x",
        pump >= 2 * drain)

    print(f"convai_sync event hub benchmark: N={n:,} events, best of {rep}, "
          f"Python {sys.version.split()[0]} ({sys.platform})")
    headers = ("metric", "convai_sync", "baseline", "ratio", "target", "result")
    table = [headers] + [(m, o, b, f"{r:.2f}x", t, v) for m, o, b, r, t, v in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    for index, line in enumerate(table):
        print("  ".join(cell.ljust(w) if i in (0, 4, 5) else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(line, widths, strict=True))).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))
    print("ratio = convai_sync / baseline (time for costs and latencies, events/s for throughputs); "
          f"total {wall:.1f} s")
    leftover = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if leftover:
        print(f"warning: threads still alive: {leftover}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
