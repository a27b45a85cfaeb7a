"""A loopback server that accepts connections and never completes a handshake (for abort tests).

It reads each HTTP request line and then holds the connection open without answering: a
WebSocket ``/chat`` upgrade and a LiveKit ``/rtc/v1`` signal upgrade both hang there. LiveKit's
``/rtc/v1/validate`` (which the ``livekit`` client calls after a failed signal attempt) is answered
200 at once, so the client's own retries end after its per-attempt timeouts instead of also
waiting on validation. Threads are named ``peer-hang-*`` and end at :meth:`HangingServer.stop`.
"""

from __future__ import annotations

import itertools
import socket
import threading

_ids = itertools.count(1)


class HangingServer:
    """Accepts on 127.0.0.1 and leaves every upgrade unanswered; ``requests`` lists the request lines."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.requests: list[str] = []
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._start(self._accept)

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=f"peer-hang-{next(_ids)}", daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self._held.append(conn)
            self._start(self._handle, conn)

    def _handle(self, conn: socket.socket) -> None:
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            line = data.split(b"\r\n", 1)[0].decode("latin-1")
            with self._lock:
                self.requests.append(line)
            if "/validate" in line:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except OSError:
            return
        self._stopping.wait()

    def stop(self) -> None:
        self._stopping.set()
        self._server.close()
        with self._lock:
            held, self._held = self._held, []
        for conn in held:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        for thread in self._threads:
            thread.join(2.0)

    def __enter__(self) -> HangingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
