"""WebSocket transport on websocket-client's low-level ``WebSocket`` (Convai ``/chat``).

Thread ownership: this object owns one reader thread, ``convai-transport-<n>``, which is the
only thread that reads the socket. Sends come from any thread (``enable_multithread=True``
serialises them). ``close()`` sends a close frame, waits briefly for the reader to see the
reply, then shuts the socket down so a blocked ``recv`` returns: the reader always exits.
We do not use ``WebSocketApp.run_forever`` (STYLE.md §2: un-interruptible sleeps, racy stop).
"""

from __future__ import annotations

import itertools
import logging
import ssl
import threading

import websocket

from ..connect import Endpoint
from ..errors import ErrorCode, SessionError, SessionErrorStage
from .base import Transport, TransportClosed, TransportListener, TransportOpenError

log = logging.getLogger("convai_sync")
_ids = itertools.count(1)

ABNORMAL_CLOSURE = 1006


def _open_error(code: ErrorCode, message: str, exc: BaseException | None, status: int | None = None
                ) -> TransportOpenError:
    return TransportOpenError(SessionError.of(code, message, exception=exc, http_status_code=status,
                                              stage=SessionErrorStage.TRANSPORT))


def parse_close_frame(payload: bytes) -> tuple[int, str]:
    """Close code and reason from a close frame's payload (1005 when it has none)."""
    if len(payload) < 2:
        return 1005, ""
    code = int.from_bytes(payload[:2], "big")
    return code, payload[2:].decode("utf-8", errors="replace")


class WebSocketTransport(Transport):
    """Convai's ``/chat?session_id=…`` WebSocket (RTVI JSON text frames)."""

    kind = "websocket"

    def __init__(self) -> None:
        self._ws: websocket.WebSocket | None = None
        self._reader: threading.Thread | None = None
        self._listener: TransportListener | None = None
        self._lock = threading.Lock()
        self._closing = False
        self._reported = False

    def open(self, endpoint: Endpoint, listener: TransportListener, *, timeout: float) -> None:
        url = endpoint.room_url
        if url.startswith("http"):
            url = "ws" + url[4:]
        ws = websocket.WebSocket(enable_multithread=True, sslopt={"cert_reqs": ssl.CERT_REQUIRED})
        try:
            ws.connect(url, timeout=max(timeout, 0.001), suppress_origin=True)
        except websocket.WebSocketBadStatusException as exc:
            code = ErrorCode.CONNECTION_FAILED if exc.status_code < 500 else ErrorCode.CONNECTION_SERVER_ERROR
            raise _open_error(code, f"WebSocket handshake refused: HTTP {exc.status_code}", exc,
                              exc.status_code) from None
        except (TimeoutError, websocket.WebSocketTimeoutException) as exc:
            raise _open_error(ErrorCode.CONNECTION_TIMEOUT, "WebSocket connect timed out", exc) from None
        except (OSError, websocket.WebSocketException) as exc:
            raise _open_error(ErrorCode.CONNECTION_NETWORK_ERROR,
                              f"WebSocket connect failed: {type(exc).__name__}: {exc}", exc) from None
        ws.settimeout(None)
        with self._lock:
            self._ws = ws
            self._listener = listener
            self._reader = threading.Thread(target=self._read_loop, args=(ws,),
                                            name=f"convai-transport-{next(_ids)}", daemon=True)
            self._reader.start()

    def send(self, data: str) -> None:
        ws = self._ws
        if ws is None or self._closing or not ws.connected:
            raise ConnectionError("WebSocket is not open")
        try:
            ws.send(data)
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionError(f"WebSocket send failed: {exc}") from exc

    def _read_loop(self, ws: websocket.WebSocket) -> None:
        closed: TransportClosed
        while True:
            try:
                opcode, frame = ws.recv_data_frame(control_frame=False)
            except websocket.WebSocketConnectionClosedException as exc:
                closed = self._lost(exc)
                break
            except (OSError, websocket.WebSocketException, ValueError) as exc:
                closed = self._lost(exc)
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code, reason = parse_close_frame(frame.data or b"")
                closed = TransportClosed(code, reason, "client" if self._closing else "server")
                break
            data = frame.data
            if opcode == websocket.ABNF.OPCODE_TEXT and isinstance(data, bytes):
                try:
                    data = data.decode("utf-8")
                except UnicodeDecodeError:
                    pass  # handed on as bytes; the protocol layer reports protocol.parse_failed
            listener = self._listener
            if listener is not None and not self._closing:
                listener.on_transport_message(self, data)
        ws.shutdown()
        self._report(closed)

    def _lost(self, exc: BaseException) -> TransportClosed:
        if self._closing:
            return TransportClosed(1000, "", "client")
        log.debug("WebSocket lost: %s: %s", type(exc).__name__, exc)
        return TransportClosed(ABNORMAL_CLOSURE, str(exc), "network", exc)

    def _report(self, closed: TransportClosed) -> None:
        with self._lock:
            if self._reported:
                return
            self._reported = True
            listener = self._listener
        if listener is not None:
            listener.on_transport_closed(self, closed)

    def close(self, code: int = 1000, reason: str = "", *, timeout: float = 2.0) -> None:
        with self._lock:
            if self._closing:
                already = True
            else:
                already = False
                self._closing = True
            ws, reader = self._ws, self._reader
        if ws is None:
            return
        if not already and ws.connected:
            # A send stalled on a full TCP buffer holds websocket-client's send lock; never wait
            # on it for long: abort instead of sending a close frame.
            lock = getattr(ws, "lock", None)
            if lock is None or lock.acquire(timeout=min(timeout, 0.5)):
                if lock is not None:
                    lock.release()
                try:
                    ws.send_close(code, reason.encode("utf-8"))
                except (OSError, websocket.WebSocketException) as exc:
                    log.debug("close frame not sent: %s", exc)
        on_reader = reader is threading.current_thread()
        if reader is not None and not on_reader:
            reader.join(min(timeout, 0.5))  # let the server's close reply arrive
        ws.abort()  # wakes a blocked recv: the reader is guaranteed to exit
        if reader is not None and not on_reader:
            reader.join(timeout)
            if reader.is_alive():
                log.warning("%s did not exit within %.1f s", reader.name, timeout)
        ws.shutdown()
