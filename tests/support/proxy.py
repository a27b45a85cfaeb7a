"""A small HTTP proxy on 127.0.0.1 for tests: ``CONNECT`` tunnels and absolute-form requests, counted.

``mode`` makes it misbehave on ``CONNECT`` (plain requests are always forwarded): ``"refuse"``
answers 407, ``"silent"`` reads the request and never answers, ``"garbage"`` answers with bytes
that are not HTTP. Every connection
is served on its own daemon thread; :meth:`LocalProxy.stop` closes the listener and every socket
it holds, so no thread outlives the test.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit


class LocalProxy:
    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.tunnels: list[str] = []           # CONNECT targets, in order
        self.forwarded: list[str] = []         # absolute-form request lines, in order
        self.auth_headers: list[str | None] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._spawn(self._accept_loop)

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            sockets = [self._listener, *self._sockets]
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # never connected, or already shut
            sock.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._track(client)
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        head = bytearray()
        try:
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
        except OSError:
            return
        header, _, rest = bytes(head).partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        auth = next((line.split(":", 1)[1].strip() for line in lines[1:]
                     if line.lower().startswith("proxy-authorization:")), None)
        self.auth_headers.append(auth)
        if method == "CONNECT" and self.mode == "silent":
            self._stopped.wait(30)
            return
        if method == "CONNECT" and self.mode == "garbage":
            client.sendall(b"\x00\x01 not http\r\n\r\n")
            return
        if method == "CONNECT" and self.mode == "refuse":
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
            self.tunnels.append(target)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
        else:
            parts = urlsplit(target)
            upstream = socket.create_connection((parts.hostname or "", parts.port or 80), timeout=5)
            self.forwarded.append(lines[0])
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            rewritten = "\r\n".join([f"{method} {path} {version}", *lines[1:]]).encode("latin-1")
            upstream.sendall(rewritten + b"\r\n\r\n" + rest)
        upstream.settimeout(None)
        self._track(upstream)
        self._spawn(self._pipe, upstream, client)
        self._pipe(client, upstream)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass  # either side went away: the tunnel is over
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # already closed


@contextmanager
def local_proxy(mode: str = "ok") -> Iterator[LocalProxy]:
    proxy = LocalProxy(mode)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
