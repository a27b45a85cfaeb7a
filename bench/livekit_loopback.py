"""LiveKit over loopback: real ``livekit`` client joins against the simulator (prints figures; not a test).

    python bench/livekit_loopback.py [--joins 20] [--messages 200] [--idle 5]

Re-executes itself under the loopback shim (convai_sync/loopback.py), as the test suite does. Prints the
``room.connect()`` wall time (p50/max), the data round trip of a ``reset-idle-timer`` and its ack (p50/p99),
the client's native thread counts, and the CPU the simulator's loop thread spends on an idle connected session.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from convai_sync.loopback import ensure_loopback_preload


def _cpu_seconds(native_id: int) -> float:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


async def _run(args: argparse.Namespace) -> None:
    from simulator import Simulator
    from tests.livekit_helpers import Participant, connect_info, native_threads

    print(f"native threads before any room: {native_threads()}")
    with Simulator() as sim:
        joins = []
        for _ in range(args.joins):
            client = Participant()
            joins.append(await client.join(connect_info(sim)))
            await client.close()
        print(f"room.connect(): p50 {statistics.median(joins) * 1000:.0f} ms, max {max(joins) * 1000:.0f} ms "
              f"over {len(joins)} joins")
        client = Participant()
        await client.join(connect_info(sim))
        await client.wait_message("bot-ready")
        print(f"native threads with one connected room: {native_threads()}")
        trips = []
        for _ in range(args.messages):
            mark = len(client.messages)
            sent = time.monotonic()
            await client.send({"type": "reset-idle-timer", "data": {}})
            await client.wait_message("server-response", mark)
            trips.append(time.monotonic() - sent)
        print(f"data round trip: p50 {statistics.median(trips) * 1000:.2f} ms, "
              f"p99 {_percentile(trips, 0.99) * 1000:.2f} ms over {len(trips)} messages")
        loop_thread = next(t for t in threading.enumerate() if t.name == "sim-loop")
        assert loop_thread.native_id is not None
        before, started = _cpu_seconds(loop_thread.native_id), time.monotonic()
        await asyncio.sleep(args.idle)  # measuring an idle session: nothing to wait for
        used = _cpu_seconds(loop_thread.native_id) - before
        print(f"simulator loop CPU, one idle connected session: {100 * used / (time.monotonic() - started):.1f} %"
              " of a core")
        await client.close()
    print(f"native threads after disconnect: {native_threads()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=20)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--idle", type=float, default=5.0)
    args = parser.parse_args()
    ensure_loopback_preload()
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
