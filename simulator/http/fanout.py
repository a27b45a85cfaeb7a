"""The control API across worker processes: a ``/_sim/*`` request that reaches one worker acts on the whole
simulator (loop thread only; the calls to other workers are aiohttp requests with deadlines).

With a shared plan store (``convai-sim --workers N --state redis://...``) the worker a control request reaches:

- forwards a request naming a session it does not hold to the worker that does (the store knows the owner);
- runs a change to every worker (``POST /_sim/limits``, ``POST /_sim/scenario``, ``POST /_sim/reset``, a live
  fault for every session) here and then on each other live worker, answering with its own answer (a live
  fault's ``affected`` and a reset's ``ended`` summed);
- merges every worker's view (``GET /_sim/sessions``, ``GET /_sim/state``: :func:`merge_states`,
  ``GET /_sim/stats``: :func:`merge_stats`; the dashboard's feed is :func:`whole_state`), adding the connect
  faults queued in the shared store.

Every call to another worker has a deadline (:data:`PEER_TIMEOUT`) and they run at once, so a dead or stalled
worker delays an answer by at most that, and a merged answer names it under ``unreachable``.

Connect faults need no fan-out: they are queued in the shared store and consumed by whichever worker a
``/connect`` reaches. A request a worker sends another carries :data:`LOCAL_HEADER`, so it is never passed on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from simulator.core import snapshot as sim_state
from simulator.core.state import SimCore

logger = logging.getLogger("simulator.fanout")

LOCAL_HEADER = "X-Sim-Worker-Local"
#: Seconds one call to another worker may take.
PEER_TIMEOUT = 5.0
#: Routes that act on the session named by the body's ``session_id``.
SESSION_ROUTES = frozenset({"/_sim/idle-warning", "/_sim/usage-limit", "/_sim/participant", "/_sim/rebind-state",
                            "/_sim/send", "/_sim/inject"})
#: Routes whose POST changes every worker.
BROADCAST_ROUTES = frozenset({"/_sim/limits", "/_sim/scenario", "/_sim/inject", "/_sim/reset"})
#: Routes whose GET answers with every worker's view merged.
GATHERED_ROUTES = frozenset({"/_sim/sessions", "/_sim/state", "/_sim/stats"})

Body = dict[str, Any]
Local = Callable[[], Awaitable[web.Response]]


async def _call(url: str, method: str, path: str, body: Body, token: str) -> tuple[int, Any]:
    headers = {"X-Sim-Control-Token": token, LOCAL_HEADER: "1"}
    timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.request(
            method, f"{url}{path}", json=body if method == "POST" else None, headers=headers) as answer:
        return answer.status, await answer.json()


async def _each_peer(core: SimCore, method: str, path: str, body: Body) -> tuple[list[tuple[str, Any]], list[str]]:
    """Send the request to every other live worker at once: ``([(url, answer JSON)] of those that answered 200,
    [urls of those that did not])``. Each call has :data:`PEER_TIMEOUT` seconds, so a dead or stalled worker
    costs at most that and is named, never waited for."""
    peers = await core.store.peers()
    results = await asyncio.gather(*(_call(peer, method, path, body, core.config.control_token) for peer in peers),
                                   return_exceptions=True)
    answered: list[tuple[str, Any]] = []
    missing: list[str] = []
    for peer, result in zip(peers, results, strict=True):
        if isinstance(result, (aiohttp.ClientError, TimeoutError, ValueError)):
            logger.warning("worker %s did not answer %s %s: %s", peer, method, path, type(result).__name__)
            missing.append(peer)
        elif isinstance(result, BaseException):
            raise result
        elif result[0] != 200:
            logger.warning("worker %s answered %s %s with %d", peer, method, path, result[0])
            missing.append(peer)
        else:
            answered.append((peer, result[1]))
    return answered, missing


def _json(response: web.Response) -> Any:
    return json.loads(response.text or "null")


def own_url(core: SimCore) -> str:
    """The URL naming this worker (its own port's) in merged answers."""
    return f"http://{core.advertise or f'{core.host}:{core.port}'}"


def merge_states(parts: list[tuple[str, dict[str, Any]]], unreachable: list[str]) -> dict[str, Any]:
    """``GET /_sim/state`` of the whole simulator from each worker's (``parts``: ``(url, state)``, this worker's
    first): the union of sessions (each with its ``worker``), slot, interaction and conversation counts summed,
    toxics (each with its ``worker``), queued connect faults and LiveKit refusals of every worker; the rest
    (limits, characters, scenario) is the first's, as every worker applies the same. ``workers`` names each
    worker that answered, ``unreachable`` those that did not."""
    merged = dict(parts[0][1])
    merged["sessions"] = [{**s, "worker": url} for url, state in parts for s in state["sessions"]]
    merged["ended_sessions"] = [{**s, "worker": url} for url, state in parts for s in state["ended_sessions"]]
    merged["toxics"] = [{**t, "worker": url} for url, state in parts for t in state["toxics"]]
    merged["conversations"] = sum(state["conversations"] for _, state in parts)
    merged["slots"] = {**merged["slots"], "in_use": sum(state["slots"]["in_use"] for _, state in parts)}
    keys = []
    for entry in merged["keys"]:
        same = [k for _, state in parts for k in state["keys"] if k["key"] == entry["key"]]
        used = sum(k["interactions"] for k in same)
        quota = entry["usage_quota"]
        keys.append({**entry, "slots_in_use": sum(k["slots_in_use"] for k in same), "interactions": used,
                     "quota_left": None if quota is None else max(0, quota - used)})
    merged["keys"] = keys
    merged["quotas"] = {k["key"]: {"used": k["interactions"], "quota": k["usage_quota"]} for k in keys}
    merged["faults"] = {kind: [fault for _, state in parts for fault in state["faults"][kind]]
                        for kind in ("connect", "livekit_refusals")}
    merged["workers"] = [url for url, _ in parts]
    merged["unreachable"] = unreachable
    return merged


#: ``GET /_sim/stats`` fields that are bounds or settings, the same on every worker (the other numbers are summed).
_NOT_SUMMED = frozenset({"max_recent_sessions", "max_conversations", "send_timeout"})


def _sum_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    total = dict(parts[0])
    for name, value in total.items():
        if isinstance(value, dict):
            total[name] = _sum_stats([part[name] for part in parts])
        elif isinstance(value, int) and not isinstance(value, bool) and name not in _NOT_SUMMED:
            total[name] = sum(part[name] for part in parts)
    return total


def merge_stats(parts: list[tuple[str, dict[str, Any]]], unreachable: list[str]) -> dict[str, Any]:
    """``GET /_sim/stats`` of the whole simulator: every count summed over the workers (bounds and settings are
    the first's), and ``workers``: each worker's own stats by its URL; ``unreachable``: those that did not answer."""
    merged = _sum_stats([stats for _, stats in parts])
    merged["workers"] = dict(parts)
    merged["unreachable"] = unreachable
    return merged


async def _with_shared_faults(core: SimCore, path: str, merged: dict[str, Any]) -> dict[str, Any]:
    """``merged`` with the connect faults queued in the shared store (they belong to no one worker)."""
    queued = await core.shared_connect_faults()
    if path == "/_sim/state":
        merged["faults"]["connect"] += [{"code": fault.code.value, "times": uses} for fault, uses in queued]
    else:
        merged["queued_connect_faults"] += sum(uses for _, uses in queued)
    return merged


async def whole_state(core: SimCore) -> dict[str, Any]:
    """``GET /_sim/state`` of the whole simulator (this worker's alone without a shared store); the dashboard's
    feed."""
    own = sim_state.state(core)
    if not core.store.shared:
        return own
    answered, missing = await _each_peer(core, "GET", "/_sim/state", {})
    return await _with_shared_faults(core, "/_sim/state", merge_states([(own_url(core), own), *answered], missing))


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
    if method == "GET" and path in GATHERED_ROUTES:
        answered, missing = await _each_peer(core, method, path, body)
        parts = [(own_url(core), _json(answer)), *answered]
        if path == "/_sim/sessions":
            return web.json_response({"sessions": [s for _, part in parts for s in part["sessions"]]})
        merge = merge_states if path == "/_sim/state" else merge_stats
        return web.json_response(await _with_shared_faults(core, path, merge(parts, missing)))
    if method != "POST" or path not in BROADCAST_ROUTES:
        return answer
    data = _json(answer)
    if path == "/_sim/inject" and (session_id is not None or data.get("target") != "live"):
        return answer  # one session's fault, or a connect fault (queued in the shared store)
    answered, _missing = await _each_peer(core, method, path, body)
    for _, peer_data in answered:
        if path == "/_sim/inject":
            data["affected"] += int(peer_data.get("affected", 0))
        elif path == "/_sim/reset":
            data["ended"] += int(peer_data.get("ended", 0))
    return web.json_response(data)
