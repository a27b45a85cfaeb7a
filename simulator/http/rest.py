"""REST gateway routes on the simulator's port: auth tokens (``/user/...``) and the memory API.

Auth is the gateway's ``CONVAI-API-KEY`` header; errors are ``{"ERROR": "<message>"}`` with the
documented texts (``"The request is missing an API key."``, ``"The request contains an invalid API
key."``). Token routes follow Convai's Web SDK docs ("Auth tokens"): ``POST /user/connect`` ->
``{"apiAuthToken", "expirationTime"}``; ``POST /user/extend-token`` and ``POST /user/revoke-token``
take ``{"apiAuthToken"}`` (extend answers the same shape as mint; revoke ``{"status": "success"}``).
The memory routes are PROPOSED (only the ``/memory/`` prefix is documented) and come from the one
table :data:`convai_sync.memory.PATHS`, which the SDK's ``MemoryClient`` uses too.

Handlers run on the simulator's loop thread and touch only :class:`simulator.core.state.SimCore` state.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from convai_sync.memory import PATHS as MEMORY_PATHS
from simulator.core import bounds
from simulator.core.restfaults import envelope
from simulator.core.state import SimCore
from simulator.http.connect import CORE_KEY, read_limited_body

logger = logging.getLogger("simulator.rest")

MINT_PATH = "/user/connect"
EXTEND_PATH = "/user/extend-token"
REVOKE_PATH = "/user/revoke-token"
MISSING_KEY = "The request is missing an API key."
INVALID_KEY = "The request contains an invalid API key."
UNKNOWN_TOKEN = "Invalid or expired apiAuthToken"

Handler = Callable[[SimCore, str, dict[str, Any]], Awaitable[web.Response]]


def _fail(status: int, message: str | None = None) -> web.Response:
    return web.json_response(envelope(status, message), status=status)


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    raw = await read_limited_body(request)
    if raw is None:
        return _fail(413, f"Request body is larger than {bounds.MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        body = bounds.decode_json(raw)
    except bounds.JsonInputError as exc:
        return _fail(400, f"Request body is not valid JSON ({exc.msg})")
    if not isinstance(body, dict):
        return _fail(400, "Request body must be a JSON object")
    return body


def _route(operation: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Auth, injected faults, body, then ``handler(core, api_key, body)``."""
    async def serve(request: web.Request) -> web.Response:
        core = request.app[CORE_KEY]
        key = request.headers.get("CONVAI-API-KEY")
        if key is None or not key.strip():
            return _fail(401, MISSING_KEY)
        if not core.accounts.knows_key(key.strip()):
            return _fail(401, INVALID_KEY)
        status = core.rest_faults.take(operation)
        if status is not None:
            logger.info("%s answered by an injected HTTP %d", operation, status)
            return _fail(status)
        body = await _body(request)
        if isinstance(body, web.Response):
            return body
        return await handler(core, key.strip(), body)
    return serve


def _token_answer(token: str, expiration_time: str) -> web.Response:
    return web.json_response({"apiAuthToken": token, "expirationTime": expiration_time})


async def _mint(core: SimCore, key: str, body: dict[str, Any]) -> web.Response:
    return _token_answer(*await core.store.mint_token(key))


def _token_of(body: dict[str, Any]) -> str | web.Response:
    token = body.get("apiAuthToken")
    if not isinstance(token, str) or not token.strip():
        return _fail(400, "apiAuthToken is required")
    return token.strip()


async def _extend(core: SimCore, key: str, body: dict[str, Any]) -> web.Response:
    token = _token_of(body)
    if isinstance(token, web.Response):
        return token
    expiration_time = await core.store.extend_token(key, token)
    if expiration_time is None:
        return _fail(401, UNKNOWN_TOKEN)
    return _token_answer(token, expiration_time)


async def _revoke(core: SimCore, key: str, body: dict[str, Any]) -> web.Response:
    token = _token_of(body)
    if isinstance(token, web.Response):
        return token
    if not await core.store.revoke_token(key, token):
        return _fail(401, UNKNOWN_TOKEN)
    return web.json_response({"status": "success", "message": "Token revoked"})


# ------------------------------------------------------------------ memory API (PROPOSED paths)

def _ident(body: dict[str, Any], name: str) -> str | web.Response:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        return _fail(400, f"{name} is required")
    return value.strip()


def _pair(core: SimCore, body: dict[str, Any]) -> tuple[str, str] | web.Response:
    user = _ident(body, "end_user_id")
    if isinstance(user, web.Response):
        return user
    character = _ident(body, "character_id")
    if isinstance(character, web.Response):
        return character
    if not core.accounts.knows_character(character):
        return _fail(404, "Character not found")
    return user, character


def _bounded_int(body: dict[str, Any], name: str, default: int, high: int) -> int | web.Response:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        return _fail(400, f"{name} must be an integer between 1 and {high}")
    return value


async def _list(core: SimCore, key: str, body: dict[str, Any]) -> web.Response:
    pair = _pair(core, body)
    if isinstance(pair, web.Response):
        return pair
    page = _bounded_int(body, "page", 1, 1000)
    if isinstance(page, web.Response):
        return page
    size = _bounded_int(body, "page_size", 20, 100)
    if isinstance(size, web.Response):
        return size
    memories = await core.store.memories(key, *pair)
    chunk = memories[(page - 1) * size: page * size]
    return web.json_response({"memories": [m.as_json() for m in chunk], "page": page, "page_size": size,
                              "total_count": len(memories), "has_more": page * size < len(memories)})


async def _add(core: SimCore, key: str, body: dict[str, Any]) -> web.Response:
    pair = _pair(core, body)
    if isinstance(pair, web.Response):
        return pair
    texts = body.get("memories")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        return _fail(400, "memories must be a non-empty list of non-empty strings")
    if len(texts) > 100 or any(len(t) > 2000 for t in texts):
        return _fail(400, "at most 100 memories of at most 2000 characters each")
    added, duplicates = await core.store.add_memories(key, *pair, texts)
    return web.json_response({"added": [m.as_json() for m in added], "duplicates": duplicates})


async def _get(core: SimCore, key: str, body: dict[str, Any]) -> web.Response:
    pair = _pair(core, body)
    if isinstance(pair, web.Response):
        return pair
    memory_id = _ident(body, "memory_id")
    if isinstance(memory_id, web.Response):
        return memory_id
    memory = await core.store.get_memory(key, *pair, memory_id)
    if memory is None:
        return _fail(404, "Memory not found")
    return web.json_response(memory.as_json())


async def _delete(core: SimCore, key: str, body: dict[str, Any]) -> web.Response:
    pair = _pair(core, body)
    if isinstance(pair, web.Response):
        return pair
    memory_id = _ident(body, "memory_id")
    if isinstance(memory_id, web.Response):
        return memory_id
    if not await core.store.delete_memory(key, *pair, memory_id):
        return _fail(404, "Memory not found")
    return web.json_response({"status": "success"})


async def _delete_all(core: SimCore, key: str, body: dict[str, Any]) -> web.Response:
    user = _ident(body, "end_user_id")
    if isinstance(user, web.Response):
        return user
    character: str | None = None
    if body.get("character_id") is not None:
        checked = _ident(body, "character_id")
        if isinstance(checked, web.Response):
            return checked
        character = checked
    removed = await core.store.delete_memories(key, user, character)
    # Convai deletes asynchronously; the simulator has finished by the time it answers.
    return web.json_response({"status": "accepted", "deleted": removed})


_MEMORY_HANDLERS: dict[str, Handler] = {
    "list": _list, "add": _add, "get": _get, "delete": _delete, "delete_all": _delete_all,
}


def install(app: web.Application) -> None:
    """Add the token and memory routes to ``app`` (whose ``CORE_KEY`` holds the core)."""
    app.router.add_post(MINT_PATH, _route("mint", _mint))
    app.router.add_post(EXTEND_PATH, _route("extend", _extend))
    app.router.add_post(REVOKE_PATH, _route("revoke", _revoke))
    for operation, path in MEMORY_PATHS.items():
        app.router.add_post(path, _route(f"memory.{operation}", _MEMORY_HANDLERS[operation]))
