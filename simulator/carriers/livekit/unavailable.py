"""The LiveKit routes of a simulator installed without the ``simulator-livekit`` extra: each names the extra.

Loop thread only (aiohttp handlers).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web


def add_unavailable_routes(app: web.Application, detail: Callable[[], str]) -> None:
    """Answer every LiveKit signalling path with 503 ``{"detail": detail()}``."""

    async def unavailable(request: web.Request) -> web.Response:
        # 503, not 404: a 404 on /rtc/v1 would send the real client off to the older /rtc signalling.
        return web.json_response({"detail": detail()}, status=503)

    for path in ("/rtc/v1", "/rtc/v1/validate", "/rtc", "/rtc/validate"):
        app.router.add_get(path, unavailable)
