"""``python -m simulator`` as a user runs it: a subprocess, a real client, then Ctrl-C (SIGINT) or SIGTERM.

Output is read by a reader thread into a queue, and every wait on it has a deadline.
"""

from __future__ import annotations

import errno
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from convai_sync import ConvaiClient, ConvaiConfig, EventDeliveryPolicy, UsageLimitReached
from convai_sync.testing import Recorder

pytestmark = pytest.mark.timeout(20)

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 10.0
EXIT_TIMEOUT = 10.0


class CliProcess:
    """A running ``python -m simulator`` with its stdout and stderr lines in queues."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                   PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "simulator", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.out: queue.Queue[str | None] = queue.Queue()
        self.err: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, sink), name="cli-test-reader", daemon=True).start()

    @staticmethod
    def _pump(stream: object, sink: queue.Queue[str | None]) -> None:
        assert hasattr(stream, "readline")
        for line in iter(stream.readline, ""):
            sink.put(line.rstrip("\n"))
        sink.put(None)

    def read_until(self, pattern: str, timeout: float = START_TIMEOUT, stream: str = "out") -> re.Match[str]:
        """Lines until one matches ``pattern`` (raises on EOF or deadline)."""
        source = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r} within {timeout} s; got {self.seen}")
            try:
                line = source.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"{stream} ended before {pattern!r}; got {self.seen}; rc={self.proc.poll()}")
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def stop(self, signum: int = signal.SIGINT) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(EXIT_TIMEOUT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(EXIT_TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def cli() -> Iterator[list[CliProcess]]:
    started: list[CliProcess] = []
    yield started
    for process in started:
        process.kill()


def start(cli: list[CliProcess], *args: str) -> tuple[CliProcess, str]:
    process = CliProcess("--port", "0", "--log-level", "WARNING", *args)
    cli.append(process)
    url = process.read_until(r"listening on (http://\S+)").group(1)
    return process, url


def test_cli_serves_a_client_and_stops_on_ctrl_c(cli: list[CliProcess]) -> None:
    process, url = start(cli, "--api-key", "k1", "--api-key", "k2", "--character", "npc-1",
                         "--usage-quota", "5", "--control-token", "tok", "--chunk-delay", "0")
    assert process.read_until(r"Control token: (\S+)").group(1) == "tok"
    assert process.read_until("^Limits: ").string == "Limits: usage_quota=5"  # only the limits that are set
    snippet = process.read_until(r"ConvaiConfig\(.*\)").group(0)
    # The user's own keys are never echoed (the banner lands in terminals and CI logs).
    assert snippet == f'ConvaiConfig(api_key="<your first --api-key>", character_id="npc-1", url="{url}")'
    process.read_until("Press Ctrl-C")
    assert not [line for line in process.seen if "k1" in line or "k2" in line]
    with ConvaiClient(ConvaiConfig(api_key="k2", character_id="npc-1", url=url)) as client:
        client.connect(timeout=5)
        assert "hello from a test" in client.ask("hello from a test", timeout=5).text
    limits = requests.get(f"{url}/_sim/limits", headers={"X-Sim-Control-Token": "tok"}, timeout=5).json()
    assert limits["limits"]["usage_quota"] == 5
    assert process.stop(signal.SIGINT) == 0
    process.read_until("^stopped$", timeout=EXIT_TIMEOUT)


def test_cli_stops_on_sigterm_with_live_sessions(cli: list[CliProcess]) -> None:
    process, url = start(cli)
    with ConvaiClient(ConvaiConfig(api_key="sim-api-key", character_id="sim-character", url=url)) as client:
        client.connect(timeout=5)
        assert process.stop(signal.SIGTERM) == 0


def test_cli_warns_for_a_non_loopback_host(cli: list[CliProcess]) -> None:
    process, url = start(cli, "--host", "0.0.0.0")
    assert "exposes the simulator to the network" in process.read_until("warning", stream="err").string
    port = url.rsplit(":", 1)[1]
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["status"] == "ok"
    assert process.stop() == 0


def test_cli_loopback_host_prints_no_warning(cli: list[CliProcess]) -> None:
    process, _ = start(cli, "--host", "localhost")
    assert process.stop() == 0
    assert process.err.get(timeout=EXIT_TIMEOUT) is None  # stderr ended empty


def test_cli_runs_a_shipped_scenario_by_name(cli: list[CliProcess]) -> None:
    process, url = start(cli, "--scenario", "quota_exhausted")
    process.read_until(r"^Scenario: quota_exhausted: ")
    usage: Recorder[UsageLimitReached] = Recorder()
    with ConvaiClient(ConvaiConfig(api_key="sim-api-key", character_id="sim-character", url=url)) as client:
        client.events.on_usage_limit_reached.subscribe(usage, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=5)
        for n in range(3):
            client.ask(f"message {n}", timeout=5)
        assert usage.wait(1)[0].quota_type == "interaction"
    assert process.stop() == 0


def test_cli_banner_shows_the_default_key_and_the_limits_set(cli: list[CliProcess]) -> None:
    process, url = start(cli, "--concurrency-limit", "2", "--idle-timeout", "30", "--idle-warning-lead", "10",
                         "--no-realtime", "--chunk-delay", "0.5")
    assert process.read_until("^Limits: ").string == (
        "Limits: concurrency_limit=2, idle_timeout=30 s, idle_warning_lead=10 s, realtime_allowed=False, "
        "chunk_delay=0.5 s")
    snippet = process.read_until(r"ConvaiConfig\(.*\)").group(0)
    assert snippet == f'ConvaiConfig(api_key="sim-api-key", character_id="sim-character", url="{url}")'
    assert process.stop() == 0


def test_cli_banner_has_no_limits_line_without_limits(cli: list[CliProcess]) -> None:
    process, _ = start(cli)
    process.read_until("Press Ctrl-C")
    assert not [line for line in process.seen if line.startswith("Limits")]
    assert process.stop() == 0


def _stderr(process: CliProcess) -> str:
    """Everything the (exited) process wrote to stderr."""
    lines = []
    while (line := process.err.get(timeout=EXIT_TIMEOUT)) is not None:
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize(("args", "message"), [
    (("--concurrency-limit", "0"), "concurrency_limit must be a positive int"),
    (("--scenario", "no_such_scenario"), "no shipped scenario"),
    (("--idle-timeout", "-1"), "idle_timeout must be"),
    (("--port", "99999"), "argument --port: must be a port number 0..65535, got 99999"),
    (("--port", "http"), "argument --port: must be a port number 0..65535, got 'http'"),
    (("--idle-warning-lead", "5"), "idle_warning_lead needs idle_timeout"),
    (("--idle-timeout", "3", "--idle-warning-lead", "5"), "must not be longer than idle_timeout"),
    (("--send-timeout", "0"), "send_timeout must be"),
    (("--max-conversations", "0"), "max_conversations must be a positive int"),
    (("--scenario-dir", "/no/such/dir"), "is not a directory"),
])
def test_cli_rejects_bad_arguments(cli: list[CliProcess], args: tuple[str, ...], message: str) -> None:
    process = CliProcess(*args) if args[0] == "--port" else CliProcess("--port", "0", *args)
    cli.append(process)
    assert process.proc.wait(EXIT_TIMEOUT) == 2
    stderr = _stderr(process)
    assert message in stderr and "usage: convai-sim" in stderr
    assert "Traceback" not in stderr


def test_cli_port_in_use_is_one_clean_error(cli: list[CliProcess]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = CliProcess("--port", str(port))
        cli.append(process)
        assert process.proc.wait(EXIT_TIMEOUT) == 1
    stderr = _stderr(process)
    assert stderr == f"error: cannot bind 127.0.0.1:{port}: {os.strerror(errno.EADDRINUSE)}"


def test_cli_help_lists_the_control_routes(cli: list[CliProcess]) -> None:
    process = CliProcess("--help")
    cli.append(process)
    assert process.proc.wait(EXIT_TIMEOUT) == 0
    assert process.proc.stdout is not None
    process.read_until("Control API")
    routes = [process.read_until(r"^\s+(\S+ /_sim/\S+)").group(1) for _ in range(11)]
    assert routes == ["GET /_sim/sessions", "GET /_sim/stats", "POST /_sim/inject", "GET|POST /_sim/limits",
                      "POST /_sim/idle-warning", "POST /_sim/usage-limit", "POST /_sim/participant",
                      "POST /_sim/rebind-state", "POST /_sim/send", "GET|POST /_sim/scenario",
                      "GET|POST /_sim/characters"]


def test_cli_websocket_audio_voices_replies_on_the_websocket(cli: list[CliProcess]) -> None:
    _process, url = start(cli, "--websocket-audio")
    with ConvaiClient(ConvaiConfig(api_key="sim-api-key", character_id="sim-character", url=url)) as client:
        client.connect(timeout=5)
        reply = client.ask("hi", timeout=10)
        assert reply.audio is not None and reply.audio.sample_rate == 24000 and reply.audio.duration > 0.2
