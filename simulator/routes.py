"""HTTP and WebSocket endpoints: ``POST /connect``, ``GET /chat``, ``POST /disconnect``, ``GET /healthz``.

Request, response and error bodies follow PROTOCOL.md §1.3-§1.5 and the lead's wire contract. Handlers
run on the simulator's loop thread and only touch :class:`simulator.core.SimCore`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from simulator import faults, livekit, messages, wire
from simulator.carrier import WebSocketCarrier
from simulator.core import SimCore
from simulator.faults import ConnectKind
from simulator.sessions import CLOSE_HANDSHAKE_TIMEOUT, Phase

logger = logging.getLogger("simulator.routes")

CORE_KEY: web.AppKey[SimCore] = web.AppKey("simulator_core", SimCore)
MAX_WS_MESSAGE = 16 * 1024 * 1024
LIVEKIT_TRANSPORTS = ("livekit", "internal", "external")
NOT_FOUND_REASON = "Session not found in cache or database"
DUPLICATE_REASON = "Session already has an active connection. Only one WebSocket per session allowed."
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


async def _read_body(request: web.Request) -> dict[str, Any] | web.Response:
    raw = await request.text()
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        return _error(422, [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error",
                             "input": {}, "ctx": {"error": str(exc)}}], "bad_request")
    if not isinstance(body, dict):
        return _invalid("model_attributes_type", ["body"], "Input should be a valid dictionary", body)
    return body


def _api_key(request: web.Request, core: SimCore) -> str | web.Response:
    key = request.headers.get("X-API-Key")
    if key is None:
        # The real service resolves API-AUTH-TOKEN to its key; the simulator accepts a key as the token.
        key = request.headers.get("API-AUTH-TOKEN")
    if key is None or not key.strip():
        return _error(401, AUTH_REQUIRED, "invalid_api_key")
    if not core.accounts.knows_key(key):
        return _error(401, "Invalid API key", "invalid_api_key")
    return key


async def connect(request: web.Request) -> web.StreamResponse:
    """``POST /connect``: faults first, then auth, validation and every plan limit."""
    core = request.app[CORE_KEY]
    fault = core.next_connect_fault()
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
    key = _api_key(request, core)
    if isinstance(key, web.Response):
        return key
    body = await _read_body(request)
    if isinstance(body, web.Response):
        return body
    return _admit(request, core, key, body, send_bot_ready, invalid_room=fault is not None
                  and fault.kind is ConnectKind.INVALID_ROOM)


def _admit(
    request: web.Request,
    core: SimCore,
    key: str,
    body: dict[str, Any],
    send_bot_ready: bool,
    invalid_room: bool,
) -> web.Response:
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
    if not core.accounts.limits.realtime_allowed:
        return _error(403, "Realtime access is not available on your plan", "realtime_access_denied")
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
    metadata = body.get("end_user_metadata") if end_user_id is not None else None
    if metadata is not None and (
        not isinstance(metadata, dict) or not isinstance(metadata.get("name", ""), (str, type(None)))
    ):
        return _invalid("value_error", ["body", "end_user_metadata", "name"], "name must be a string or null",
                        metadata)
    if core.accounts.speaker_blocked(key, end_user_id):
        return _error(429, "Speaker limit reached", "speaker_limit")
    if core.accounts.concurrency_blocked(key):
        return _error(429, "Concurrency limit reached for your plan", "concurrency_limit")
    if core.accounts.rate_blocked(key):
        return _error(429, "Rate limit exceeded")
    if invalid_room:
        return web.json_response({"request_trace_id": _trace_id(), "character_session_id": csid,
                                  "room_name": None, "token": ""})
    tts = body.get("default_tts_enabled", True)
    if is_livekit:
        assert core.livekit is not None and audio_output is not None
        return web.json_response(core.livekit.admit(
            request.host, key, character_id, str(csid), end_user_id, metadata, audio_output,
            tts_enabled=tts is not False, send_bot_ready=send_bot_ready, request_trace_id=_trace_id()))
    session = core.create_session(key, character_id, str(csid), end_user_id,
                                  tts_enabled=tts is not False, send_bot_ready=send_bot_ready)
    return web.json_response({
        "session_id": session.session_id,
        "request_trace_id": _trace_id(),
        "character_session_id": session.character_session_id,
        "room_url": f"ws://{request.host}/chat?session_id={session.session_id}",
        "room_name": None,
        "token": "",
        "end_user_id": end_user_id,
        "end_user_metadata": metadata,
    })


async def chat(request: web.Request) -> web.StreamResponse:
    """``GET /chat?session_id=...``: the session's RTVI WebSocket."""
    core = request.app[CORE_KEY]
    ws = web.WebSocketResponse(timeout=CLOSE_HANDSHAKE_TIMEOUT, max_msg_size=MAX_WS_MESSAGE)
    await ws.prepare(request)
    session_id = request.query.get("session_id", "")
    session = core.sessions.get(session_id)
    if session is None:
        ended = core.recent.get(session_id)
        expired = ended is not None and ended.close_reason == faults.SESSION_EXPIRED_REASON
        reason = faults.SESSION_EXPIRED_REASON if expired else NOT_FOUND_REASON
        await ws.close(code=1008, message=reason.encode())
        return ws
    if session._phase is not Phase.PENDING:
        logger.info("second WebSocket for session %s refused", session_id)
        await ws.close(code=1008, message=DUPLICATE_REASON.encode())
        return ws
    core.open_session(session, WebSocketCarrier(ws, request.transport, session.session_id))
    await session._send(wire.interaction_created(session.character_session_id))
    core.schedule_bot_ready(session)
    core.start_scenario(session)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await messages.handle_text(core, session, msg.data)
            elif msg.type is WSMsgType.BINARY:
                core.arm_idle(session)  # audio frames: accepted and ignored
            elif msg.type is WSMsgType.ERROR:
                logger.warning("session %s WebSocket error: %s", session_id, ws.exception())
    finally:
        core.end(session, None, "client closed")
        task = session._close_task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=CLOSE_HANDSHAKE_TIMEOUT + 0.5)
    return ws


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
    app = web.Application()
    app[CORE_KEY] = core
    app.router.add_post("/connect", connect)
    app.router.add_get("/chat", chat)
    app.router.add_post("/disconnect", disconnect)
    app.router.add_get("/healthz", healthz)
    livekit.install(core, app)
    return app
