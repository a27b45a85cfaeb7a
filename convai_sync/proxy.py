"""HTTP proxies for the WebSocket transport: ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY``, as requests reads them.

The connect API's HTTP calls go through ``requests``, which honours the proxy environment variables;
the ``/chat`` WebSocket must take the same route or a user behind a proxy connects and then cannot
open the session. Which proxy applies is decided by ``requests.utils.get_environ_proxies`` (the
same rules, ``NO_PROXY`` included, as the HTTP calls). The WebSocket then travels through an
``HTTP CONNECT`` tunnel (RFC 9110 §9.3.6), as websocket-client and browsers do for ``ws``/``wss``.

Thread ownership: none; :func:`open_tunnel` runs on the connect attempt's thread, on a socket
registered with the attempt's :class:`~convai_sync.netio.Canceller`, and every read is bounded by
the attempt's deadline, so a proxy that never answers cannot hold ``connect()`` past it.
"""

from __future__ import annotations

import base64
import socket
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import requests.utils

from .netio import Canceller, connect_tcp

#: The most a proxy's answer to ``CONNECT`` may hold before its blank line (status line and headers).
MAX_RESPONSE_BYTES = 16 * 1024


class ProxyError(ConnectionError):
    """The proxy refused the tunnel or answered something that is not HTTP. The text names the
    proxy by host and port only (never its credentials)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy: where it listens and, when its URL carries them, the Basic credentials."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # credentials never in a repr
        return f"Proxy({self.host}:{self.port})"

    @property
    def where(self) -> str:
        """``host:port``, for messages (never the credentials)."""
        return f"{self.host}:{self.port}"


def proxy_for(url: str) -> Proxy | None:
    """The proxy the environment names for ``url`` (``ws``/``wss``/``http``/``https``), or None.

    ``wss`` and ``https`` use ``HTTPS_PROXY``, ``ws`` and ``http`` use ``HTTP_PROXY`` (``ALL_PROXY``
    for either); ``NO_PROXY`` exempts hosts, as for requests.

    Raises:
        ValueError: the variable names a proxy this transport cannot use (only ``http://``
            proxies tunnel a WebSocket here; ``socks`` and ``https://`` proxies are refused by name).
    """
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    http_url = parts._replace(scheme=scheme).geturl()
    proxies = requests.utils.get_environ_proxies(http_url)
    chosen = proxies.get(scheme) or proxies.get("all")
    if not chosen:
        return None
    if "://" not in chosen:
        chosen = "http://" + chosen
    proxy = urlsplit(chosen)
    if proxy.scheme != "http":
        raise ValueError(f"the {scheme.upper()}_PROXY environment variable names a {proxy.scheme}:// proxy "
                         f"({proxy.hostname}:{proxy.port}); the WebSocket transport tunnels through "
                         "http:// proxies only")
    if not proxy.hostname:
        raise ValueError(f"the {scheme.upper()}_PROXY environment variable names no proxy host")
    return Proxy(proxy.hostname, proxy.port or 80,
                 unquote(proxy.username) if proxy.username else None,
                 unquote(proxy.password) if proxy.password else None)


def open_tunnel(proxy: Proxy, host: str, port: int, deadline: float, canceller: Canceller) -> socket.socket:
    """Connect to ``proxy`` and ask it for a tunnel to ``host:port``; return the tunnelled socket.

    Args:
        proxy: The proxy, from :func:`proxy_for`.
        host: The destination host name (sent to the proxy as is; it resolves it).
        port: The destination port.
        deadline: ``time.monotonic()`` value by which the tunnel must be open.
        canceller: The connect attempt's canceller (the socket is registered with it).

    Raises:
        ProxyError: the proxy answered a status other than 2xx (``status`` set), closed the
            connection, or sent more than :data:`MAX_RESPONSE_BYTES` of headers.
        TimeoutError: the proxy did not answer by ``deadline``.
        OSError: the proxy could not be reached. ``netio.Aborted``: ``canceller`` aborted.
    """
    sock = connect_tcp(proxy.host, proxy.port, max(deadline - time.monotonic(), 0.001), canceller)
    try:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        request = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if proxy.username is not None:
            token = base64.b64encode(f"{proxy.username}:{proxy.password or ''}".encode()).decode("ascii")
            request.append(f"Proxy-Authorization: Basic {token}")
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode("latin-1"))
        _read_answer(sock, proxy, deadline)
    except BaseException:
        sock.close()
        raise
    return sock


def _read_answer(sock: socket.socket, proxy: Proxy, deadline: float) -> None:
    # Read byte-wise up to the blank line: anything after it is the tunnelled peer's and must stay
    # in the socket for the WebSocket handshake.
    answer = bytearray()
    while not answer.endswith(b"\r\n\r\n"):
        if len(answer) >= MAX_RESPONSE_BYTES:
            raise ProxyError(f"proxy {proxy.where} sent over {MAX_RESPONSE_BYTES} bytes of headers")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"proxy {proxy.where} did not answer CONNECT in time")
        sock.settimeout(remaining)
        byte = sock.recv(1)
        if not byte:
            raise ProxyError(f"proxy {proxy.where} closed the connection before answering CONNECT")
        answer += byte
    status_line = bytes(answer).split(b"\r\n", 1)[0].decode("latin-1", "replace")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ProxyError(f"proxy {proxy.where} answered CONNECT with something that is not HTTP: "
                         f"{status_line[:80]!r}")
    status = int(fields[1])
    if not 200 <= status < 300:
        raise ProxyError(f"proxy {proxy.where} refused the tunnel: {status_line[:120]}", status)
