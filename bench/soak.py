"""Soak: many connect/ask/close cycles in one process against one simulator; nothing may accumulate.

The simulator runs in a separate process, so the RSS measured is the client's. Each cycle builds a
``ConvaiClient``, ``connect()``s, ``ask()``s once, and ``close()``s. After a warm-up
(imports, caches, the first connection pools) the process's Python threads, open file descriptors,
native threads and RSS are recorded; after the last cycle they are compared: no Python thread or fd
may be left over, native threads must not grow, and RSS may grow by at most ``--rss-mib``.

    python bench/soak.py                        # 1,000 cycles per transport
    python bench/soak.py --cycles 200 --transport websocket

LiveKit cycles ask with TTS off (the voice plays in real time) and are compared with the same number
of raw ``livekit.rtc.Room`` cycles in the same process: the livekit library itself keeps about 330 KiB
per room it has joined (livekit 1.2.1; measured here, and reported upstream as livekit/python-sdks
#449), so for LiveKit the RSS limit is the raw client's growth plus ``--rss-mib``.

``tests/test_soak.py`` runs shorter versions of the same code. Loopback only; bounded.
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
NATIVE_SETTLE = 15.0
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


def _settled_reading(baseline_threads: set[str] | None = None, baseline: Reading | None = None,
                     native_settle: float = 0.0) -> tuple[Reading, set[str]]:
    """Wait (bounded) for SDK threads of finished clients to end, and for native threads and fds to come
    back down to ``baseline`` (the livekit library's runtime parks idle worker threads for ~10 s before it
    ends them: a transient thread is not growth), then read the process's resources."""
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        names = {t.name for t in threading.enumerate() if t.name.startswith("convai-")}
        if not names or (baseline_threads is not None and names <= baseline_threads):
            break
        time.sleep(0.01)  # bounded poll: threads of closed clients are already stopping
    if baseline is not None:
        deadline = time.monotonic() + native_settle
        while time.monotonic() < deadline and (native_threads() > baseline.native_threads
                                               or open_fds() > baseline.fds):
            time.sleep(0.1)  # bounded poll
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
         run_cycle: Callable[[ConvaiConfig], None] = cycle, native_settle: float = NATIVE_SETTLE) -> SoakResult:
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
    after, names = _settled_reading(baseline, before, native_settle)
    return SoakResult(cycles, seconds, before, after, sorted(names - baseline))


def raw_livekit_growth(sim: SimProcess, cycles: int, warmup: int = WARMUP) -> int:
    """RSS growth (KiB) over ``cycles`` connect/ask/disconnect cycles of a raw ``rtc.Room`` (TTS off)."""
    import asyncio

    import requests

    from bench.rows_livekit import RawRoom, release

    async def one() -> None:
        raw = RawRoom.new()
        info = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id, "transport": "livekit",
                                                         "default_tts_enabled": False},
                             headers={"X-API-Key": sim.api_key}, timeout=CYCLE_TIMEOUT).json()
        try:
            await asyncio.wait_for(raw.room.connect(info["room_url"], info["token"]), CYCLE_TIMEOUT)
            await raw.wait(lambda: raw.index_of("bot-ready", 0) is not None)
            await raw.send("user_text_message", {"text": "soak"})
            await raw.wait(lambda: raw.index_of("bot-turn-completed", 0) is not None)
        finally:
            await raw.close()
            release(sim, info["session_id"])

    async def run() -> int:
        for _ in range(warmup):
            await one()
        gc.collect()
        before = rss_kib()
        for _ in range(cycles):
            await one()
        gc.collect()
        return rss_kib() - before

    return asyncio.run(run())


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
    from convai_sync.loopback import ensure_loopback_preload

    transports = ("websocket", "livekit") if args.transport == "both" else (args.transport,)
    if "livekit" in transports:
        ensure_loopback_preload()
    failed = False
    sim = SimProcess()  # out of process, so the RSS measured is the client's alone
    try:
        for transport in transports:
            # The voice plays in real time (~2 s per reply): LiveKit cycles ask with TTS off.
            config = client_config(sim, transport=transport, tts_enabled=transport == "websocket")
            if transport == "livekit":
                why = livekit_unavailable(config)
                if why:
                    print(f"livekit: n/a ({why})")
                    continue
            result = soak(config, args.cycles, lambda n, t=transport: print(f"  {t}: {n} cycles", flush=True))
            limit = int(args.rss_mib * 1024)
            if transport == "livekit":
                raw = raw_livekit_growth(sim, args.cycles)
                print(f"  raw rtc.Room: {args.cycles} cycles grew RSS {raw:+d} KiB")
                limit += max(0, raw)
            problems = result.problems(limit)
            print(f"{transport}: {result.summary()}: {'PASS' if not problems else 'FAIL: ' + '; '.join(problems)}")
            failed |= bool(problems)
    finally:
        sim.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
