"""Simulator capacity: WebSocket sessions at 1 msg/s beside a bare aiohttp echo; LiveKit sessions with audio.

The WebSocket phase is ``bench/simulator_load.py``'s (fresh server processes, aiohttp clients). The
LiveKit phase ramps the number of participants that each ask for a spoken reply at the same moment, against
one simulator process, and reports the most sessions whose replies were all on time. The participants run
in ``GENERATORS`` separate load-generator processes (``bench/lk_loadgen.py``), so that the generator's own
Python is not one GIL-bound process, and are by default ``bench/lk_wire.py``'s: LiveKit's protocol through
aiortc with no media work, since the real client's receive pipeline costs more CPU per session than the
simulator serving it and, on a 2-core machine, was the limit the row reported (``--lk-client livekit``
runs the real ``rtc.Room`` instead). Every figure is measured from the moment the participant sent its
message, on its own clock, so the data channel and the audio track are never compared with each other (a
data message stuck behind others while the audio went ahead once printed a negative "first audio" figure):

- ``ack``: ``server-response`` within ``ON_TIME`` seconds of sending;
- ``speaking``: ``bot-started-speaking`` within ``ON_TIME`` seconds of sending;
- ``audio``: the first voiced audio within ``ON_TIME`` seconds of sending;
- ``stall``: the voiced audio arrived in real time, its span beyond its own duration at most ``ON_TIME``;
- ``done``: ``bot-turn-completed`` within ``ON_TIME`` seconds of the last voiced audio.

``sim_cores`` and ``gen_cores`` are the simulator's and the generators' CPU over the turns, in cores.

Runnable alone: ``python bench/run.py --only lkcapacity`` (``--lk-levels 50,100,150,200`` to choose the ramp).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import simulator_load
from bench.common import Row, SimHandle, percentile, start_sim
from bench.rows_livekit import livekit_info, release

ON_TIME = 1.0
#: The real client's AudioStream frame (ms, ``--lk-client livekit``): coarse, so that the load generator's own
#: Python work per stream (one wake-up per frame) does not become the limit measured; "on time" is judged to
#: the second.
FRAME_MS = 100
WAIT = 30.0
GROUP = "Simulator capacity"


def _load_phase(phase: simulator_load.Phase) -> dict[str, Any]:
    """One simulator phase and one echo phase of ``bench/simulator_load.py``, in a fresh process (this
    one has, by now, threads and objects of its own whose wake-ups would be counted as latency)."""
    with tempfile.TemporaryDirectory(prefix="convai-bench-") as folder:
        out = Path(folder) / "load.json"
        subprocess.run([sys.executable, str(Path(simulator_load.__file__)), "--sessions", str(phase.sessions),
                        "--rate", str(phase.rate), "--duration", str(phase.duration), "--json", str(out)],
                       check=False, capture_output=True, timeout=600)
        result: dict[str, Any] = json.loads(out.read_text())[0]
    return result


def _p99s(results: list[dict[str, Any]]) -> str:
    return "/".join(f"{r['p99_ms']:.1f}" for r in results)


def websocket_rows(quick: bool) -> list[Row]:
    """Two runs of a simulator phase then an echo phase; each side's better p99 counts (load from
    elsewhere on a shared machine shifts a whole 10 s phase, and would otherwise fall on one side only)."""
    phase = simulator_load.Phase(200, 1.0, 3.0) if quick else simulator_load.Phase(2000, 1.0, 10.0)
    runs = [_load_phase(phase) for _ in range(2)]
    sims, echoes = [r["sim"] for r in runs], [r["echo"] for r in runs]
    sim = min(sims, key=lambda r: r["p99_ms"])
    echo = min(echoes, key=lambda r: r["p99_ms"])
    errors = sum(r["errors"] for r in sims)
    note = (f"{sim['opened']:,} sessions, {sim['sent']:,} msgs per phase, errors {errors}/"
            f"{sum(r['errors'] for r in echoes)}, p50 {sim['p50_ms']:.2f} vs {echo['p50_ms']:.2f} ms; p99 per "
            f"phase {_p99s(sims)} vs {_p99s(echoes)} ms")
    row = Row(GROUP, f"WebSocket {phase.sessions:,} sessions @ 1 msg/s: ack p99", "s", sim["p99_ms"] / 1e3,
              echo["p99_ms"] / 1e3, "ratio<=", 2.0, note, {"errors": errors})
    if errors or min(r["opened"] for r in sims) < phase.sessions:
        row.note = "ERRORS: " + row.note
        row.limit = 0.0  # a phase with errors cannot meet its target
    return [row]


#: Load-generator processes (``bench/lk_loadgen.py``) the rooms of a level are spread over.
GENERATORS = 2


async def _generator(infos: list[dict[str, Any]], client: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("lk_loadgen.py")), "--frame-ms", str(FRAME_MS),
        "--client", client,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write((json.dumps(infos) + "\n").encode())
    await process.stdin.drain()
    return process


async def _read(process: asyncio.subprocess.Process, what: str, timeout: float) -> dict[str, Any]:
    """The generator's next JSON line (its exit first is an error naming what was awaited)."""
    assert process.stdout is not None
    raw = await asyncio.wait_for(process.stdout.readline(), timeout)
    if not raw:
        raise RuntimeError(f"a load generator exited (status {await process.wait()}) before sending {what}")
    answer: dict[str, Any] = json.loads(raw)
    return answer


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.stdin is not None and not process.stdin.is_closing():
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), WAIT)
    except TimeoutError:
        process.kill()
        await process.wait()


async def _level(sim: SimHandle, count: int, generators: int, client: str) -> tuple[bool, dict[str, float]]:
    """``count`` rooms, spread over ``generators`` processes, each ask at once; True if every reply was on
    time."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.gather(*(loop.run_in_executor(None, livekit_info, sim) for _ in range(count)))
    groups = [infos[index::generators] for index in range(generators) if infos[index::generators]]
    processes: list[asyncio.subprocess.Process] = []
    try:
        processes = [await _generator(group, client) for group in groups]
        await asyncio.gather(*(_read(p, "ready", WAIT * 2) for p in processes))
        cpu, wall = sim.cpu_seconds(), time.monotonic()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
        answers = await asyncio.gather(*(_read(p, "its figures", WAIT * 4) for p in processes))
        elapsed = time.monotonic() - wall
        cores = (sim.cpu_seconds() - cpu) / elapsed
    finally:
        await asyncio.gather(*(_stop(p) for p in processes), return_exceptions=True)
        for info in infos:
            release(sim, info["session_id"])
    figures = [f for answer in answers for f in answer["figures"]]
    failures = [f for answer in answers for f in answer["failures"]]
    if failures or not figures:
        print(f"    failures: {failures[:3]}", file=sys.stderr)
        return False, {"failures": float(len(failures))}
    stats = {f"{name}_p99": percentile([f[name] for f in figures], 0.99) for name in figures[0]}
    stats["stall_max"] = max(f["stall"] for f in figures)
    stats["done_max"] = max(f["done"] for f in figures)
    stats["sim_cores"] = cores  # the simulator's CPU over the turns, in cores (nan in process)
    stats["gen_cores"] = sum(answer["cpu"] for answer in answers) / elapsed
    ok = all(f[name] <= ON_TIME for f in figures for name in f)
    return ok, stats


#: The LiveKit ramp: sessions per level (``--lk-levels`` overrides it).
LEVELS = (1, 16, 64, 128, 150, 192, 256, 320, 384, 448)
QUICK_LEVELS = (1, 2, 4)


def livekit_rows(inproc: bool, quick: bool, levels: tuple[int, ...] | None = None,
                 generators: int = GENERATORS, client: str = "wire") -> list[Row]:
    """The most LiveKit sessions (of ``levels``, in order) whose spoken replies were all on time."""
    levels = levels or (QUICK_LEVELS if quick else LEVELS)
    sim = start_sim(inproc)
    held = 0
    detail = ""
    try:
        for count in levels:
            ok, stats = asyncio.run(_level(sim, count, generators, client))
            text = ", ".join(f"{k} {v * 1e3:.0f} ms" if k.endswith(("_p99", "_max")) else f"{k} {v:.2f}"
                             for k, v in stats.items())
            print(f"    {count} sessions: {'on time' if ok else 'LATE'} ({text})", file=sys.stderr, flush=True)
            if not ok:
                detail += f"; {count}: late ({text})"
                break
            held, detail = count, f"{count}: {text}"
    finally:
        sim.stop()
    note = (f"{client} participants in {generators} processes; " + detail
            + ("" if held < levels[-1] else f" (the most this run tries: {levels[-1]})"))
    return [Row(GROUP, "LiveKit sessions with audio, replies on time", "sessions", float(held), None, "info", None,
                note)]
