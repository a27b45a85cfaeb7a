"""convai_sync against raw baselines, side by side in one run: prints ONE table (and JSON with --json).

Every row is measured in the same run as its baseline, against the same simulator on 127.0.0.1 (a
separate ``python -m simulator`` process by default; ``--inproc`` runs it in this process to compare):

1. send->ack round trip p50/p99: ``send_text(..., wait=True)`` vs raw websocket-client sending the same
   envelope and reading its ``server-response`` (targets 1.5x / 2x).
2. inbound throughput: ``bot-llm-text`` frames to a BACKGROUND handler vs raw ``recv()`` + ``json.loads``
   of the same stream, a scenario burst (target >= 0.8x).
3. connect (``/connect`` + transport open + ``bot-ready``) p50 (target 1.3x).
4. LiveKit: connect, data round trip, first audio after ``bot-started-speaking``, vs a raw ``rtc.Room``
   (targets 1.3x, 1.5x; audio beside the raw figure). "n/a (transport not available)" until the SDK has it.
5. footprint of one idle connected client: CPU (<= 0.2 % of a core on WebSocket), Python threads (<= 3),
   RSS per extra client (<= 256 KiB); LiveKit beside the raw client's own.
6. shutdown: ``disconnect()``/``close()`` in each state (<= 1 s always; p50 <= 50 ms when connected).
7. simulator capacity: WebSocket sessions at 1 msg/s vs a bare aiohttp echo (p99 <= 2x); LiveKit sessions
   with audio flowing, the most held with replies on time (alone: ``--only lkcapacity``, which ramps up to
   448 sessions; ``--lk-levels`` sets the ramp, ``--lk-client livekit`` uses the real ``rtc.Room`` as the load
   generator instead of ``bench/lk_wire.py``'s participant).
8. CPU of per-sample work on the loop threads (simulator lip-sync frames, the LiveKit mic's channel remix):
   the vectorised code vs the per-sample Python it replaced (``bench/rows_cpu.py``; no target).

    python bench/run.py --quick             # each row briefly (under ~2 minutes)
    python bench/run.py                     # the full table (~10 minutes)
    python bench/run.py --json out.json --only ws,footprint

Runs under the loopback shim (``convai_sync/loopback.py``) so the real LiveKit client works on
127.0.0.1; it re-executes itself once to load it. Exit status 0 when every row with a target met it.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Row, na, print_table, start_sim
from convai_sync.loopback import LoopbackShimError, ensure_loopback_preload

SECTIONS = ("ws", "throughput", "livekit", "footprint", "shutdown", "capacity", "lkcapacity", "cpu")


def _section(name: str, rows: list[Row], run: Callable[[], list[Row]]) -> None:
    # Start each section from a collected heap: a section that leaves thousands of objects behind
    # (the capacity row's 2,000 clients) would otherwise put its collections into the next one's p99.
    gc.collect()
    started = time.monotonic()
    print(f"... {name}", file=sys.stderr, flush=True)
    try:
        rows.extend(run())
    except Exception as exc:  # one broken section must not hide the others' figures
        logging.getLogger("bench").exception("section %s failed", name)
        rows.append(na(name, f"section {name}", "", f"failed: {type(exc).__name__}: {exc}"[:120]))
    print(f"    {name}: {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> list[Row]:
    from bench import rows_capacity, rows_cpu, rows_footprint, rows_livekit, rows_shutdown, rows_ws

    wanted = set(args.only.split(",")) if args.only else set(SECTIONS)
    levels = tuple(int(n) for n in args.lk_levels.split(",")) if args.lk_levels else None
    rows: list[Row] = []
    lk_capacity = "capacity" in wanted or "lkcapacity" in wanted

    def lk_ramp() -> list[Row]:
        return rows_capacity.livekit_rows(args.inproc, args.quick, levels, args.lk_generators, args.lk_client)

    if "capacity" in wanted:
        # First, while this process (the load generator) is fresh: later sections leave the livekit
        # library's threads and many objects behind, whose wake-ups and collections would be counted
        # as the simulator's latency.
        _section("capacity (WebSocket)", rows, lambda: rows_capacity.websocket_rows(args.quick))
    if "cpu" in wanted:
        _section("cpu", rows, lambda: rows_cpu.cpu_rows(args.quick))
    if not wanted & {"ws", "throughput", "livekit", "footprint", "shutdown"}:
        if lk_capacity:
            _section("capacity (LiveKit)", rows, lk_ramp)
        return rows
    sim = start_sim(args.inproc)
    try:
        if "ws" in wanted:
            _section("ws", rows, lambda: rows_ws.send_ack_rows(sim, args.quick) + rows_ws.connect_rows(sim, args.quick))
        if "throughput" in wanted:
            _section("throughput", rows, lambda: rows_ws.throughput_rows(args.inproc, args.quick))
        # Asked once, when first needed: a LiveKit connect starts the livekit library's threads.
        livekit_sdk = functools.cache(lambda: rows_livekit.sdk_unavailable(sim) is None)
        # Footprint first: its WebSocket idle baseline is this process's CPU, and the livekit library's
        # native threads, once started by a LiveKit row, stay for the process.
        if "footprint" in wanted:
            _section("footprint", rows, lambda: rows_footprint.footprint_rows(sim, args.quick, livekit_sdk))
        if "shutdown" in wanted:
            _section("shutdown", rows, lambda: rows_shutdown.shutdown_rows(sim, args.quick, livekit_sdk))
        if "livekit" in wanted:
            _section("livekit", rows, lambda: rows_livekit.livekit_rows(sim, args.quick))
    finally:
        sim.stop()
    if lk_capacity:
        _section("capacity (LiveKit)", rows, lk_ramp)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="run each row briefly (under ~2 minutes)")
    parser.add_argument("--inproc", action="store_true", help="run the simulator in this process")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--only", metavar="SECTIONS", help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--lk-levels", metavar="N,N,...",
                        help="the LiveKit capacity ramp (sessions per level, ascending); default up to 448")
    parser.add_argument("--lk-client", choices=("wire", "livekit"), default="wire",
                        help="the capacity ramp's participants: wire (bench/lk_wire.py, no media work; default) or "
                             "livekit (the real rtc.Room, whose own cost limits the ramp on a small machine)")
    parser.add_argument("--lk-generators", type=int, default=2, metavar="N",
                        help="load-generator processes the capacity ramp's participants are spread over (default 2)")
    args = parser.parse_args(argv)
    if args.lk_levels and not all(n.isdigit() and int(n) > 0 for n in args.lk_levels.split(",")):
        parser.error("--lk-levels takes positive whole numbers separated by commas")
    if args.only and not set(args.only.split(",")) <= set(SECTIONS):
        parser.error(f"--only takes {','.join(SECTIONS)}")
    logging.basicConfig(level=logging.ERROR, format="%(name)s %(levelname)s %(message)s")
    # The livekit FFI logs a stale track handle when a room closes while a track is being subscribed.
    logging.getLogger("livekit").setLevel(logging.CRITICAL)
    try:
        ensure_loopback_preload()
    except LoopbackShimError as exc:
        print(f"cannot load the loopback shim (LiveKit rows need it): {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    rows = run(args)
    print()
    print(f"convai_sync bench ({'quick' if args.quick else 'full'}; simulator "
          f"{'in process' if args.inproc else 'in a separate process'}; {time.monotonic() - started:.0f} s)")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_json() for r in rows], indent=2))
    return 0 if all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
