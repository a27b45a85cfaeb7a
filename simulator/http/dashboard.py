"""The live dashboard: ``GET /_sim/ui`` (a static page and its script) and the state stream it reads.

No front-end build step: ``simulator/http/ui/dashboard.html`` and ``dashboard.js`` ship as they are. The page
holds no data and no secret; everything it shows or does goes through routes that check the control token
(``X-Sim-Control-Token``): ``GET /_sim/events`` (server-sent events, one ``state`` event with
``GET /_sim/state``'s JSON every :data:`PUSH_INTERVAL` seconds, read with ``fetch`` so the token travels in
the header, never in a URL; with workers sharing a store it is the whole simulator's state,
``simulator.http.fanout.whole_state``: every worker's sessions, each naming its ``worker``),
``GET /_sim/catalog`` and the control API. The token reaches the page in the URL fragment
(``/_sim/ui#token=...``; browsers never send a fragment to the server) or through its sign-in form; the
script keeps it in ``sessionStorage`` and removes it from the address bar. Cross-site requests cannot forge
a call: a custom header needs a CORS preflight, which the simulator never grants. The page forbids framing
and inline script (``Content-Security-Policy``). Handlers run on the loop thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from importlib import resources
from typing import Any

from aiohttp import web

from convai_sync.disconnect import DisconnectReason
from simulator.core import faults
from simulator.core.carrier import within
from simulator.core.toxics import KINDS, LIVEKIT_ONLY
from simulator.http import fanout
from simulator.http.connect import CORE_KEY
from simulator.http.control import TOKEN_HEADER, token_ok

logger = logging.getLogger("simulator.dashboard")

#: Seconds between two state events on one stream.
PUSH_INTERVAL = 0.5
#: Event streams open at once (more are refused with 429): each costs a task and a state dump per push.
MAX_STREAMS = 8
STREAMS_KEY: web.AppKey[set[web.StreamResponse]] = web.AppKey("dashboard_streams", set)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _asset(name: str) -> str:
    return resources.files("simulator.http").joinpath("ui").joinpath(name).read_text(encoding="utf-8")


def catalog() -> dict[str, Any]:
    """What the dashboard can inject: error codes, disconnect reasons and toxic kinds with their parameters."""
    return {
        "error_codes": [code.value for code in faults.injectable_codes()],
        "disconnect_reasons": [reason.name for reason in DisconnectReason],
        "toxics": {kind: {"params": params, "livekit_only": kind in LIVEKIT_ONLY} for kind, params in KINDS.items()},
    }


async def page(request: web.Request) -> web.Response:
    """``GET /_sim/ui``: the page (static; it asks for the token when the URL fragment has none)."""
    return web.Response(text=_asset("dashboard.html"), content_type="text/html", headers=PAGE_HEADERS)


async def script(request: web.Request) -> web.Response:
    """``GET /_sim/ui/dashboard.js``."""
    return web.Response(text=_asset("dashboard.js"), content_type="text/javascript", headers=PAGE_HEADERS)


async def style(request: web.Request) -> web.Response:
    """``GET /_sim/ui/dashboard.css``."""
    return web.Response(text=_asset("dashboard.css"), content_type="text/css", headers=PAGE_HEADERS)


def _refused(status: int, detail: str) -> web.Response:
    return web.json_response({"detail": detail}, status=status)


async def catalog_route(request: web.Request) -> web.Response:
    """``GET /_sim/catalog`` (control token required)."""
    if not token_ok(request):
        return _refused(401, f"missing or wrong {TOKEN_HEADER} header")
    return web.json_response(catalog())


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /_sim/events``: server-sent ``state`` events until the client goes or the simulator stops."""
    if not token_ok(request):
        return _refused(401, f"missing or wrong {TOKEN_HEADER} header")
    streams = request.app[STREAMS_KEY]
    if len(streams) >= MAX_STREAMS:
        return _refused(429, f"at most {MAX_STREAMS} dashboard streams at once")
    core = request.app[CORE_KEY]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await response.prepare(request)
    streams.add(response)
    try:
        while request.transport is not None and not request.transport.is_closing():
            data = json.dumps(await fanout.whole_state(core), separators=(",", ":"))
            # A browser that stops reading is dropped like any slow consumer.
            await within(response.write(f"event: state\ndata: {data}\n\n".encode()), core.config.send_timeout)
            await asyncio.sleep(PUSH_INTERVAL)
    except (ConnectionError, asyncio.TimeoutError) as exc:
        logger.debug("dashboard stream ended: %r", exc)
    finally:
        streams.discard(response)
    return response


def add_dashboard_routes(app: web.Application) -> None:
    """Register ``/_sim/ui`` and the routes the page reads."""
    app[STREAMS_KEY] = set()
    app.router.add_get("/_sim/ui", page)
    app.router.add_get("/_sim/ui/dashboard.js", script)
    app.router.add_get("/_sim/ui/dashboard.css", style)
    app.router.add_get("/_sim/catalog", catalog_route)
    app.router.add_get("/_sim/events", events)
