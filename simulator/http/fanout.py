"""The control API across worker processes: a ``/_sim/*`` request that reaches one worker acts on the whole
simulator (loop thread only; the calls to other workers are aiohttp requests with deadlines).

With a shared plan store (``convai-sim --workers N --state redis://...``) the worker a control request reaches:

- forwards a request naming a session it does not hold to the worker that does (the store knows the owner);
- runs a change to every worker (``POST /_sim/limits``, ``POST /_sim/scenario``, a live fault for every session)
  here and then on each other live worker, answering with its own answer (a live fault's ``affected`` summed);
- lists the sessions of every worker (``GET /_sim/sessions``).

Connect faults need no fan-out: they are queued in the shared store and consumed by whichever worker a
``/connect`` reaches. A request a worker sends another carries :data:`LOCAL_HEADER`, so it is never passed on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from simulator.core.state import SimCore

logger = logging.getLogger("simulator.fanout")

LOCAL_HEADER = "X-Sim-Worker-Local"
#: Seconds one call to another worker may take.
PEER_TIMEOUT = 5.0
#: Routes that act on the session named by the body's ``session_id``.
SESSION_ROUTES = frozenset({"/_sim/idle-warning", "/_sim/usage-limit", "/_sim/participant", "/_sim/rebind-state",
                            "/_sim/send", "/_sim/inject"})
#: Routes whose POST changes every worker.
BROADCAST_ROUTES = frozenset({"/_sim/limits", "/_sim/scenario", "/_sim/inject"})

Body = dict[str, Any]
Local = Callable[[], Awaitable[web.Response]]


async def _call(url: str, method: str, path: str, body: Body, token: str) -> tuple[int, Any]:
    headers = {"X-Sim-Control-Token": token, LOCAL_HEADER: "1"}
    timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.request(
            method, f"{url}{path}", json=body if method == "POST" else None, headers=headers) as answer:
        return answer.status, await answer.json()


def _json(response: web.Response) -> Any:
    return json.loads(response.text or "null")


async def route(core: SimCore, method: str, path: str, body: Body, local: Local) -> web.Response:
    """Answer a control request for the whole simulator; ``local()`` runs it on this worker."""
    token = core.config.control_token
    session_id = body.get("session_id")
    if path in SESSION_ROUTES and isinstance(session_id, str) and session_id not in core.sessions:
        owner = await core.store.owner(session_id)
        if owner is not None:
            try:
                status, data = await _call(owner, method, path, body, token)
            except (aiohttp.ClientError, TimeoutError) as exc:
                logger.warning("worker %s holding a session did not answer: %s", owner, type(exc).__name__)
                return web.json_response({"detail": "the worker holding this session did not answer"}, status=502)
            return web.json_response(data, status=status)
        return await local()
    answer = await local()
    if answer.status != 200:
        return answer
    if method == "GET" and path == "/_sim/sessions":
        sessions = _json(answer)["sessions"]
        for peer in await core.store.peers():
            try:
                sessions += (await _call(peer, method, path, body, token))[1]["sessions"]
            except (aiohttp.ClientError, TimeoutError) as exc:
                logger.warning("worker %s did not list its sessions: %s", peer, type(exc).__name__)
        return web.json_response({"sessions": sessions})
    if method != "POST" or path not in BROADCAST_ROUTES:
        return answer
    data = _json(answer)
    if path == "/_sim/inject" and (session_id is not None or data.get("target") != "live"):
        return answer  # one session's fault, or a connect fault (queued in the shared store)
    for peer in await core.store.peers():
        try:
            status, peer_data = await _call(peer, method, path, body, token)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("worker %s did not take %s %s: %s", peer, method, path, type(exc).__name__)
            continue
        if status != 200:
            logger.warning("worker %s answered %s %s with %d", peer, method, path, status)
        elif path == "/_sim/inject":
            data["affected"] += int(peer_data.get("affected", 0))
    return web.json_response(data)
