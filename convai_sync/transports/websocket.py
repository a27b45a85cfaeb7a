"""WebSocket transport on websocket-client (Convai ``/chat``), bounded against any peer.

Thread ownership: this object owns one reader thread, ``convai-transport-<n>``, the only thread
that reads the socket, and (only while the peer is slow to read) one writer thread owned by its
:class:`~convai_sync.transports.outbox.Outbox`. Sends come from any thread and never block on
the network.

Shutdown does not depend on the peer: ``close()`` sends a close frame only if it can go out at
once, waits at most ``close_grace`` for the server's close reply, then shuts the socket down
itself (``shutdown(SHUT_RDWR)``, whatever websocket-client's own flags say), which wakes the
reader and any blocked write at once; both threads are then joined within the timeout.

The handshake runs on a socket the SDK created and registered with the attempt's
:class:`~convai_sync.netio.Canceller`, so a deadline or ``close()`` aborts a handshake that a
slow peer drip-feeds. ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` apply as they do to the connect
API's HTTP calls: through a proxy, the WebSocket travels in an ``HTTP CONNECT`` tunnel
(:mod:`convai_sync.proxy`), opened on the same abortable socket under the same deadline.
Redirects are refused (one would forward the session to another host).

Audio (PROPOSED; see :mod:`~convai_sync.transports.pipecat`): the user's voice goes out as binary
Pipecat ``Frame.audio`` messages of 20 ms each, through the same outbox, whose bounded queue is
the back-pressure (audio may fill at most :data:`AUDIO_QUEUE_SHARE` of it, so text messages always
find room). Inbound binary messages are decoded as Pipecat frames: ``audio`` goes to
``on_transport_audio``, ``message`` (an RTVI message) to ``on_transport_message``,
``interruption`` to ``on_transport_interruption``; a binary message that is JSON text, or not a
Pipecat frame, is handed on as before (the session reports what is wrong with it). Audio and
messages share this one ordered socket, so the audio never lags its messages (``audio_lag`` 0).
"""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

import websocket

from ..audio import check_format
from ..connect import Endpoint
from ..errors import ErrorCode, SessionError, SessionErrorStage
from ..netio import Aborted, Canceller, connect_tcp
from ..proxy import ProxyError, open_tunnel, proxy_for
from . import pipecat
from .base import Transport, TransportClosed, TransportFault, TransportListener, TransportOpenError
from .frames import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Control, MessageReader, ProtocolViolation, Refused
from .outbox import Outbox, OutboxFull

log = logging.getLogger("convai_sync")
_ids = itertools.count(1)

ABNORMAL_CLOSURE = 1006
#: Inbound message limit of Convai's service (16 MB per WebSocket message).
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DEFAULT_SEND_QUEUE_BYTES = 1024 * 1024
DEFAULT_CLOSE_GRACE = 0.25
#: Share of the send queue the user's audio may fill (the rest stays free for messages).
AUDIO_QUEUE_SHARE = 0.75


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


def _frame(data: str | bytes, opcode: int) -> bytes:
    formatted: bytes = websocket.ABNF.create_frame(data, opcode).format()
    return formatted


class WebSocketTransport(Transport):
    """Convai's ``/chat?session_id=…`` WebSocket (RTVI JSON text frames).

    Args:
        max_message_bytes: Largest inbound message; larger ones are discarded unread and
            reported as ``protocol.message_invalid`` (the session goes on).
        send_queue_bytes: Bound of frames waiting for a slow peer; beyond it ``send`` raises.
        close_grace: Seconds ``close()`` waits for the server's close reply.
    """

    kind = "websocket"

    def __init__(self, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 send_queue_bytes: int = DEFAULT_SEND_QUEUE_BYTES,
                 close_grace: float = DEFAULT_CLOSE_GRACE) -> None:
        self._max_message = max_message_bytes
        self._queue_bytes = send_queue_bytes
        self._grace = close_grace
        self._ws: websocket.WebSocket | None = None
        self._sock: socket.socket | None = None
        self._outbox: Outbox | None = None
        self._reader: threading.Thread | None = None
        self._listener: TransportListener | None = None
        self._lock = threading.Lock()
        self._closing = False
        self._close_initiator: str = "client"
        self._close_reason = ""
        self._reported = False
        self._close_reply = threading.Event()
        self._last_rx: float | None = None
        self._unsent = 0
        self._audio_lock = threading.Lock()  # one send_audio's frames stay contiguous
        self._warned_binary = False

    # ------------------------------------------------------------------ open

    def open(self, endpoint: Endpoint, listener: TransportListener, *, timeout: float,
             canceller: Canceller | None = None) -> None:
        url = endpoint.room_url
        if url.startswith("http"):
            url = "ws" + url[4:]
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        canceller = canceller or Canceller("WebSocket handshake")
        deadline = time.monotonic() + max(timeout, 0.001)
        sock: socket.socket | None = None
        try:
            proxy = proxy_for(url)
        except ValueError as exc:
            canceller.release()
            raise _open_error(ErrorCode.CONNECTION_FAILED, f"WebSocket connect to {host}:{port}: {exc}",
                              None) from None
        try:
            if proxy is None:
                sock = connect_tcp(host, port, max(timeout, 0.001), canceller)
            else:
                sock = open_tunnel(proxy, host, port, deadline, canceller)
            if secure:
                context = ssl.create_default_context()  # certificate and host name verified
                sock = context.wrap_socket(sock, server_hostname=host)
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            ws = websocket.WebSocket(skip_utf8_validation=True)
            ws.connect(url, socket=sock, suppress_origin=True, redirect_limit=0)
        except websocket.WebSocketBadStatusException as exc:
            _close_quietly(sock)
            code = ErrorCode.CONNECTION_FAILED if exc.status_code < 500 else ErrorCode.CONNECTION_SERVER_ERROR
            raise _open_error(code, f"WebSocket handshake refused: HTTP {exc.status_code}", None,
                              exc.status_code) from None
        except (TimeoutError, websocket.WebSocketTimeoutException) as exc:
            _close_quietly(sock)
            raise _open_error(ErrorCode.CONNECTION_TIMEOUT, f"WebSocket connect timed out: {exc}", None) from None
        except Aborted as exc:
            _close_quietly(sock)
            raise _open_error(ErrorCode.CONNECTION_TIMEOUT, str(exc), None) from None
        except ProxyError as exc:
            _close_quietly(sock)
            # A proxy's 4xx (407, 403) will answer the same on a retry; its 5xx or a dropped
            # connection is the network's and is retried like one.
            code = (ErrorCode.CONNECTION_FAILED if exc.status is not None and exc.status < 500
                    else ErrorCode.CONNECTION_NETWORK_ERROR)
            raise _open_error(code, f"WebSocket connect to {host}:{port}: {exc}", None, exc.status) from None
        except (OSError, ssl.SSLError, websocket.WebSocketException, ValueError) as exc:
            _close_quietly(sock)
            if canceller.aborted:
                raise _open_error(ErrorCode.CONNECTION_TIMEOUT,
                                  f"{canceller.what} aborted: {canceller.reason}", None) from None
            raise _open_error(ErrorCode.CONNECTION_NETWORK_ERROR,
                              f"WebSocket connect to {host}:{port} failed: {type(exc).__name__}: {exc}",
                              None) from None
        finally:
            canceller.release()
        sock.settimeout(None)
        with self._lock:
            self._ws, self._sock, self._listener = ws, sock, listener
            self._outbox = Outbox(sock, self._queue_bytes, self._write_failed)
            self._last_rx = time.monotonic()
            self._reader = threading.Thread(target=self._read_loop, args=(ws,),
                                            name=f"convai-transport-{next(_ids)}", daemon=True)
            self._reader.start()

    # ------------------------------------------------------------------ sending

    def send(self, data: str) -> None:
        outbox = self._outbox
        if outbox is None or self._closing:
            raise ConnectionError("WebSocket is not open")
        outbox.send(_frame(data, OP_TEXT))

    @property
    def supports_audio(self) -> bool:
        return True

    @property
    def audio_lag(self) -> float:
        return 0.0

    def send_audio(self, pcm: bytes, sample_rate: int, num_channels: int, *, timeout: float | None) -> None:
        """Send PCM16 as 20 ms binary ``Frame.audio`` messages, waiting up to ``timeout`` seconds
        (None: as long as the connection lives) for room in the send queue.

        Raises:
            ConnectionError: not open; :class:`~convai_sync.transports.outbox.OutboxFull` when the
                queue stayed full until the deadline (the frames queued before then are sent).
            pipecat.ProtobufMissing: the ``protobuf`` package is not installed (extra ``audio``).
        """
        outbox = self._outbox
        if outbox is None or self._closing:
            raise ConnectionError("WebSocket is not open")
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        pcm = check_format(pcm, sample_rate, num_channels)
        pipecat.encode_audio(b"", sample_rate, num_channels)  # the package, before any frame
        pieces = pipecat.split(pcm, sample_rate, num_channels)
        cap = int(self._queue_bytes * AUDIO_QUEUE_SHARE)
        if not self._audio_lock.acquire(timeout=-1 if deadline is None else max(0.0, deadline - time.monotonic())):
            raise OutboxFull("another send_audio() is still queuing its audio")
        try:
            for index, piece in enumerate(pieces):
                frame = _frame(pipecat.encode_audio(piece, sample_rate, num_channels), OP_BINARY)
                try:
                    outbox.send(frame, deadline=deadline, cap=cap)
                except OutboxFull as exc:
                    raise OutboxFull(f"{exc}; {index * 20} of {len(pieces) * 20} ms of audio queued") from None
        finally:
            self._audio_lock.release()

    def ping(self) -> None:
        outbox = self._outbox
        if outbox is not None and not self._closing:
            outbox.try_send_now(_frame(b"", OP_PING))

    def _write_failed(self, exc: OSError) -> None:
        log.debug("WebSocket write failed: %s", exc)
        self._shutdown()  # the reader then reports the loss

    @property
    def last_received(self) -> float | None:
        return self._last_rx

    @property
    def unsent(self) -> int:
        return self._unsent

    # ------------------------------------------------------------------ reading

    def _read_loop(self, ws: websocket.WebSocket) -> None:
        reader = MessageReader(ws, self._max_message)
        closed: TransportClosed
        while True:
            try:
                item = reader.next()
            except ProtocolViolation as exc:
                log.warning("WebSocket protocol violation by the server: %s", exc)
                closed = self._lost(exc, f"protocol violation: {exc}")
                break
            except (OSError, websocket.WebSocketException, ValueError) as exc:
                closed = self._lost(exc, str(exc))
                break
            self._last_rx = time.monotonic()
            if isinstance(item, Control):
                if item.opcode == OP_CLOSE:
                    code, reason = parse_close_frame(item.payload)
                    self._close_reply.set()
                    if not self._closing:
                        self._reply_close(item.payload)
                        closed = TransportClosed(code, reason, "server")
                    else:
                        closed = self._client_close()
                    break
                if item.opcode == OP_PING and self._outbox is not None:
                    self._outbox.try_send_now(_frame(item.payload, OP_PONG))
                continue
            listener = self._listener
            if listener is None or self._closing:
                continue
            if isinstance(item, Refused):
                fault = ErrorCode.PROTOCOL_MESSAGE_INVALID if item.too_large else ErrorCode.PROTOCOL_PARSE_FAILED
                listener.on_transport_message(self, TransportFault(fault, item.reason))
            elif isinstance(item.data, bytes):
                self._binary(listener, item.data)
            else:
                listener.on_transport_message(self, item.data)
        self._close_reply.set()
        self._shutdown()
        outbox = self._outbox
        if outbox is not None:
            unsent = outbox.close(1.0)
            if unsent:
                self._unsent = unsent
                log.warning("%d queued frame(s) were never sent: the connection ended first", unsent)
        self._report(closed)
        sock = self._sock
        if sock is not None:
            sock.close()

    def _binary(self, listener: TransportListener, data: bytes) -> None:
        if data[:1] in (b"{", b"["):  # JSON sent as a binary frame: a protobuf Frame never starts so
            listener.on_transport_message(self, data)
            return
        try:
            payload = pipecat.decode(data)
        except pipecat.ProtobufMissing:
            if not self._warned_binary:
                self._warned_binary = True
                log.warning("binary WebSocket messages (the character's voice) are ignored: %s", pipecat.EXTRA_HINT)
            return
        except pipecat.FrameDecodeError as exc:
            log.debug("binary message is not a Pipecat frame (%s); handing it on as a message", exc)
            listener.on_transport_message(self, data)
            return
        if isinstance(payload, pipecat.AudioPayload):
            listener.on_transport_audio(self, payload.pcm, payload.sample_rate, payload.num_channels)
        elif isinstance(payload, pipecat.MessagePayload):
            listener.on_transport_message(self, payload.data)
        elif isinstance(payload, pipecat.InterruptionPayload):
            listener.on_transport_interruption(self)
        else:
            log.debug("Pipecat %s frame ignored (Convai sends text as RTVI messages)", payload.kind)

    def _reply_close(self, payload: bytes) -> None:
        outbox = self._outbox
        if outbox is not None:
            outbox.try_send_now(_frame(payload[:2] or (1000).to_bytes(2, "big"), OP_CLOSE))

    def _client_close(self) -> TransportClosed:
        if self._close_initiator == "network":
            return TransportClosed(ABNORMAL_CLOSURE, self._close_reason, "network")
        return TransportClosed(1000, self._close_reason, "client")

    def _lost(self, exc: BaseException, text: str) -> TransportClosed:
        if self._closing:
            return self._client_close()
        log.debug("WebSocket lost: %s: %s", type(exc).__name__, exc)
        return TransportClosed(ABNORMAL_CLOSURE, text, "network", exc)

    def _report(self, closed: TransportClosed) -> None:
        with self._lock:
            if self._reported:
                return
            self._reported = True
            listener = self._listener
        if listener is not None:
            listener.on_transport_closed(self, closed)

    # ------------------------------------------------------------------ closing

    def _shutdown(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already shut down or never connected

    def abort(self, reason: str) -> None:
        """Drop the connection as lost (e.g. a keepalive timeout): a network close, retried."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._close_initiator = "network"
            self._close_reason = reason
        log.info("WebSocket dropped: %s", reason)
        self._finish(timeout=1.0, send_close=False)

    def close(self, code: int = 1000, reason: str = "", *, timeout: float = 1.0) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._close_reason = reason
        self._finish(timeout, send_close=True, code=code, reason=reason)

    def _finish(self, timeout: float, *, send_close: bool, code: int = 1000, reason: str = "") -> None:
        deadline = time.monotonic() + max(timeout, 0.0)
        reader, outbox = self._reader, self._outbox
        if reader is None or outbox is None:
            return  # never opened
        on_reader = reader is threading.current_thread()
        if send_close and outbox.try_send_now(_frame(code.to_bytes(2, "big") + reason.encode()[:123], OP_CLOSE)) \
                and not on_reader:
            self._close_reply.wait(max(0.0, min(self._grace, deadline - time.monotonic())))
        self._shutdown()
        unsent = outbox.close(max(0.0, deadline - time.monotonic()))
        if unsent:
            self._unsent = unsent
            log.warning("%d queued frame(s) were never sent: the connection closed first", unsent)
        if not on_reader:
            reader.join(max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                log.warning("%s did not exit within %.2f s", reader.name, timeout)
        sock = self._sock
        if sock is not None and not reader.is_alive():
            sock.close()


def _close_quietly(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError as exc:
            log.debug("socket close failed: %s", exc)
