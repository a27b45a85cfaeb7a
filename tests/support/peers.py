"""A family of misbehaving loopback peers that speak just enough of Convai's protocol.

:class:`Peer` is a raw-socket server on 127.0.0.1 (threads named ``peer-*``) answering
``POST /connect``, the ``/chat`` WebSocket and ``POST /disconnect``, each step in a chosen
:class:`Mode`:

* ``connect``: ``"ok"``, ``"drip"`` (the HTTP answer one byte at a time, forever slow),
  ``"hang"`` (read the request, never answer), ``"error503"``.
* ``handshake``: ``"ok"``, ``"drip"``, ``"hang"``.
* ``bot_ready``: send it after the handshake, or never.
* ``after_ready``: ``"normal"`` (ack client messages and answer text with a reply turn; reply to a
  close frame), ``"silent"`` (a partition: read but never send again, close frame included),
  ``"ignore_close"`` (normal, but never answer a close frame), ``"stall"`` (stop reading: the
  client's TCP buffer fills).
* ``disconnect``: ``"ok"``, ``"slow"`` (answer after ``slow_seconds``), ``"hang"``.

Every wait in a peer is on its ``stopping`` event, so :meth:`Peer.stop` ends them all at once.
Tests read what the peer saw from :attr:`Peer.seen` (request lines, client frame types).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import socket
import struct
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_ids = itertools.count(1)


@dataclass
class Mode:
    connect: str = "ok"
    handshake: str = "ok"
    bot_ready: bool = True
    after_ready: str = "normal"
    disconnect: str = "ok"
    slow_seconds: float = 5.0
    drip_interval: float = 0.2


def text_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked server frame."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


def rtvi(msg_type: str, data: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"label": "rtvi-ai", "type": msg_type, "data": data or {}}).encode()


def form_b(event: str, **payload: Any) -> bytes:
    return json.dumps({"label": "rtvi-ai", "type": "server-message", "data": {"type": event, **payload}}).encode()


@dataclass
class Seen:
    requests: list[str] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)
    disconnects: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    def add_request(self, line: str) -> None:
        with self.cond:
            self.requests.append(line)
            if line.startswith("POST /disconnect"):
                self.disconnects += 1
            self.cond.notify_all()

    def add_frame(self, msg_type: str) -> None:
        with self.cond:
            self.frames.append(msg_type)
            self.cond.notify_all()

    def wait(self, predicate: Any, timeout: float = 5.0) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise TimeoutError(f"peer did not see it; requests={self.requests} frames={self.frames}")


class Peer:
    """One misbehaving server; a context manager (``stop()`` on exit)."""

    def __init__(self, mode: Mode | None = None, **changes: Any) -> None:
        self.mode = mode or Mode(**changes)
        self.stopping = threading.Event()
        self.seen = Seen()
        self._listener = socket.create_server(("127.0.0.1", 0))
        if self.mode.after_ready == "stall":
            # A tiny receive buffer (inherited by accepted sockets) fills after a few frames.
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._ws_conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name=f"peer-accept-{next(_ids)}", daemon=True)
        self._accept.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        for thread in [self._accept, *self._threads]:
            thread.join(5)

    # ------------------------------------------------------------------ serving

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            thread = threading.Thread(target=self._handle, args=(conn,), name=f"peer-conn-{next(_ids)}",
                                      daemon=True)
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            request = self._read_request(conn)
            if request is None:
                return
            line, headers, _body = request
            self.seen.add_request(line)
            if line.startswith("POST /connect"):
                self._connect(conn)
            elif line.startswith("GET /chat"):
                self._chat(conn, headers)
            elif line.startswith("POST /disconnect"):
                self._disconnect(conn)
            else:
                self._answer(conn, 404, b'{"detail":"not found"}')
        except OSError:
            pass  # the client went away or the peer is stopping
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _read_request(self, conn: socket.socket) -> tuple[str, dict[str, str], bytes] | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for raw in lines[1:]:
            name, _, value = raw.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = conn.recv(4096)
            if not chunk:
                break
            rest += chunk
        return lines[0], headers, rest

    def _answer(self, conn: socket.socket, status: int, body: bytes, drip: bool = False) -> None:
        head = (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        self._write(conn, head + body, drip)

    def _write(self, conn: socket.socket, data: bytes, drip: bool) -> None:
        if not drip:
            conn.sendall(data)
            return
        for i in range(len(data)):
            if self.stopping.wait(self.mode.drip_interval):
                return
            conn.sendall(data[i:i + 1])

    def _connect(self, conn: socket.socket) -> None:
        mode = self.mode.connect
        if mode == "hang":
            self.stopping.wait()
            return
        if mode == "error503":
            self._answer(conn, 503, b'{"detail":"Service temporarily unavailable"}')
            return
        sid = str(uuid.uuid4())
        body = json.dumps({"session_id": sid, "character_session_id": str(uuid.uuid4()),
                           "room_url": f"ws://127.0.0.1:{self.port}/chat?session_id={sid}",
                           "room_name": None, "token": ""}).encode()
        self._answer(conn, 200, body, drip=mode == "drip")

    def _disconnect(self, conn: socket.socket) -> None:
        mode = self.mode.disconnect
        if mode == "hang":
            self.stopping.wait()
            return
        if mode == "slow" and self.stopping.wait(self.mode.slow_seconds):
            return
        self._answer(conn, 200, b'{"status":"success","message":"Session disconnected successfully"}')

    # ------------------------------------------------------------------ WebSocket

    def _chat(self, conn: socket.socket, headers: dict[str, str]) -> None:
        mode = self.mode.handshake
        if mode == "hang":
            self.stopping.wait()
            return
        accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + _GUID).encode()).digest()).decode()
        response = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode()
        self._write(conn, response, drip=mode == "drip")
        if self.stopping.is_set():
            return
        with self._lock:
            self._ws_conns.append(conn)
        if self.mode.bot_ready:
            conn.sendall(text_frame(rtvi("bot-ready", {"version": "1.0.0"})))
        after = self.mode.after_ready
        if after == "stall":
            self.stopping.wait()  # never read again
            return
        self._frames(conn, silent=after == "silent", reply_close=after == "normal")

    def _frames(self, conn: socket.socket, *, silent: bool, reply_close: bool) -> None:
        while not self.stopping.is_set():
            frame = _read_client_frame(conn)
            if frame is None:
                return
            opcode, payload = frame
            if opcode == 0x8:
                self.seen.add_frame("<close>")
                if reply_close and not silent:
                    conn.sendall(text_frame(payload[:2], 0x8))
                    return
                continue  # ignore the close frame; the client must not depend on a reply
            if opcode == 0x9:
                self.seen.add_frame("<ping>")
                if not silent:
                    conn.sendall(text_frame(payload, 0xA))
                continue
            if opcode != 0x1:
                continue
            msg = json.loads(payload)
            self.seen.add_frame(str(msg.get("type")))
            if silent:
                continue
            self._respond(conn, msg)

    def _respond(self, conn: socket.socket, msg: dict[str, Any]) -> None:
        msg_type = msg.get("type")
        ack = {"type": "server-response", "event_type": msg_type, "status": "success"}
        conn.sendall(text_frame(json.dumps(ack).encode()))
        if msg_type != "user_text_message":
            return
        data = msg.get("data") or {}
        conn.sendall(text_frame(form_b("final-user-transcription", text=data.get("text", ""),
                                       message_id=data.get("message_id"))))
        for frame in (rtvi("bot-llm-started"), rtvi("bot-llm-text", {"text": f"reply to {data.get('text')}"}),
                      rtvi("bot-llm-stopped"), form_b("bot-turn-completed", was_interrupted=False)):
            conn.sendall(text_frame(frame))

    def send_raw(self, frame: bytes) -> None:
        """Send ``frame`` (already framed) on every open WebSocket connection."""
        with self._lock:
            conns = list(self._ws_conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sendall(frame)

    def drop_websockets(self) -> None:
        """End every open WebSocket with a TCP reset-like drop (no close frame)."""
        with self._lock:
            conns, self._ws_conns = list(self._ws_conns), []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _read_client_frame(conn: socket.socket) -> tuple[int, bytes] | None:
    head = _recv_exact(conn, 2)
    if head is None:
        return None
    opcode = head[0] & 0x0F
    length = head[1] & 0x7F
    if length == 126:
        ext = _recv_exact(conn, 2)
        if ext is None:
            return None
        length = struct.unpack("!H", ext)[0]
    elif length == 127:
        ext = _recv_exact(conn, 8)
        if ext is None:
            return None
        length = struct.unpack("!Q", ext)[0]
    mask = _recv_exact(conn, 4) if head[1] & 0x80 else b"\0\0\0\0"
    payload = _recv_exact(conn, length) if length else b""
    if mask is None or payload is None:
        return None
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
