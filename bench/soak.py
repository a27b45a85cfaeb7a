"""Soak: many connect/ask/close cycles in one process against one simulator; nothing may accumulate.

The simulator runs in a separate process, so the RSS measured is the client's. Each cycle builds a
``ConvaiClient``, ``connect()``s, ``ask()``s once, and ``close()``s. After a warm-up
(imports, caches, the first connection pools) the process's Python threads, open file descriptors,
native threads and RSS are recorded; after the last cycle they are compared: no Python thread or fd
may be left over, native threads must not grow, and RSS may grow by at most ``--rss-mib``.

    python bench/soak.py                        # 1,000 cycles per transport
    python bench/soak.py --cycles 200 --transport websocket

``tests/test_soak.py`` runs 100 WebSocket cycles of the same code. The LiveKit cycles report
"n/a (transport not available)" until the SDK's LiveKit transport exists. Loopback only; bounded.
"""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SimProcess, client_config, native_threads, open_fds, rss_kib
from convai_sync import ConvaiClient, ConvaiConfig, ConvaiError, ErrorCode

WARMUP = 20
SETTLE = 5.0
CYCLE_TIMEOUT = 30.0


@dataclass
class Reading:
    python_threads: int
    fds: int
    native_threads: int
    rss_kib: int


@dataclass
class SoakResult:
    cycles: int
    seconds: float
    before: Reading
    after: Reading
    leaked_threads: list[str]

    @property
    def rss_growth_kib(self) -> int:
        return self.after.rss_kib - self.before.rss_kib

    def problems(self, rss_limit_kib: int) -> list[str]:
        found = []
        if self.leaked_threads:
            found.append(f"Python threads left over: {self.leaked_threads}")
        if self.after.fds > self.before.fds:
            found.append(f"file descriptors grew {self.before.fds} -> {self.after.fds}")
        if self.after.native_threads > self.before.native_threads:
            found.append(f"native threads grew {self.before.native_threads} -> {self.after.native_threads}")
        if self.rss_growth_kib > rss_limit_kib:
            found.append(f"RSS grew {self.rss_growth_kib} KiB (limit {rss_limit_kib} KiB)")
        return found

    def summary(self) -> str:
        b, a = self.before, self.after
        return (f"{self.cycles} cycles in {self.seconds:.1f} s ({1000 * self.seconds / self.cycles:.1f} ms each): "
                f"Python threads {b.python_threads}->{a.python_threads}, fds {b.fds}->{a.fds}, native threads "
                f"{b.native_threads}->{a.native_threads}, RSS {b.rss_kib / 1024:.1f}->{a.rss_kib / 1024:.1f} MiB "
                f"({self.rss_growth_kib:+d} KiB)")


def _settled_reading(baseline_threads: set[str] | None = None) -> tuple[Reading, set[str]]:
    """Wait (bounded) for SDK threads of finished clients to end, then read the process's resources."""
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        names = {t.name for t in threading.enumerate() if t.name.startswith("convai-")}
        if not names or (baseline_threads is not None and names <= baseline_threads):
            break
        time.sleep(0.01)  # bounded poll: threads of closed clients are already stopping
    gc.collect()
    names = {t.name for t in threading.enumerate() if t.name.startswith("convai-")}
    return Reading(threading.active_count(), open_fds(), native_threads(), rss_kib()), names


def cycle(config: ConvaiConfig) -> None:
    """One connect/ask/close; raises AssertionError when the reply is not the character's."""
    with ConvaiClient(config) as client:
        client.connect(timeout=CYCLE_TIMEOUT)
        reply = client.ask("soak", timeout=CYCLE_TIMEOUT)
        assert "soak" in reply.text, reply


def soak(config: ConvaiConfig, cycles: int, progress: Any = None, *, warmup: int = WARMUP,
         run_cycle: Callable[[ConvaiConfig], None] = cycle) -> SoakResult:
    """Run ``cycles`` cycles of ``run_cycle`` (after ``warmup`` untimed ones) and compare the resources."""
    for _ in range(warmup):
        run_cycle(config)
    before, baseline = _settled_reading()
    started = time.monotonic()
    for index in range(cycles):
        run_cycle(config)
        if progress is not None and (index + 1) % 100 == 0:
            progress(index + 1)
    seconds = time.monotonic() - started
    after, names = _settled_reading(baseline)
    return SoakResult(cycles, seconds, before, after, sorted(names - baseline))


def livekit_unavailable(config: ConvaiConfig) -> str | None:
    try:
        cycle(config)
    except ConvaiError as exc:
        if exc.error_code is ErrorCode.TRANSPORT_LIVEKIT_ERROR:
            return "transport not available"
        raise
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--transport", choices=("websocket", "livekit", "both"), default="both")
    parser.add_argument("--rss-mib", type=float, default=5.0, help="allowed RSS growth (default 5 MiB)")
    args = parser.parse_args(argv)
    if not 1 <= args.cycles <= 100_000:
        parser.error("--cycles must be 1..100000")
    from tests.support.loopback import ensure_loopback_preload

    transports = ("websocket", "livekit") if args.transport == "both" else (args.transport,)
    if "livekit" in transports:
        ensure_loopback_preload()
    failed = False
    sim = SimProcess()  # out of process, so the RSS measured is the client's alone
    try:
        for transport in transports:
            config = client_config(sim, transport=transport)
            if transport == "livekit":
                why = livekit_unavailable(config)
                if why:
                    print(f"livekit: n/a ({why})")
                    continue
            result = soak(config, args.cycles, lambda n, t=transport: print(f"  {t}: {n} cycles", flush=True))
            problems = result.problems(int(args.rss_mib * 1024))
            print(f"{transport}: {result.summary()}: {'PASS' if not problems else 'FAIL: ' + '; '.join(problems)}")
            failed |= bool(problems)
    finally:
        sim.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
