"""The ``/_sim/*`` control API: drive a running simulator from another process or language.

Every route needs the header ``X-Sim-Control-Token`` with the simulator's control token (printed by the
CLI, :attr:`simulator.Simulator.control_token` in Python); without it the answer is 401. Bodies and
answers are JSON (a body is at most 1 MiB, else 413); a bad request is 400 ``{"detail": ...}``, an
unknown session 404. ``POST /_sim/scenario`` reads no file except the shipped scenarios and, when one is
configured (``Simulator(scenario_dir=...)``, ``convai-sim --scenario-dir``), files under that directory.

With worker processes sharing a plan store (``convai-sim --workers N --state redis://...``) the worker a request
reaches answers for the whole simulator (``simulator.http.fanout``: forwarded, broadcast or merged).

Handlers run on the loop thread and touch only :class:`~simulator.core.state.SimCore`. The routes, from
:data:`ROUTES` (the one table that registers them, renders this list and ``convai-sim --help``'s)::
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from convai_sync.errors import ErrorCode
from simulator.core import bounds, characters, faults, limits, restfaults, signals, toxics, wire
from simulator.core import snapshot as sim_state
from simulator.core.faults import ConnectFault
from simulator.core.runner import set_scenario
from simulator.core.scenario import ScenarioError, load_allowed_scenario
from simulator.core.sessions import SimSession
from simulator.core.state import SimCore
from simulator.http import fanout
from simulator.http.connect import CORE_KEY, read_limited_body, too_large

logger = logging.getLogger("simulator.control")

TOKEN_HEADER = "X-Sim-Control-Token"
Body = dict[str, Any]
Handler = Callable[[SimCore, Body], Awaitable[web.Response]]


class RequestError(Exception):
    """An invalid control request; answered with ``status`` and ``{"detail": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _answer(status: int, detail: str) -> web.Response:
    return web.json_response({"detail": detail}, status=status)


def token_ok(request: web.Request) -> bool:
    """True when ``request`` carries the control token in its :data:`TOKEN_HEADER` header."""
    # aiohttp hands over undecodable header bytes as surrogates: encode them back, never fail on them.
    given = request.headers.get(TOKEN_HEADER, "").encode("utf-8", "surrogateescape")
    expected = request.app[CORE_KEY].config.control_token.encode("utf-8")
    return bool(given) and hmac.compare_digest(given, expected)


def _guarded(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Check the control token, decode the JSON body, map ValueError/RequestError to 400/404."""

    async def route(request: web.Request) -> web.Response:
        core = request.app[CORE_KEY]
        if not token_ok(request):
            return _answer(401, f"missing or wrong {TOKEN_HEADER} header")
        body: Body = {}
        if request.method == "POST":
            raw = await read_limited_body(request)
            if raw is None:
                return too_large()
            try:
                decoded = bounds.decode_json(raw) if raw.strip() else {}
            except bounds.JsonInputError as exc:
                return _answer(400, f"body is not valid JSON: {exc}")
            if not isinstance(decoded, dict):
                return _answer(400, "body must be a JSON object")
            body = decoded
        async def local() -> web.Response:
            try:
                return await handler(core, body)
            except RequestError as exc:
                return _answer(exc.status, str(exc))
            except ValueError as exc:
                return _answer(400, str(exc))

        if core.store.shared and request.headers.get(fanout.LOCAL_HEADER) != "1":
            return await fanout.route(core, request.method, request.path, body, local)
        return await local()

    return route


def _live(core: SimCore, body: Body) -> SimSession:
    session_id = body.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        raise RequestError(400, "'session_id' (a string) is required")
    session = core.sessions.get(session_id)
    if session is None or not session.is_open:
        raise RequestError(404, f"no live session with id {session_id!r}")
    return session


def _ok(**extra: Any) -> web.Response:
    return web.json_response({"status": "ok", **extra})


def describe(session: SimSession) -> dict[str, Any]:
    """A session as the control API lists it (never its API key)."""
    return {
        "session_id": session.session_id,
        "character_session_id": session.character_session_id,
        "character_id": session.character_id,
        "end_user_id": session.end_user_id,
        "received": session.received_count,
        "open": session.is_open,
        "narrative_section_id": session.narrative_section_id,
    }


async def _sessions(core: SimCore, body: Body) -> web.Response:
    return web.json_response({"sessions": [describe(s) for s in core.sessions.values()]})


async def _stats(core: SimCore, body: Body) -> web.Response:
    return web.json_response(core.stats())


async def _inject(core: SimCore, body: Body) -> web.Response:
    details = dict(body)
    code = details.pop("code", None)
    session_id = details.pop("session_id", None)
    times = details.pop("times", 1)
    if code is None:
        raise RequestError(400, f"'code' is required: {faults.ACCEPTED_FORMS}")
    limits.check_positive_int("times", times, bounds.MAX_INJECT_TIMES)
    fault = faults.resolve(code, details, over_http=True)
    target = faults.coerce(code)
    named = target.value if isinstance(target, ErrorCode) else target.name  # the answer names the code one way
    if isinstance(fault, ConnectFault):
        if core.store.shared:  # every worker's next connects: the queue lives in the shared store
            await core.store.push_connect_fault(json.dumps([code, details]), times)
        else:
            core.add_connect_fault(fault, times)
        return _ok(code=named, target="connect", affected=0)
    if session_id is not None:
        _live(core, {"session_id": session_id})
    affected = await core.inject_live(fault, session_id, times)
    return _ok(code=named, target="live", affected=affected)


async def _rest_fault(core: SimCore, body: Body) -> web.Response:
    try:
        operation, status, times = restfaults.check(body.get("operation"), body.get("status"), body.get("times", 1))
    except ValueError as exc:
        raise RequestError(400, str(exc)) from None
    core.rest_faults.add(operation, status, times)
    return _ok(operation=operation, status=status, times=times)


async def _limits(core: SimCore, body: Body) -> web.Response:
    if body:
        changes = limits.validate(body)
        applied = limits.apply(core, changes)
        logger.info("limits changed over the control API: %s", sorted(changes))
        return web.json_response({"limits": applied})
    return web.json_response({"limits": limits.current(core)})


async def _idle_warning(core: SimCore, body: Body) -> web.Response:
    session = _live(core, body)
    remaining = limits.check_int("remaining_seconds", body.get("remaining_seconds"), 0, int(limits.MAX_SECONDS))
    await session._send(wire.idle_warning(remaining))
    return _ok()


async def _usage_limit(core: SimCore, body: Body) -> web.Response:
    session = _live(core, body)
    quota_type = body.get("quota_type", "interaction")
    message = body.get("message", faults.DEFAULT_USAGE_MESSAGE)
    close = body.get("close", True)
    if not isinstance(quota_type, str) or not isinstance(message, str) or not isinstance(close, bool):
        raise RequestError(400, "'quota_type' and 'message' must be strings, 'close' true or false")
    if close:
        await core.usage_limit_flow(session, quota_type, message)
    else:
        await session._send(wire.usage_limit_reached(quota_type, message))
    return _ok()


async def _participant(core: SimCore, body: Body) -> web.Response:
    session = _live(core, body)
    frame = signals.participant_from({k: v for k, v in body.items() if k != "session_id"})
    await session._send(frame)
    return _ok(participant_id=frame["data"]["participant_id"])


async def _rebind(core: SimCore, body: Body) -> web.Response:
    session = _live(core, body)
    await session._send(signals.rebind_from({k: v for k, v in body.items() if k != "session_id"}))
    return _ok()


async def _send(core: SimCore, body: Body) -> web.Response:
    session = _live(core, body)
    if "frame" not in body:
        raise RequestError(400, "'frame' is required")
    await session._send_text(signals.raw_frame(body["frame"]))
    return _ok()


async def _characters(core: SimCore, body: Body) -> web.Response:
    """Define characters (``{"characters": [...]}``, the characters file's shape, or ``{"shipped": NAME}``),
    all or nothing; answers every definition's summary."""
    if body:
        if set(body) == {"shipped"} and isinstance(body["shipped"], str):
            try:
                path = characters.shipped_character(body["shipped"])
            except KeyError:
                raise RequestError(404, f"no shipped characters file named {body['shipped']!r} "
                                        f"(shipped: {', '.join(characters.shipped_character_names())})") from None
            definitions = characters.load_characters_file(path)
        else:
            definitions = characters.parse_document(body, "request body")
        core.define_characters(definitions)
    return web.json_response({"characters": [core.character(c).summary() for c in core.accounts.characters]})


async def _scenario(core: SimCore, body: Body) -> web.Response:
    if body:
        if set(body) != {"scenario"}:
            raise RequestError(400, "body must be {'scenario': name, object, list or null}")
        source = body["scenario"]
        try:
            scenario = None if source is None else load_allowed_scenario(source, core.config.scenario_dir)
        except ScenarioError as exc:
            raise RequestError(400, str(exc)) from None
        set_scenario(core, scenario)
    runner = core.runner
    return web.json_response({"scenario": None if runner is None else runner.scenario.name})


async def _toxics(core: SimCore, body: Body) -> web.Response:
    if body:
        kind, session_id, options = toxics.options_from(body)
        toxic = core.toxics.add_from(kind, session_id, **options)
        return web.json_response({"toxic": toxic.describe()})
    return web.json_response({"toxics": core.toxics.describe()})


async def _remove_toxics(core: SimCore, body: Body) -> web.Response:
    toxic_id = body.get("id")
    if toxic_id is None:
        removed = [toxic.id for toxic in core.toxics.active()]
        core.toxics.clear()
        return _ok(removed=removed)
    if not isinstance(toxic_id, str) or core.toxics.remove(toxic_id) is None:
        raise RequestError(404, f"no active toxic with id {toxic_id!r}")
    return _ok(removed=[toxic_id])


async def _reset(core: SimCore, body: Body) -> web.Response:
    return _ok(ended=await sim_state.reset(core))


async def _state(core: SimCore, body: Body) -> web.Response:
    return web.json_response(sim_state.state(core))


@dataclass(frozen=True)
class ControlRoute:
    """One ``/_sim/*`` route: its methods, path, handler and one-line description."""

    methods: tuple[str, ...]
    path: str
    handler: Handler
    summary: str


#: Every control route; registration, this module's docstring and the CLI's ``--help`` all read it.
ROUTES: tuple[ControlRoute, ...] = (
    ControlRoute(("GET",), "/_sim/sessions", _sessions,
                 "live and pending sessions (ids, end user, frames received, open); no API keys"),
    ControlRoute(("GET",), "/_sim/stats", _stats,
                 "what the simulator holds (sessions, conversations, slots, tasks, LiveKit) and its bounds"),
    ControlRoute(("POST",), "/_sim/inject", _inject,
                 '{"code", "session_id"?, "times"?, ...details} as Simulator.inject'),
    ControlRoute(("GET", "POST"), "/_sim/limits", _limits, "read / change runtime limits (Simulator.set_limits)"),
    ControlRoute(("POST",), "/_sim/idle-warning", _idle_warning, '{"session_id", "remaining_seconds"}'),
    ControlRoute(("POST",), "/_sim/usage-limit", _usage_limit,
                 '{"session_id", "quota_type"?, "message"?, "close"?}'),
    ControlRoute(("POST",), "/_sim/participant", _participant,
                 '{"session_id", "joined"?, "participant_id"?, "identity"?, ...}'),
    ControlRoute(("POST",), "/_sim/rebind-state", _rebind, '{"session_id", "outcome", ...}'),
    ControlRoute(("POST",), "/_sim/send", _send,
                 '{"session_id", "frame"} (an object is sent as JSON text, a string as is)'),
    ControlRoute(("GET", "POST"), "/_sim/scenario", _scenario,
                 'read / replace the scenario ({"scenario": name, object, list or null})'),
    ControlRoute(("GET", "POST"), "/_sim/characters", _characters,
                 'list / add or replace character definitions ({"characters": [...]} or {"shipped": NAME})'),
    ControlRoute(("POST",), "/_sim/rest-fault", _rest_fault,
                 '{"operation", "status", "times"?} as Simulator.inject_rest_fault (tokens, memory API)'),
    ControlRoute(("GET", "POST"), "/_sim/toxics", _toxics,
                 'list / add a network fault ({"kind", "session_id"?, "direction"?, "probability"?, "seed"?, '
                 '...params} as Simulator.toxic)'),
    ControlRoute(("POST",), "/_sim/toxics/remove", _remove_toxics, '{"id"?} remove one toxic (no id: all)'),
    ControlRoute(("POST",), "/_sim/reset", _reset,
                 "end every session; limits, counters, memory, faults, tokens, toxics back to the start"),
    ControlRoute(("GET",), "/_sim/state", _state,
                 "keys, sessions, slots, quotas, limits, queued faults, toxics, scenario (no API keys)"),
)


def route_table() -> str:
    """:data:`ROUTES` as a plain-text table (one route per line), for docs and ``--help``."""
    cells = [(f"{'|'.join(route.methods)} {route.path}", route.summary) for route in ROUTES]
    width = max(len(left) for left, _ in cells)
    return "\n".join(f"  {left.ljust(width)}  {summary}" for left, summary in cells)


def add_control_routes(app: web.Application) -> None:
    """Register every ``/_sim/*`` route of :data:`ROUTES` on ``app``."""
    for route in ROUTES:
        for method in route.methods:
            app.router.add_route(method, route.path, _guarded(route.handler))


__doc__ = f"{__doc__ or ''}\n{route_table()}\n"
