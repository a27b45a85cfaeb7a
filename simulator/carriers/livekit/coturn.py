"""A private coturn (``turnserver``) for ``Simulator(turn="auto")``: 127.0.0.1 only, random credentials.

Started and stopped by the thread that starts and stops the :class:`simulator.Simulator` (not the loop), for
that simulator's lifetime. Needs Debian's ``coturn`` package; options: ``turnserver --help``.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time

from aioice import stun

from simulator.core.ice import TurnServer, TurnUnavailable

logger = logging.getLogger("simulator.carriers.livekit.coturn")

#: Seconds coturn may take to answer its first STUN request after it starts.
START_TIMEOUT = 10.0
#: Seconds coturn may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 3.0
REALM = "convai-sim"


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 now (coturn listens on both)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise OSError("no port free for both UDP and TCP on 127.0.0.1")


def _answers_stun(port: int, timeout: float) -> bool:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.sendto(bytes(request), ("127.0.0.1", port))
            reply = stun.parse_message(probe.recv(2048))
        except (OSError, ValueError):
            return False
    return reply.transaction_id == request.transaction_id


class CoturnProcess:
    """A private ``turnserver`` on 127.0.0.1 with random long-term credentials (see the module docstring)."""

    def __init__(self) -> None:
        binary = shutil.which("turnserver")
        if binary is None:
            raise TurnUnavailable("turn='auto' needs coturn's turnserver, which is not installed: "
                               "apt-get install coturn (Debian/Ubuntu package 'coturn')")
        self.port = _free_port()
        username, password = "sim-" + secrets.token_hex(4), secrets.token_urlsafe(18)
        self.server = TurnServer((f"turn:127.0.0.1:{self.port}?transport=udp",), username, password)
        relay_low = 49152 + secrets.randbelow(12000)
        args = [binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={self.port}",
                f"--min-port={relay_low}", f"--max-port={relay_low + 200}", f"--realm={REALM}", "--lt-cred-mech",
                "--fingerprint", "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers",
                "--no-multicast-peers", "--log-file=stdout", "--simple-log", "--pidfile=",
                f"--user={username}:{password}"]
        # The password is on coturn's command line, which local users can list: acceptable for a relay that
        # listens on loopback only, with credentials that live only as long as this process.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop(); a pipe nobody reads would fill
        # LD_PRELOAD is this Python process's business (e.g. convai_sync.loopback's shim, which a test run
        # loads): measured, coturn under that shim relays nothing, so it is not passed on.
        env = {name: value for name, value in os.environ.items() if name != "LD_PRELOAD"}
        self._process = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers_stun(self.port, 0.2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                error = self._stop_and_read_error()
                raise TurnUnavailable(f"turnserver did not start on 127.0.0.1:{self.port}: {error or 'no answer'}")
        logger.info("coturn (pid %d) relaying on 127.0.0.1:%d", self._process.pid, self.port)

    def _stop_and_read_error(self) -> str:
        self._log.seek(0)
        output = self._log.read().decode("utf-8", "replace").strip()
        self.stop()
        return output[-500:]

    def stop(self) -> None:
        """Stop coturn (SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`). Idempotent."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning("turnserver (pid %d) ignored SIGTERM; killing it", self._process.pid)
                self._process.kill()
                self._process.wait(STOP_TIMEOUT)
        self._log.close()
