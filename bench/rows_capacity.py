"""Simulator capacity: WebSocket sessions at 1 msg/s beside a bare aiohttp echo; LiveKit sessions with audio.

The WebSocket phase is ``bench/simulator_load.py``'s (fresh server processes, aiohttp clients). The
LiveKit phase ramps the number of raw ``rtc.Room`` clients that each ask for a spoken reply at the same
moment, against one simulator process, and reports the most sessions whose replies were all on time:
the ack within ``ON_TIME`` seconds, the first audio within ``ON_TIME`` seconds of ``bot-started-speaking``,
and the whole turn within the voice's duration plus ``ON_TIME`` (the voice plays in real time).
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
            room = RawRoom.new()
            rooms.append(room)
            sessions.append(info["session_id"])
        await asyncio.wait_for(asyncio.gather(*(r.room.connect(i["room_url"], i["token"])
                                                for r, i in zip(rooms, infos, strict=True))), WAIT)
        await asyncio.gather(*(r.wait(lambda r=r: r.index_of("bot-ready", 0) is not None) for r in rooms))
        results = await asyncio.gather(*(_ask(room) for room in rooms), return_exceptions=True)
    finally:
        await asyncio.gather(*(r.close() for r in rooms), return_exceptions=True)
        for session_id in sessions:
            release(sim, session_id)
    failures = [r for r in results if isinstance(r, BaseException)]
    figures = [r for r in results if not isinstance(r, BaseException)]
    if failures or not figures:
        return False, {"failures": float(len(failures))}
    acks = [f[0] for f in figures]
    audio = [f[1] for f in figures]
    late = [f[2] for f in figures]
    stats = {"ack_p99": percentile(acks, 0.99), "audio_p99": percentile(audio, 0.99), "turn_late_max": max(late)}
    ok = stats["ack_p99"] <= ON_TIME and stats["audio_p99"] <= ON_TIME and stats["turn_late_max"] <= ON_TIME
    return ok, stats


async def _ask(room: RawRoom) -> tuple[float, float, float]:
    """(ack latency, first audio after bot-started-speaking, turn end beyond the voice's duration)."""
    mark, loud_mark = len(room.messages), len(room.loud)
    sent = time.monotonic()
    await room.send("user_text_message", {"text": "hello"})
    acked = await room.wait(lambda: room.index_of("server-response", mark), WAIT)
    spoke_at = await room.wait(lambda: room.index_of("bot-started-speaking", mark), WAIT)
    first = await room.wait(lambda: next(iter(room.loud[loud_mark:]), None), WAIT)
    ended = await room.wait(lambda: room.index_of("bot-turn-completed", mark), WAIT)
    spoke = room.messages[spoke_at][0]
    loud_seconds = 0.01 * (len(room.loud) - loud_mark)  # 10 ms frames of the 48 kHz AudioStream
    late = room.messages[ended][0] - spoke - loud_seconds
    return room.messages[acked][0] - sent, first - spoke, late


def livekit_rows(inproc: bool, quick: bool) -> list[Row]:
    levels = (1, 2, 4) if quick else (1, 2, 4, 8, 16, 24, 32, 40, 48, 64)
    sim = start_sim(inproc)
    held = 0
    detail = ""
    try:
        for count in levels:
            ok, stats = asyncio.run(_level(sim, count))
            text = ", ".join(f"{k} {v * 1e3:.0f} ms" if k != "failures" else f"{k} {v:.0f}" for k, v in stats.items())
            if not ok:
                detail += f"; {count}: late ({text})"
                break
            held, detail = count, f"{count}: {text}"
    finally:
        sim.stop()
    note = detail + ("" if held < levels[-1] else f" (the most this run tries: {levels[-1]})")
    return [Row(GROUP, "LiveKit sessions with audio, replies on time", "sessions", float(held), None, "info", None,
                note)]
