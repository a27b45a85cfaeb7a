"""A private ``redis-server`` on 127.0.0.1 (no persistence) and ``convai-sim --workers`` processes for the tests.

``redis-server`` is Debian's ``redis-server`` package (``.ci/run`` installs it); a machine without it fails the
tests that need it, loudly.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from simulator.core.redis_store import PREFIX
from tests.sim_helpers import close_all_sockets

ROOT = Path(__file__).resolve().parents[1]
#: The workers' API key (convai-sim's default) and the seconds any one test request may take.
KEY = "sim-api-key"
TIMEOUT = 10.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """``redis://127.0.0.1:PORT`` of a redis-server this session started (stopped at its end)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (Debian: apt-get install -y redis-server)")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--protected-mode", "yes", "--loglevel", "notice"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready = threading.Event()

    def watch_log() -> None:  # redis-server says when it accepts connections; the rest of its log is dropped
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Ready to accept connections" in line:
                ready.set()

    threading.Thread(target=watch_log, name="test-redis-log", daemon=True).start()
    try:
        if not ready.wait(START_TIMEOUT):
            pytest.fail(f"redis-server on port {port} did not start (status {proc.poll()})")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """An emptied database of the session's redis-server (``redis://127.0.0.1:PORT/0``)."""
    client = redis.Redis.from_url(f"{redis_server}/0")
    client.flushdb()
    client.close()
    yield f"{redis_server}/0"


@dataclass
class Workers:
    """A running ``python -m simulator --workers N``: its shared URL, control token and each worker's pid and URL."""

    proc: subprocess.Popen[str]
    url: str = ""
    control_token: str = field(default="", repr=False)
    workers: dict[int, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT * 2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)


def start_workers(count: int, state: str, *options: str) -> Workers:
    """Start ``convai-sim --workers count --state state`` (WebSocket by default) and read its banner."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "--workers", str(count), "--state", state,
                             "--transport-default", "websocket", "--log-level", "WARNING", *options],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    handle = Workers(proc)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, name="test-workers-stdout", daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while len(handle.workers) < count or not handle.control_token:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"convai-sim --workers exited while starting (status {proc.wait()})")
            if match := re.match(r"Convai simulator listening on (\S+)", line):
                handle.url = match.group(1)
            elif line.startswith("Control token: "):
                handle.control_token = line.split()[2]
            elif match := re.match(r"Worker (\d+): (\S+)", line):
                handle.workers[int(match.group(1))] = match.group(2)
    except BaseException:
        handle.stop()
        raise
    return handle


@pytest.fixture
def run_workers() -> Iterator[Callable[..., Workers]]:
    """``run(count, state, *options)`` starts ``convai-sim --workers``; every one started is stopped at the end."""
    started: list[Workers] = []

    def run(count: int, state: str, *options: str) -> Workers:
        started.append(start_workers(count, state, *options))
        return started[-1]

    yield run
    close_all_sockets()
    for handle in started:
        handle.stop()


def connect(url: str, **body: Any) -> requests.Response:
    """``POST url/connect`` for the default character over the WebSocket transport (``body`` adds or overrides)."""
    payload = {"character_id": "sim-character", "transport": "websocket", **body}
    return requests.post(f"{url}/connect", json=payload, headers={"X-API-Key": KEY}, timeout=TIMEOUT)


def control(handle: Workers, url: str, method: str, route: str, body: dict[str, Any] | None = None
            ) -> requests.Response:
    """A control API request (``/_sim/<route>``) to the worker at ``url``."""
    return requests.request(method, f"{url}/_sim/{route}", json=body, timeout=TIMEOUT,
                            headers={"X-Sim-Control-Token": handle.control_token})


def slots_in_redis(url: str) -> int:
    """Slots held in the Redis at ``url`` (leases not yet dropped included)."""
    client: Any = redis.Redis.from_url(url)  # the sync client's stubs type replies as maybe-awaitable
    try:
        return sum(int(client.zcard(key)) for key in client.scan_iter(f"{PREFIX}slots:*"))
    finally:
        client.close()
