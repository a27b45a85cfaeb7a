"""The simulator's aiohttp runner: requests that fail before or outside a route are answered and
logged without echoing what the client sent, and a client that goes away is one DEBUG line.

aiohttp answers a request its parser refuses (a header longer than 8190 bytes, say) with a 400 whose
text quotes the start of the offending bytes (``Got more than 8190 bytes when reading: b'<the first
100 bytes>...'``) and logs it with a traceback; an ``X-API-Key`` of 10 KB was echoed that way. A client
that closes its socket mid-request (an aborted ``POST /connect``) was logged as an ERROR with a full
traceback. :class:`QuietRequestHandler` answers the first with a fixed text naming only the error's
type, and logs both in one line.

Runs on the simulator's loop thread (``sim-loop``), like every aiohttp handler.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

logger = logging.getLogger("simulator.http")


class QuietRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol, with :meth:`handle_error` that never echoes the request."""

    __slots__ = ()  # RequestHandler has slots: an instance's class can then be switched to this one

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if isinstance(exc, ConnectionError):
            logger.debug("%s %s: the client went away mid-request (%s)", request.method, request.path,
                         type(exc).__name__)
        elif isinstance(exc, HttpProcessingError):
            # The parser's message quotes the client's bytes (a header holding an API key): name the
            # error's type only, in the reply and in the log.
            logger.info("refused a malformed HTTP request from %s: %d %s", request.remote, status,
                        type(exc).__name__)
        else:
            return super().handle_error(request, status, exc, message)
        response = web.Response(status=status, text=f"{status} Bad Request: {type(exc).__name__}\n"
                                if status == 400 else f"{status}\n", content_type="text/plain")
        response.force_close()
        return response


class QuietServer(web.Server):
    """A ``web.Server`` whose connections use :class:`QuietRequestHandler`."""

    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = QuietRequestHandler  # same state and slots; only handle_error differs
        return handler


class QuietAppRunner(web.AppRunner):
    """``web.AppRunner`` serving ``app`` through a :class:`QuietServer`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = QuietServer  # AppRunner builds a plain Server; only its connection factory differs
        return server
