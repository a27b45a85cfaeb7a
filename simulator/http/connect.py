"""HTTP endpoints: ``POST /connect``, ``GET /chat`` (handed to the WebSocket carrier), ``POST /disconnect``,
``GET /healthz``.

Request, response and error bodies follow Convai's connect API docs (fields, statuses, ``detail``
texts, pydantic-style 422s). Handlers
run on the simulator's loop thread and only touch :class:`simulator.core.state.SimCore`.

Bodies are bounded (:mod:`simulator.core.bounds`): over 1 MiB is 413 ``{"detail": ...}``; a body that is not
UTF-8 JSON, or nests deeper than :data:`~simulator.core.bounds.MAX_JSON_DEPTH`, is 422 ``json_invalid``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from simulator.carriers import livekit
from simulator.carriers.websocket import carrier as websocket
from simulator.core import bounds, faults, features
from simulator.core.faults import ConnectKind
from simulator.core.state import SimCore
from simulator.core.store import Refusal
from simulator.core.tokens import Refusal as TokenRefusal

logger = logging.getLogger("simulator.routes")

CORE_KEY: web.AppKey[SimCore] = web.AppKey("simulator_core", SimCore)
LIVEKIT_TRANSPORTS = ("livekit", "internal", "external")
AUTH_REQUIRED = "Authentication required: provide X-API-Key or API-AUTH-TOKEN"


def _error(status: int, detail: Any, error_code: str | None = None) -> web.Response:
    body: dict[str, Any] = {"detail": detail}
    if error_code is not None:
        body["error_code"] = error_code
    return web.json_response(body, status=status)


def _invalid(kind: str, loc: list[Any], msg: str, value: Any) -> web.Response:
    return _error(422, [{"type": kind, "loc": loc, "msg": msg, "input": value}], "bad_request")


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _trace_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def too_large(limit: int = bounds.MAX_BODY_BYTES) -> web.Response:
    """The 413 answer to a request body over ``limit`` bytes."""
    return _error(413, f"Request body is larger than {limit} bytes")


async def read_limited_body(request: web.Request, limit: int = bounds.MAX_BODY_BYTES) -> bytes | None:
    """The request body, or None when it is over ``limit`` bytes (refused unread when the
    ``Content-Length`` says so; the application's ``client_max_size`` stops a chunked one)."""
    length = request.content_length
    if length is not None and length > limit:
        return None
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None
    return None if len(body) > limit else body


def json_invalid(exc: bounds.JsonInputError) -> web.Response:
    """422 with the pydantic-style ``json_invalid`` detail FastAPI gives a body it cannot decode
    (``loc`` ``["body", position]``; ``ctx.error`` names the problem, never the body's content)."""
    return _error(422, [{"type": "json_invalid", "loc": ["body", exc.pos], "msg": "JSON decode error",
                         "input": {}, "ctx": {"error": exc.msg}}], "bad_request")


async def _read_body(request: web.Request) -> dict[str, Any] | web.Response:
    raw = await read_limited_body(request)
    if raw is None:
        return too_large()
    try:
        body = bounds.decode_json(raw) if raw.strip() else None
    except bounds.JsonInputError as exc:
        return json_invalid(exc)
    if not isinstance(body, dict):
        return _invalid("model_attributes_type", ["body"], "Input should be a valid dictionary", body)
    return body


async def _api_key(request: web.Request, core: SimCore) -> str | web.Response:
    """The key a ``/connect`` stands for: ``X-API-Key`` wins; otherwise an auth token, resolved to the
    key that minted it (and consumed when tokens are single-use), from ``API-AUTH-TOKEN`` or, as one
    Convai page has it, ``CONVAI-API-KEY`` (which may also carry a plain key)."""
    key = request.headers.get("X-API-Key")
    if key is None:
        token = request.headers.get("API-AUTH-TOKEN")
        if token is None:
            token = request.headers.get("CONVAI-API-KEY")
            if token is not None and core.accounts.knows_key(token.strip()):
                return token.strip()
        if token is None or not token.strip():
            return _error(401, AUTH_REQUIRED, "invalid_api_key")
        resolved = await core.store.use_token(token.strip())
        if isinstance(resolved, TokenRefusal):
            logger.info("connect refused: %s", resolved.name.lower())
            return _error(401, resolved.value, "invalid_api_key")
        return resolved
    if not key.strip():
        return _error(401, AUTH_REQUIRED, "invalid_api_key")
    if not core.accounts.knows_key(key):
        return _error(401, "Invalid API key", "invalid_api_key")
    return key


@dataclass(frozen=True)
class _ConnectRequest:
    """A ``/connect`` body that passed validation."""

    character_id: str
    character_session_id: str
    end_user_id: str | None
    end_user_metadata: dict[str, Any] | None
    tts_enabled: bool
    #: The LiveKit ``audio_config`` routing, checked (None: the ``/chat`` WebSocket transport).
    audio_output: dict[str, Any] | None
    #: The character-feature fields (actions, narrative keys, lip-sync, debug...).
    features: features.Features


async def connect(request: web.Request) -> web.StreamResponse:
    """``POST /connect``: auth, body validation, then injected faults, then every plan limit.

    An injected fault answers only a request the real service would have accepted up to its plan
    checks: an unauthenticated or malformed request gets its own 401/413/422/400/403/404 answer and
    leaves the fault for the client it was meant for.
    """
    core = request.app[CORE_KEY]
    key = await _api_key(request, core)
    if isinstance(key, web.Response):
        return key
    body = await _read_body(request)
    if isinstance(body, web.Response):
        return body
    checked = _validate(core, key, body)
    if isinstance(checked, web.Response):
        return checked
    fault = await core.take_connect_fault()
    send_bot_ready = True
    if fault is not None:
        logger.info("connect answered by injected %s", fault.code.value)
        if fault.kind is ConnectKind.ABORT:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # no HTTP response at all
        if fault.kind is ConnectKind.HTTP_ERROR:
            return web.json_response(dict(fault.body), status=fault.status)
        send_bot_ready = fault.kind is not ConnectKind.NO_BOT_READY
    return await _admit(request, core, key, checked, send_bot_ready,
                        invalid_room=fault is not None and fault.kind is ConnectKind.INVALID_ROOM)


def _validate(core: SimCore, key: str, body: dict[str, Any]) -> _ConnectRequest | web.Response:
    """Schema checks, the character, and the ``character_session_id``'s owner (before any fault)."""
    character_id = body.get("character_id")
    if not isinstance(character_id, str) or not character_id:
        return _invalid("missing", ["body", "character_id"], "Field required", body)
    transport = body.get("transport", core.config.transport_default)
    is_livekit = transport in LIVEKIT_TRANSPORTS
    if not is_livekit and transport != "websocket":
        return _invalid("value_error", ["body", "transport"], f"Value error, Invalid transport: {transport}",
                        transport)
    audio_config = body.get("audio_config")
    if audio_config is not None and not is_livekit:
        return _error(400, "audio_config is only supported with LiveKit transport, but transport is set "
                           f"to '{transport}'", "bad_request")
    audio_output: dict[str, Any] | None = None
    if is_livekit:
        if core.livekit is None:
            return _error(400, livekit.missing_extra_message(), "bad_request")
        checked = livekit.check_audio_config(audio_config)
        if isinstance(checked, str):
            return _invalid("value_error", ["body", "audio_config"], f"Value error, {checked}", audio_config)
        audio_output = checked
    if not core.accounts.knows_character(character_id):
        return _error(404, "Character not found or doesn't belong to user", "character_not_found")
    csid = body.get("character_session_id")
    if csid in (None, "", "-1"):
        csid = str(uuid.uuid4())
    elif not _is_uuid(csid):
        return _error(400, "Invalid character_session_id format", "bad_request")
    else:
        owner = core.accounts.conversation_owner(csid)
        if owner is not None and owner != key:
            return _error(403, "Character session belongs to another account", "session_forbidden")
    end_user_id = body.get("end_user_id")
    end_user_id = (end_user_id.strip() or None) if isinstance(end_user_id, str) else None
    if end_user_id is None and core.character(character_id).long_term_memory:
        return _error(400, faults.MISSING_END_USER_ID, "missing_end_user_id")
    metadata = body.get("end_user_metadata") if end_user_id is not None else None
    if metadata is not None and (
        not isinstance(metadata, dict) or not isinstance(metadata.get("name", ""), (str, type(None)))
    ):
        return _invalid("value_error", ["body", "end_user_metadata", "name"], "name must be a string or null",
                        metadata)
    try:
        wanted = features.parse(body)
    except features.FeatureError as exc:
        return _error(422, [exc.entry], "bad_request")
    return _ConnectRequest(character_id, str(csid), end_user_id, metadata,
                           body.get("default_tts_enabled", True) is not False, audio_output, wanted)


async def _admit(
    request: web.Request,
    core: SimCore,
    key: str,
    checked: _ConnectRequest,
    send_bot_ready: bool,
    invalid_room: bool,
) -> web.Response:
    """The plan checks (realtime access, then speakers, concurrency and rate through the plan store, which takes
    the slot), then the session. ``room_url`` names this worker (``core.advertise``) when it is one of several."""
    if not core.accounts.limits.realtime_allowed:
        return _error(403, "Realtime access is not available on your plan", "realtime_access_denied")
    admitted = await core.admit(key, checked.end_user_id, take=not invalid_room)
    if admitted is Refusal.SPEAKER:
        ltm = core.character(checked.character_id).long_term_memory
        return _error(429, faults.LTM_SPEAKER_LIMIT if ltm else "Speaker limit reached", "speaker_limit")
    if admitted is Refusal.CONCURRENCY:
        return _error(429, "Concurrency limit reached for your plan", "concurrency_limit")
    if admitted is Refusal.RATE:
        return _error(429, "Rate limit exceeded")
    assert isinstance(admitted, str)
    if invalid_room:
        return web.json_response({"request_trace_id": _trace_id(), "character_session_id":
                                  checked.character_session_id, "room_name": None, "token": ""})
    host = core.advertise or request.host
    if checked.audio_output is not None:
        assert core.livekit is not None  # _validate refused LiveKit without its extra
        return web.json_response(core.livekit.admit(
            admitted, host, key, checked.character_id, checked.character_session_id, checked.end_user_id,
            checked.end_user_metadata, checked.audio_output, tts_enabled=checked.tts_enabled,
            send_bot_ready=send_bot_ready, request_trace_id=_trace_id(), features=checked.features))
    session = core.create_session(admitted, key, checked.character_id, checked.character_session_id,
                                  checked.end_user_id, tts_enabled=checked.tts_enabled, send_bot_ready=send_bot_ready,
                                  features=checked.features)
    return web.json_response({
        "session_id": session.session_id,
        "request_trace_id": _trace_id(),
        "character_session_id": session.character_session_id,
        "room_url": f"ws://{host}/chat?session_id={session.session_id}",
        "room_name": None,
        "token": "",
        "end_user_id": checked.end_user_id,
        "end_user_metadata": checked.end_user_metadata,
    })


async def chat(request: web.Request) -> web.StreamResponse:
    """``GET /chat?session_id=...``: the session's RTVI WebSocket (:mod:`simulator.carriers.websocket`)."""
    return await websocket.serve_chat(request.app[CORE_KEY], request)


async def disconnect(request: web.Request) -> web.Response:
    """``POST /disconnect?session_id=...``: always 200 for a well-formed id (idempotent)."""
    core = request.app[CORE_KEY]
    session_id = request.query.get("session_id", "")
    if not _is_uuid(session_id):
        return _error(400, "Invalid session ID format", "bad_request")
    session = core.sessions.get(session_id)
    if session is not None:
        core.end(session, 1000, "Session disconnected")
    return web.json_response({"status": "success", "message": "Session disconnected successfully"})


async def healthz(request: web.Request) -> web.Response:
    core = request.app[CORE_KEY]
    return web.json_response({"status": "ok", "sessions": len(core.sessions)})


def build_app(core: SimCore) -> web.Application:
    """The application serving ``core``'s HTTP routes (the server adds the LiveKit and control routes)."""
    app = web.Application(client_max_size=bounds.MAX_BODY_BYTES)
    app[CORE_KEY] = core
    app.router.add_post("/connect", connect)
    app.router.add_get("/chat", chat)
    app.router.add_post("/disconnect", disconnect)
    app.router.add_get("/healthz", healthz)
    return app
