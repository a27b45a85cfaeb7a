"""CORS for the simulator's HTTP routes, so browser clients (Convai's Web SDK) can call ``/connect`` and the rest.

An aiohttp middleware (runs on the simulator's loop thread). It answers preflights (``OPTIONS`` with
``Access-Control-Request-Method``) itself and adds ``Access-Control-Allow-Origin`` to every answer for an allowed
origin, following the Fetch standard's CORS protocol (https://fetch.spec.whatwg.org/#http-cors-protocol).

The simulator listens on loopback and must not become a drive-by target for any web page the user opens:
by default only loopback origins are allowed (``http://localhost:*``, ``http://127.0.0.1:*``,
``http://[::1]:*``, any port); more are added with ``Simulator(cors_origins=...)`` / ``--cors-origin``, and
``"*"`` allows every origin (with a warning). A request whose ``Origin`` is not allowed is refused with 403
before it reaches a route, so a page cannot even make a "simple" (unpreflighted) POST do anything.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

logger = logging.getLogger("simulator.http.cors")

#: Hosts whose ``http://`` origins are always allowed (any port).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: Request headers a browser may send: Convai's key and token headers (``CONVAI-API-KEY`` is the one the
#: Web SDK's ``/user/speaker/new`` call uses), JSON bodies, and LiveKit's bearer token.
ALLOWED_HEADERS = ("x-api-key", "api-auth-token", "convai-api-key", "content-type", "authorization")
ALLOWED_METHODS = ("GET", "POST", "OPTIONS")
#: Seconds a browser may cache a preflight answer.
MAX_AGE = 600

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def check_origins(origins: Iterable[str]) -> tuple[str, ...]:
    """The extra allowed origins, validated: each ``"*"`` or ``scheme://host[:port]`` (no path); ValueError
    naming ``cors_origins`` otherwise. Logs a warning when ``"*"`` is among them."""
    if isinstance(origins, str):
        raise TypeError("cors_origins must be a list of origins, not one string")
    checked = []
    for origin in origins:
        if not isinstance(origin, str):
            raise TypeError(f"cors_origins entries must be strings, got {type(origin).__name__}")
        if origin != "*":
            parts = urllib.parse.urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
                raise ValueError(f"cors_origins: {origin!r} is not an origin like 'http://host:port' or '*'")
            origin = origin.lower()
        checked.append(origin)
    if "*" in checked:
        logger.warning("CORS allows every origin ('*'): any web page the user opens can call this simulator")
    return tuple(checked)


def _is_loopback(origin: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(origin)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS and not parts.path


def allowed(origin: str, extra: tuple[str, ...]) -> bool:
    """True when a request from ``origin`` may be answered (loopback, listed, or ``"*"`` listed)."""
    return "*" in extra or origin.lower() in extra or _is_loopback(origin)


def middleware(extra_origins: tuple[str, ...]) -> Middleware:
    """The aiohttp middleware allowing loopback origins and ``extra_origins`` (from :func:`check_origins`)."""

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None:  # not a browser's cross-origin request: nothing to add
            return await handler(request)
        if not allowed(origin, extra_origins):
            logger.info("request from origin %r refused (not an allowed CORS origin)", origin)
            return web.json_response({"detail": "Origin not allowed"}, status=403)
        if request.method == hdrs.METH_OPTIONS and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers:
            response: web.StreamResponse = web.Response(status=204, headers={
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(ALLOWED_METHODS),
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ", ".join(ALLOWED_HEADERS),
                hdrs.ACCESS_CONTROL_MAX_AGE: str(MAX_AGE),
            })
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # aiohttp's 404/405 answers carry the header too
                _allow(exc, origin)
                raise
        _allow(response, origin)
        return response

    return cors


def _allow(response: web.StreamResponse, origin: str) -> None:
    if response.prepared:  # a WebSocket upgrade: CORS does not apply (and its headers are sent)
        return
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
    response.headers.add(hdrs.VARY, hdrs.ORIGIN)
