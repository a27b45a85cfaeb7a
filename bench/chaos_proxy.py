"""A loopback TCP proxy for chaos runs: delays the server's bytes, cuts links, follows a restarted server,
records the text of every ``user_text_message`` it forwarded to the server and counts the successful
``user_text_message`` acknowledgements it delivered to the client.

The client's ``ConvaiConfig.url`` points at the proxy; the simulator builds ``room_url`` from the request's
``Host`` header, so the ``/chat`` WebSocket goes through the proxy too. Threads are named ``chaos-*``; every
wait is on :attr:`ChaosProxy.stopping`, so :meth:`ChaosProxy.stop` ends them all at once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

_CHUNK = 65536


class _FrameTap:
    """Incremental parser of one direction of a ``/chat`` link: the HTTP head, then WebSocket frames
    (masked or not); calls ``on_message`` with each decoded JSON text message."""

    def __init__(self, on_message: Callable[[Any], None], head_marker: bytes) -> None:
        self._buf = bytearray()
        self._upgraded = False
        self._is_chat: bool | None = None
        self._marker = head_marker
        self._on_message = on_message

    def feed(self, data: bytes) -> None:
        if self._is_chat is False:
            return
        self._buf += data
        if not self._upgraded:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self._is_chat = self._buf.startswith(self._marker)
            del self._buf[:end + 4]
            self._upgraded = True
            if not self._is_chat:
                self._buf.clear()
                return
        for payload in self._frames():
            try:
                message = json.loads(payload)
            except ValueError:
                continue
            self._on_message(message)

    def _frames(self) -> Iterator[bytes]:
        buf = self._buf
        while len(buf) >= 2:
            opcode, length, offset = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, offset = struct.unpack("!H", buf[2:4])[0], 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, offset = struct.unpack("!Q", buf[2:10])[0], 10
            masked = buf[1] & 0x80
            total = offset + (4 if masked else 0) + length
            if len(buf) < total:
                return
            mask = bytes(buf[offset:offset + 4]) if masked else b"\0\0\0\0"
            body = bytes(buf[total - length:total])
            del buf[:total]
            if opcode == 0x1 and length:
                key = (mask * (length // 4 + 1))[:length]
                yield (int.from_bytes(body, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")


class ChaosProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_port``; see the module docstring."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.stopping = threading.Event()
        self.delay = 0.0  # seconds added to every server->client chunk read while it is set
        self.forwarded_texts: set[str] = set()
        self.acks_delivered = 0
        self._ids_lock = threading.Lock()
        self._lock = threading.Lock()
        self._links: list[tuple[socket.socket, socket.socket]] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept, "chaos-accept")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def forwarded(self, text: str) -> bool:
        with self._ids_lock:
            return text in self.forwarded_texts

    def _sent_up(self, message: Any) -> None:
        if isinstance(message, dict) and message.get("type") == "user_text_message":
            data = message.get("data")
            if isinstance(data, dict) and isinstance(data.get("text"), str):
                with self._ids_lock:
                    self.forwarded_texts.add(data["text"])

    def _sent_down(self, message: Any) -> None:
        if isinstance(message, dict) and message.get("type") == "server-response" \
                and message.get("event_type") == "user_text_message" and message.get("status") == "success":
            with self._ids_lock:
                self.acks_delivered += 1

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2.0)
                upstream.settimeout(None)
            except OSError:
                _close(client)  # the server is down (a restart): the client sees the link fail
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._links.append((client, upstream))
            self._spawn(self._pump_up, "chaos-up", client, upstream, _FrameTap(self._sent_up, b"GET /chat"))
            self._spawn(self._pump_down, "chaos-down", upstream, client, _FrameTap(self._sent_down, b"HTTP/1.1 101"))

    def _pump_up(self, client: socket.socket, upstream: socket.socket, frames: _FrameTap) -> None:
        try:
            while not self.stopping.is_set():
                data = client.recv(_CHUNK)
                if not data:
                    break
                upstream.sendall(data)
                frames.feed(data)
        except OSError:
            pass  # either side went away: end the link
        finally:
            self._end(client, upstream)

    def _pump_down(self, upstream: socket.socket, client: socket.socket, frames: _FrameTap) -> None:
        try:
            while not self.stopping.is_set():
                data = upstream.recv(_CHUNK)
                if not data:
                    break
                delay = self.delay
                if delay > 0 and self.stopping.wait(delay):
                    break
                client.sendall(data)
                frames.feed(data)
        except OSError:
            pass
        finally:
            self._end(client, upstream)

    def _end(self, client: socket.socket, upstream: socket.socket) -> None:
        with self._lock:
            if (client, upstream) in self._links:
                self._links.remove((client, upstream))
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            _close(sock)

    def cut_all(self) -> int:
        """End every link at once without a close frame (the client sees an abnormal closure)."""
        with self._lock:
            links = list(self._links)
        for client, upstream in links:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        return len(links)

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        _close(self._listener)
        self.cut_all()
        deadline = time.monotonic() + 5.0
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
