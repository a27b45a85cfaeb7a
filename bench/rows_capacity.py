"""Simulator capacity: WebSocket sessions at 1 msg/s beside a bare aiohttp echo; LiveKit sessions with audio.

The WebSocket phase is ``bench/simulator_load.py``'s (fresh server processes, aiohttp clients). The
LiveKit phase ramps the number of raw ``rtc.Room`` clients that each ask for a spoken reply at the same
moment, against one simulator process, and reports the most sessions whose replies were all on time. Every
figure is measured from the moment the client sent its message, on the client's clock, so the data channel
and the audio track are never compared with each other (a data message stuck behind others while the audio
went ahead once printed a negative "first audio" figure):

- ``ack``: ``server-response`` within ``ON_TIME`` seconds of sending;
- ``speaking``: ``bot-started-speaking`` within ``ON_TIME`` seconds of sending;
- ``audio``: the first loud audio frame within ``ON_TIME`` seconds of sending;
- ``stall``: the loud audio played in real time, its span beyond its own duration at most ``ON_TIME``;
- ``done``: ``bot-turn-completed`` within ``ON_TIME`` seconds of the last loud frame.

Runnable alone: ``python bench/run.py --only lkcapacity`` (``--lk-levels 50,100,150,160`` to choose the ramp).
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
from bench.rows_livekit import RawRoom, livekit_info, release

ON_TIME = 1.0
#: The clients' AudioStream frame (ms): coarse, so that the load generator's own Python work per stream
#: (one wake-up per frame) does not become the limit measured; "on time" is judged to the second.
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


async def _level(sim: SimHandle, count: int) -> tuple[bool, dict[str, float]]:
    """``count`` rooms each ask at once; True if every reply was on time."""
    rooms: list[RawRoom] = []
    sessions: list[str] = []
    try:
        infos = await asyncio.gather(*(asyncio.get_running_loop().run_in_executor(None, livekit_info, sim)
                                       for _ in range(count)))
        for info in infos:
            room = RawRoom.new(FRAME_MS)
            rooms.append(room)
            sessions.append(info["session_id"])
        await asyncio.wait_for(asyncio.gather(*(r.room.connect(i["room_url"], i["token"])
                                                for r, i in zip(rooms, infos, strict=True))), WAIT)
        await asyncio.gather(*(r.wait(lambda r=r: r.index_of("bot-ready", 0) is not None) for r in rooms))
        cpu, wall = sim.cpu_seconds(), time.monotonic()
        results = await asyncio.gather(*(_ask(room) for room in rooms), return_exceptions=True)
        cores = (sim.cpu_seconds() - cpu) / (time.monotonic() - wall)
    finally:
        await asyncio.gather(*(r.close() for r in rooms), return_exceptions=True)
        for session_id in sessions:
            release(sim, session_id)
    failures = [r for r in results if isinstance(r, BaseException)]
    figures = [r for r in results if not isinstance(r, BaseException)]
    if failures or not figures:
        return False, {"failures": float(len(failures))}
    stats = {f"{name}_p99": percentile([f[name] for f in figures], 0.99) for name in figures[0]}
    stats["stall_max"] = max(f["stall"] for f in figures)
    stats["done_max"] = max(f["done"] for f in figures)
    stats["sim_cores"] = cores  # the simulator's CPU over the turns, in cores (nan in process)
    ok = all(f[name] <= ON_TIME for f in figures for name in f)
    return ok, stats


async def _ask(room: RawRoom) -> dict[str, float]:
    """Seconds from sending to the ack, to ``bot-started-speaking`` and to the first loud audio; the loud
    audio's span beyond its duration; and the turn's end after the last loud audio."""
    mark, loud_mark = len(room.messages), len(room.loud)
    sent = time.monotonic()
    await room.send("user_text_message", {"text": "hello"})
    acked = await room.wait(lambda: room.index_of("server-response", mark), WAIT)
    spoke = await room.wait(lambda: room.index_of("bot-started-speaking", mark), WAIT)
    first = await room.wait(lambda: next(iter(room.loud[loud_mark:]), None), WAIT)
    ended = await room.wait(lambda: room.index_of("bot-turn-completed", mark), WAIT)
    loud = room.loud[loud_mark:]
    frame = room.frame_ms / 1000
    loud_seconds = frame * len(loud)
    return {"ack": room.messages[acked][0] - sent, "speaking": room.messages[spoke][0] - sent,
            "audio": first - sent, "stall": loud[-1] + frame - first - loud_seconds,
            "done": room.messages[ended][0] - loud[-1]}


#: The LiveKit ramp: sessions per level (``--lk-levels`` overrides it).
LEVELS = (1, 8, 16, 32, 48, 64, 96, 128, 150, 160)
QUICK_LEVELS = (1, 2, 4)


def livekit_rows(inproc: bool, quick: bool, levels: tuple[int, ...] | None = None) -> list[Row]:
    """The most LiveKit sessions (of ``levels``, in order) whose spoken replies were all on time."""
    levels = levels or (QUICK_LEVELS if quick else LEVELS)
    sim = start_sim(inproc)
    held = 0
    detail = ""
    try:
        for count in levels:
            ok, stats = asyncio.run(_level(sim, count))
            text = ", ".join(f"{k} {v * 1e3:.0f} ms" if k.endswith(("_p99", "_max")) else f"{k} {v:.2f}"
                             for k, v in stats.items())
            print(f"    {count} sessions: {'on time' if ok else 'LATE'} ({text})", file=sys.stderr, flush=True)
            if not ok:
                detail += f"; {count}: late ({text})"
                break
            held, detail = count, f"{count}: {text}"
    finally:
        sim.stop()
    note = detail + ("" if held < levels[-1] else f" (the most this run tries: {levels[-1]})")
    return [Row(GROUP, "LiveKit sessions with audio, replies on time", "sessions", float(held), None, "info", None,
                note)]
