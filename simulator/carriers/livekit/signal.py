"""LiveKit signalling on the simulator's port: ``GET /rtc/v1`` (WebSocket), the validate routes, and ``/rtc``.

A join (``join_request`` = base64url ``WrappedJoinRequest``, JWT in ``Authorization: Bearer``) is checked
like LiveKit checks it: a bad, expired or foreign token, or a room that is not open, is refused with HTTP 401
and a text before the upgrade (the client then calls ``/rtc/v1/validate``, which gives the same answer).
After the upgrade every frame is a binary protobuf (``SignalResponse`` out, ``SignalRequest`` in). The older
dual-peer-connection mode (``/rtc``) is not served: it answers 400 saying so (never 404, which makes clients
fall back to it), except right after an injected 404 on ``/rtc/v1``, which it repeats. Loop thread only.

Inputs are bounded: a signal message is at most :data:`MAX_SIGNAL_MESSAGE` bytes, so is a ``join_request``
once decompressed, and a participant publishes at most :data:`MAX_USER_TRACKS` tracks (further
``add_track`` requests are ignored, with a warning). Every signal message the simulator sends has the send
deadline of ``simulator.carriers.livekit.carrier``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import zlib

from aiohttp import WSMsgType, web
from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc

from simulator.carriers.livekit.carrier import LiveKitCarrier, LiveKitSession
from simulator.carriers.livekit.faults import Ending
from simulator.carriers.livekit.room import leave, pong
from simulator.carriers.livekit.service import LiveKitService
from simulator.carriers.livekit.tokens import Grant, TokenRefused
from simulator.core import wire
from simulator.core.carrier import CLOSE_HANDSHAKE_TIMEOUT, within
from simulator.core.sessions import Phase

logger = logging.getLogger("simulator.livekit.signal")

SERVICE_KEY: web.AppKey[LiveKitService] = web.AppKey("simulator_livekit", LiveKitService)
MAX_SIGNAL_MESSAGE = 1024 * 1024
#: Tracks one participant may publish (a Convai user publishes its microphone, perhaps a camera).
MAX_USER_TRACKS = 16
#: Seconds a session whose participant vanished (signal lost, no leave) waits for it to join again.
DEPARTURE_TIMEOUT = 10.0
V0_REFUSAL = "this simulator serves LiveKit signalling v1 only (/rtc/v1, single peer connection)"


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("access_token", "")


def _check(service: LiveKitService, request: web.Request) -> tuple[Grant, LiveKitSession]:
    """The token's grant and its open (or joinable) session; TokenRefused otherwise."""
    grant = service.tokens.verify(_bearer(request))
    lk = service.rooms.get(grant.room)
    if lk is None:
        raise TokenRefused(f"no permissions to access the room: room {grant.room!r} does not exist")
    if grant.identity != lk.room.user_identity:
        raise TokenRefused(f"no permissions to access the room: {grant.identity!r} is not its participant")
    return grant, lk


def _join_request(request: web.Request) -> rtc.JoinRequest:
    raw = request.query.get("join_request", "")
    if not raw:
        raise ValueError("missing join_request")
    try:
        wrapped = rtc.WrappedJoinRequest.FromString(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        body = wrapped.join_request
        if wrapped.compression == rtc.WrappedJoinRequest.GZIP:
            body = _gunzip(body, MAX_SIGNAL_MESSAGE)
        return rtc.JoinRequest.FromString(body)
    except (binascii.Error, DecodeError, zlib.error) as exc:
        raise ValueError(f"undecodable join_request: {exc}") from None


def _gunzip(data: bytes, limit: int) -> bytes:
    """``data`` gunzipped; ValueError when it would exceed ``limit`` bytes or is truncated."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
    body = inflater.decompress(data, limit)
    if inflater.unconsumed_tail:
        raise ValueError(f"join_request decompresses to more than {limit} bytes")
    if not inflater.eof:
        raise ValueError("undecodable join_request: truncated gzip data")
    return body


async def validate(request: web.Request) -> web.Response:
    """``GET /rtc/v1/validate`` and ``/rtc/validate``: 200 for a good token, else LiveKit's 401 text."""
    service = request.app[SERVICE_KEY]
    try:
        _grant, lk = _check(service, request)
    except TokenRefused as exc:
        return web.Response(status=401, text=str(exc))
    if lk.ended:
        return web.Response(status=401, text=f"no permissions to access the room: room {lk.room.name!r} is closed")
    return web.Response(text="success")


async def v0(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    refusal, service.fallback_refusal = service.fallback_refusal, None
    if refusal is not None:  # the fallback an injected 404 on /rtc/v1 caused: refused the same way
        return web.Response(status=refusal[0], text=refusal[1])
    return web.Response(status=400, text=V0_REFUSAL)


async def rtc_v1(request: web.Request) -> web.StreamResponse:
    """``GET /rtc/v1``: one participant connection, from the join to the leave."""
    service = request.app[SERVICE_KEY]
    refusal = service.next_refusal()
    if refusal is not None:
        logger.info("LiveKit join refused by injection: %d", refusal[0])
        return web.Response(status=refusal[0], text=refusal[1])
    try:
        _grant, lk = _check(service, request)
        join = _join_request(request)
    except TokenRefused as exc:
        logger.info("LiveKit join refused: %s", exc)
        return web.Response(status=401, text=str(exc))
    except ValueError as exc:
        return web.Response(status=400, text=str(exc))
    if join.reconnect:
        return await _refuse_resume(request, lk)
    if lk.ended:
        return web.Response(status=401, text=f"no permissions to access the room: room {lk.room.name!r} is closed")
    ws = web.WebSocketResponse(max_msg_size=MAX_SIGNAL_MESSAGE, heartbeat=None)
    await ws.prepare(request)
    carrier = LiveKitCarrier(service.core, service.carriers, lk, ws, request.transport)
    service.carriers.add(carrier)
    try:
        await _start(service, lk, carrier, join)
        await _serve(service, lk, carrier, ws)
    finally:
        await _connection_closed(service, lk, carrier)
    return ws


async def _refuse_resume(request: web.Request, lk: LiveKitSession) -> web.StreamResponse:
    """Resuming is not supported (aiortc cannot restart ICE): tell the client to rejoin, or why it ended."""
    ws = web.WebSocketResponse(max_msg_size=MAX_SIGNAL_MESSAGE)
    await ws.prepare(request)
    if lk.ended:
        plan = lk.end_plan
        reason = plan.reason if plan is not None else models.DisconnectReason.STATE_MISMATCH
        message = leave(int(reason))
    else:
        message = leave(models.DisconnectReason.STATE_MISMATCH, rtc.LeaveRequest.RECONNECT)
    logger.info("LiveKit resume of room %s refused (%s)", lk.room.name, message.leave)
    try:  # bounded like every other send: a client that does not read this is dropped
        deadline = request.app[SERVICE_KEY].core.config.send_timeout + CLOSE_HANDSHAKE_TIMEOUT
        await within(_send_and_close(ws, message), deadline)
    except asyncio.TimeoutError:
        logger.warning("room %s: the resume refusal was not read in time; dropping the connection", lk.room.name)
        if request.transport is not None:
            request.transport.abort()
    return ws


async def _send_and_close(ws: web.WebSocketResponse, message: rtc.SignalResponse) -> None:
    await ws.send_bytes(message.SerializeToString())
    await ws.close()


async def _start(service: LiveKitService, lk: LiveKitSession, carrier: LiveKitCarrier, join: rtc.JoinRequest) -> None:
    core = service.core
    session = lk.session
    lk.connections += 1
    previous = lk.carrier
    lk.carrier = carrier
    if session._phase is Phase.PENDING:
        lk.room.character_joined = session._send_bot_ready and core.config.bot_ready_delay <= 0
        core.open_session(session, carrier)
        await session._send(wire.interaction_created(session.character_session_id))
        _schedule_bot_ready(service, lk)
        core.start_scenario(session)
    else:
        session._cancel_timer("departure")
        session._replace_carrier(carrier)
        if previous is not None:
            # LiveKit keeps one connection per identity: the older one learns it was replaced.
            await previous.detach(models.DisconnectReason.DUPLICATE_IDENTITY)
    await carrier.send_signal(lk.room.join_response())
    if join.publisher_offer.sdp:
        await _answer(lk, carrier, join.publisher_offer)


def _schedule_bot_ready(service: LiveKitService, lk: LiveKitSession) -> None:
    session = lk.session
    if not session._send_bot_ready:
        logger.info("session %s will never send bot-ready (connection.timeout injected)", session.session_id)
        return
    delay = service.core.config.bot_ready_delay
    if delay <= 0:
        service.core.spawn(session._send(wire.bot_ready()))
        return
    session._set_timer("bot_ready", service.core.loop.call_later(
        delay, lambda: service.core.spawn(_character_joins(lk))))


async def _character_joins(lk: LiveKitSession) -> None:
    """The character enters after the user: ``ParticipantUpdate``, then ask the client for an audio m-line."""
    carrier = lk.carrier
    if carrier is None or lk.ended:
        return
    lk.room.character_joined = True
    await carrier.send_signal(lk.room.character_update())
    await carrier.send_signal(rtc.SignalResponse(
        media_sections_requirement=rtc.MediaSectionsRequirement(num_audios=1)))
    await lk.session._send(wire.bot_ready())
    carrier.flush()


async def _answer(lk: LiveKitSession, carrier: LiveKitCarrier, offer: rtc.SessionDescription) -> None:
    voice = carrier.voice if lk.room.character_joined else None
    try:
        sdp, mids = await carrier.link.answer(offer.sdp, voice, lk.room.voice_stream_id)
    except (ValueError, RuntimeError, asyncio.InvalidStateError) as exc:
        logger.warning("session %s: cannot answer the client's offer: %s", lk.session.session_id, exc)
        # Unanswered, the offer's new tracks are never heard: say so rather than leave the user talking to nobody.
        await lk.session._send(wire.pipeline_error(f"Cannot answer the client's WebRTC offer: {exc}", False))
        return
    answer = rtc.SessionDescription(type="answer", sdp=sdp, id=offer.id)
    for mid in mids:
        answer.mid_to_track_id[mid] = lk.room.voice_sid
    await carrier.send_signal(rtc.SignalResponse(answer=answer))


async def _serve(service: LiveKitService, lk: LiveKitSession, carrier: LiveKitCarrier,
                 ws: web.WebSocketResponse) -> None:
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            try:
                request = rtc.SignalRequest.FromString(msg.data)
            except DecodeError:
                logger.warning("room %s: undecodable signal request ignored", lk.room.name)
                continue
            if await _handle(lk, carrier, request):
                return
        elif msg.type is WSMsgType.TEXT:
            logger.warning("room %s: text signal frame ignored (LiveKit signals are binary)", lk.room.name)
        elif msg.type is WSMsgType.ERROR:
            logger.info("room %s: signal error %s", lk.room.name, ws.exception())


async def _handle(lk: LiveKitSession, carrier: LiveKitCarrier, request: rtc.SignalRequest) -> bool:
    """Act on one signal request; True when the participant left."""
    which = request.WhichOneof("message")
    if which == "ping_req":
        if not carrier.detached:
            await carrier.send_signal(pong(request.ping_req))
    elif which == "offer":
        await _answer(lk, carrier, request.offer)
    elif which == "add_track":
        if len(lk.room.user_tracks) >= MAX_USER_TRACKS:
            logger.warning("room %s: add_track ignored: the participant already publishes %d tracks", lk.room.name,
                           MAX_USER_TRACKS)
        else:
            await carrier.send_signal(lk.room.add_user_track(request.add_track))
    elif which == "leave":
        carrier.client_left(int(request.leave.reason))
        return True
    elif which in ("trickle", "ping", "sync_state", "subscription", "track_setting", "update_audio_track"):
        pass  # the client's own connectivity checks suffice; the rest needs no answer here
    else:
        logger.debug("room %s: signal request %s not handled", lk.room.name, which)
    return False


async def _connection_closed(service: LiveKitService, lk: LiveKitSession, carrier: LiveKitCarrier) -> None:
    core = service.core
    if lk.carrier is carrier and not carrier.detached:
        lk.carrier = None
        session = lk.session
        if carrier.close_code is not None:
            core.end(session, None, "client left")
        elif session._phase is Phase.OPEN and not (lk.end_plan and lk.end_plan.ending is Ending.DROP_SIGNAL):
            logger.info("session %s: participant vanished; waiting %.0f s for it to rejoin", session.session_id,
                        DEPARTURE_TIMEOUT)
            session._set_timer("departure", core.loop.call_later(DEPARTURE_TIMEOUT, _departed, service, lk))
    await carrier.dispose()


def _departed(service: LiveKitService, lk: LiveKitSession) -> None:
    if lk.carrier is None and not lk.ended:
        service.core.end(lk.session, None, "participant left")


def add_routes(app: web.Application, service: LiveKitService) -> None:
    app[SERVICE_KEY] = service
    app.router.add_get("/rtc/v1", rtc_v1)
    app.router.add_get("/rtc/v1/validate", validate)
    app.router.add_get("/rtc/validate", validate)
    app.router.add_get("/rtc", v0)
