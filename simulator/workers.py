"""``convai-sim --workers N``: N simulator processes on one port, sharing their plan state in Redis (the calling
thread supervises; each worker runs ``python -m simulator`` with its own loop thread).

Every worker binds the public port with ``SO_REUSEPORT`` (Linux spreads ``/connect`` over them) and a port of its
own, which the ``room_url`` (WebSocket) or LiveKit URL of every session it admits names, so a session's later
traffic reaches the process that owns it. The plan state (slots, connect-rate windows, speakers, usage, auth
tokens, memories) is ``simulator.core.redis_store``'s, so the limits hold across workers, and across machines
whose workers use the same Redis (``--advertise-host`` names the address other machines reach this one at); the
control API, reset, state, stats and the dashboard of any worker answer for all (``simulator.http.fanout``).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

logger = logging.getLogger("simulator.workers")

#: Seconds a worker may take to print that it listens.
START_TIMEOUT = 60.0
#: Seconds a worker may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
#: Environment variable the workers read their control token from (never on a command line, where ``ps`` shows it).
TOKEN_ENV = "CONVAI_SIM_CONTROL_TOKEN"


@dataclass
class Worker:
    """One worker process: its pid and the URL of its own port."""

    proc: subprocess.Popen[str]
    own_url: str = ""
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)

    @property
    def pid(self) -> int:
        return self.proc.pid


def free_port(host: str) -> int:
    """A port free on ``host`` now (the workers then bind it together with ``SO_REUSEPORT``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_workers(count: int, port: int, worker_args: Sequence[str], control_token: str) -> list[Worker]:
    """Start ``count`` workers (``python -m simulator`` with ``worker_args`` and ``--reuse-port --port port``); returns
    once each printed its own URL. Raises RuntimeError (after stopping the others) when one does not start."""
    env = dict(os.environ, **{TOKEN_ENV: control_token})
    workers: list[Worker] = []
    try:
        for _ in range(count):
            proc = subprocess.Popen([sys.executable, "-m", "simulator", *worker_args, "--port", str(port),
                                     "--reuse-port"], stdout=subprocess.PIPE, text=True, env=env)
            worker = Worker(proc)
            threading.Thread(target=_pump, args=(worker,), name=f"sim-worker-{proc.pid}", daemon=True).start()
            workers.append(worker)
        deadline = time.monotonic() + START_TIMEOUT
        for worker in workers:
            while not worker.own_url:
                try:
                    line = worker.lines.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    raise RuntimeError(f"worker {worker.pid} did not start within {START_TIMEOUT:g} s") from None
                if line is None:
                    raise RuntimeError(f"worker {worker.pid} exited while starting (status {worker.proc.wait()})")
                if line.startswith("Worker URL: "):
                    worker.own_url = line.split()[2]
    except BaseException:
        stop_workers(workers)
        raise
    return workers


def _pump(worker: Worker) -> None:
    """Forward a worker's stdout: to :func:`start_workers` until it started, then nowhere (its log goes to stderr)."""
    stdout = worker.proc.stdout
    assert stdout is not None
    for line in stdout:
        if not worker.own_url:
            worker.lines.put(line.rstrip("\n"))
    worker.lines.put(None)


def stop_workers(workers: Sequence[Worker]) -> None:
    """SIGTERM every worker, wait up to :data:`STOP_TIMEOUT` seconds in total, then kill what is left."""
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for worker in workers:
        try:
            worker.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("worker %d did not stop in time; killing it", worker.pid)
            worker.proc.kill()
            worker.proc.wait(STOP_TIMEOUT)


def watch(workers: Sequence[Worker], stop: threading.Event) -> None:
    """Until ``stop`` is set: log each worker that exits (its slots free within the slot lease)."""
    reported: set[int] = set()
    while not stop.wait(0.5):
        for worker in workers:
            status = worker.proc.poll()
            if status is not None and worker.pid not in reported:
                reported.add(worker.pid)
                logger.error("worker %d exited with status %s; its slots free within the slot lease", worker.pid,
                             status)
