"""``POST /user/speaker/new`` (PROPOSED): a speaker id for a device id, as Convai's Web SDK asks for one.

The Web SDK 1.2.0 calls it before ``/connect`` when given an ``endUserId`` (its ``utils/speakerManagement``:
header ``CONVAI-API-KEY``, body ``{"deviceId": ...}``, answer ``{"speakerId": ...}``); Convai does not document
the route, so the simulator's shape is PROPOSED. The same device id gets the same speaker id; a new one past the
key's ``speaker_limit`` is 429 "Speaker limit reached", as ``/connect`` answers. Loop thread only.
"""

from __future__ import annotations

from aiohttp import web

from simulator.http.connect import AUTH_REQUIRED, CORE_KEY, _error, _invalid, _read_body

SPEAKER_ROUTE = "/user/speaker/new"


async def new_speaker(request: web.Request) -> web.Response:
    core = request.app[CORE_KEY]
    key = request.headers.get("CONVAI-API-KEY") or request.headers.get("X-API-Key")
    if key is None or not key.strip():
        return _error(401, AUTH_REQUIRED, "invalid_api_key")
    if not core.accounts.knows_key(key):
        return _error(401, "Invalid API key", "invalid_api_key")
    body = await _read_body(request)
    if isinstance(body, web.Response):
        return body
    device_id = body.get("deviceId")
    if not isinstance(device_id, str) or not device_id.strip():
        return _invalid("string_type", ["body", "deviceId"], "deviceId must be a non-empty string", device_id)
    speaker_id = core.accounts.speaker_id(key, device_id)
    if speaker_id is None:
        return _error(429, "Speaker limit reached", "speaker_limit")
    return web.json_response({"speakerId": speaker_id})


def add_speaker_routes(app: web.Application) -> None:
    """Add ``POST /user/speaker/new`` to ``app`` (built by :func:`simulator.http.connect.build_app`)."""
    app.router.add_post(SPEAKER_ROUTE, new_speaker)
