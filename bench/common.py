"""Shared pieces of ``bench/run.py``: the simulator under test, rows, percentiles, the table.

The simulator runs in a separate process by default (``python -m simulator`` on 127.0.0.1, port 0),
so the client's and the server's CPU do not share one interpreter lock; ``inproc=True`` runs it in
this process instead, to compare. Everything here is loopback-only and every wait has a deadline.
"""

from __future__ import annotations

import gc
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convai_sync import timings

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

perf = time.perf_counter


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (``q`` in 0..1, as ``diagnostics()`` computes it); NaN when empty
    (a row with nothing measured shows n/a)."""
    return timings.percentile(values, q) if values else float("nan")


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the garbage collector inside a timed region (both sides of a row get the same)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# --------------------------------------------------------------------------- the simulator under test


class SimProcess:
    """``python -m simulator`` in a child process; ``url`` and ``control_token`` from its banner."""

    def __init__(self, scenario: Path | None = None, extra: list[str] | None = None) -> None:
        command = [sys.executable, "-m", "simulator", "--host", HOST, "--port", "0", "--log-level", "WARNING",
                   "--transport-default", "websocket", *(extra or [])]
        if scenario is not None:
            command += ["--scenario", str(scenario)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env=env, cwd=ROOT)
        self.url = ""
        self.control_token = ""
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, name="bench-sim-stdout", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not (self.url and self.control_token):
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError("the simulator did not print its banner in time") from None
            if line is None:
                raise RuntimeError(f"the simulator exited before it was ready (rc={self.proc.poll()})")
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].split()[0]
            elif line.startswith("Control token: "):
                self.control_token = line.split()[2]

    def _pump(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        for line in stdout:
            self._lines.put(line)
        self._lines.put(None)

    api_key = "sim-api-key"
    character_id = "sim-character"

    def stop(self) -> None:
        stop_process(self.proc)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)


def stop_process(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
    """Stop a child process this bench started: ``sig`` (SIGTERM; SIGINT for a graceful shutdown), then
    SIGKILL when it has not exited within ``timeout`` seconds; returns once it is reaped (nothing if it
    already exited). Its pipes are the caller's to close."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


class SimInproc:
    """The same interface over an in-process :class:`simulator.Simulator`."""

    def __init__(self, scenario: Path | None = None) -> None:
        from simulator import Simulator

        self.sim = Simulator(transport_default="websocket", scenario=scenario).start()
        self.url = self.sim.url
        self.control_token = self.sim.control_token
        self.api_key = self.sim.api_key
        self.character_id = self.sim.character_id

    def stop(self) -> None:
        self.sim.stop()

    def cpu_seconds(self) -> float:
        return float("nan")


SimHandle = SimProcess | SimInproc


def start_sim(inproc: bool, scenario: Path | None = None) -> SimHandle:
    return SimInproc(scenario) if inproc else SimProcess(scenario)


def client_config(sim: SimHandle, **overrides: Any) -> Any:
    from convai_sync import ConvaiConfig

    fields: dict[str, Any] = {"api_key": sim.api_key, "character_id": sim.character_id, "url": sim.url}
    fields.update(overrides)
    return ConvaiConfig(**fields)


def write_scenario(steps: list[dict[str, Any]], name: str) -> Path:
    """A scenario JSON file in a temporary directory (the caller's process deletes it at exit)."""
    folder = Path(tempfile.mkdtemp(prefix="convai-bench-"))
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"name": name, "description": "bench/run.py", "steps": steps}))
    return path


# --------------------------------------------------------------------------- /proc readings


def process_cpu_seconds(pid: int | str = "self") -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(native_id: int) -> float:
    """User + system CPU seconds of one thread of this process (0 once it has ended)."""
    try:
        fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --------------------------------------------------------------------------- rows and the table


@dataclass
class Row:
    """One line of the table: a figure, its baseline measured in the same run, and its target.

    ``kind`` says how the target reads: ``"ratio<="`` / ``"ratio>="`` compare value/baseline with
    ``limit``; ``"value<="`` compares the value itself; ``"info"`` has no target.
    """

    group: str
    name: str
    unit: str
    value: float | None
    baseline: float | None = None
    kind: str = "info"
    limit: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline or self.baseline != self.baseline:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        if self.value is None or self.limit is None or self.kind == "info":
            return None
        if self.kind == "ratio<=":
            return self.ratio is not None and self.ratio <= self.limit
        if self.kind == "ratio>=":
            return self.ratio is not None and self.ratio >= self.limit
        return self.value <= self.limit

    @property
    def target(self) -> str:
        if self.limit is None or self.kind == "info":
            return "-"
        if self.kind == "ratio<=":
            return f"<= {self.limit:g}x"
        if self.kind == "ratio>=":
            return f">= {self.limit:g}x"
        return f"<= {fmt(self.limit, self.unit)}"

    def as_json(self) -> dict[str, Any]:
        return {"group": self.group, "name": self.name, "unit": self.unit, "value": self.value,
                "baseline": self.baseline, "ratio": self.ratio, "target": self.target, "met": self.met,
                "note": self.note, **self.extra}


def na(group: str, name: str, unit: str, why: str) -> Row:
    return Row(group, name, unit, None, note=f"n/a ({why})")


def fmt(value: float | None, unit: str) -> str:
    if value is None or value != value:
        return "n/a"
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.0f} us"
        if value < 1.0:
            return f"{value * 1e3:.1f} ms"
        return f"{value:.2f} s"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "KiB":
        return f"{value:,.0f} KiB"
    if unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:,.4g} {unit}".strip()


def print_table(rows: list[Row], out: Callable[[str], None] = print) -> None:
    widths = (48, 11, 11, 7, 11, 7)
    header = (f"{'row':<{widths[0]}} {'value':>{widths[1]}} {'baseline':>{widths[2]}} {'ratio':>{widths[3]}} "
              f"{'target':>{widths[4]}} {'met':>{widths[5]}}  note")
    out(header)
    out("-" * len(header))
    group = None
    for row in rows:
        if row.group != group:
            group = row.group
            out(f"[{group}]")
        # A ratio means something where the target is one, or beside a baseline of the same kind.
        shown = row.ratio is not None and row.kind != "value<="
        ratio = f"{row.ratio:.2f}x" if shown and row.ratio is not None else ""
        met = {True: "met", False: "MISSED", None: ""}[row.met]
        base = "" if row.baseline is None else fmt(row.baseline, row.unit)
        value = fmt(row.value, row.unit)
        out(f"  {row.name:<{widths[0] - 2}} {value:>{widths[1]}} {base:>{widths[2]}} {ratio:>{widths[3]}} "
            f"{row.target:>{widths[4]}} {met:>{widths[5]}}  {row.note}")
