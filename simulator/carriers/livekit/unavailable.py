"""The LiveKit routes of a simulator installed without the ``simulator-livekit`` extra: each names the extra."""

from __future__ import annotations

from aiohttp import web

from simulator.carriers import livekit


async def _unavailable(request: web.Request) -> web.Response:
    # 503, not 404: a 404 on /rtc/v1 would send the real client off to the older /rtc signalling.
    return web.json_response({"detail": livekit.missing_extra_message()}, status=503)


def add_unavailable_routes(app: web.Application) -> None:
    for path in ("/rtc/v1", "/rtc/v1/validate", "/rtc", "/rtc/validate"):
        app.router.add_get(path, _unavailable)
