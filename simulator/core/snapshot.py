"""``POST /_sim/reset`` and ``GET /_sim/state``: the simulator back to its configured start, and a view of it.

Both run on the loop thread and touch only :class:`~simulator.core.SimCore` (and its LiveKit side). The
state never shows an API key or a token: keys appear as ``"key-1"``, ``"key-2"``... in configured order.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from convai_sync.disconnect import reason_from_close_code
from simulator.core import limits
from simulator.core.accounts import Accounts
from simulator.core.ltm import SessionMemory
from simulator.core.restfaults import RestFaults
from simulator.core.runner import set_scenario
from simulator.core.sessions import Phase
from simulator.core.state import SimCore

logger = logging.getLogger("simulator.state")

#: Close code and reason a reset ends live sessions with (RFC 6455 1012: the service is restarting).
RESET_CODE = 1012
RESET_REASON = "Simulator reset"
#: Ended sessions the state lists (the most recent).
ENDED_SHOWN = 20


async def reset(core: SimCore) -> int:
    """End every session (live ones closed with 1012 "Simulator reset"), and put every limit, counter,
    remembered conversation, character definition, queued fault, auth token, memory, LiveKit room and token,
    toxic and the scenario back to what the simulator started with. Returns how many sessions it ended.

    The plan store is reset too (``PlanStore.reset``): with workers sharing one, the shared counters, tokens and
    memories are cleared for every worker; the control API runs this on each worker (``simulator.http.fanout``)."""
    sessions = list(core.sessions.values())
    for session in sessions:
        core.end(session, RESET_CODE if session._phase is Phase.OPEN else None, RESET_REASON)
    core.toxics.clear()
    core.connect_faults.clear()
    config = core.config = core.initial_config
    core.accounts = Accounts(config.api_keys, config.characters, dataclasses.replace(config.limits),
                             clock=core.loop.time, max_conversations=config.max_conversations)
    core.definitions = {definition.id: definition for definition in config.definitions}
    # Auth tokens, memories (in the plan store), Long-Term Memory and queued REST faults start empty again.
    await core.store.reset(core.accounts)
    core.ltm = SessionMemory(core.store)
    core.rest_faults = RestFaults()
    core.recent.clear()
    set_scenario(core, core.initial_scenario)
    if core.livekit is not None:
        core.livekit.reset()
    if core.replay is not None:
        core.replay.restart()
    logger.info("simulator reset: %d sessions ended", len(sessions))
    return len(sessions)


def _reason_name(code: int | None) -> str | None:
    """The ``DisconnectReason`` name a close code ``4000 + reason`` stands for (else None)."""
    reason = reason_from_close_code(code)
    return None if reason is None else reason.name


def state(core: SimCore) -> dict[str, Any]:
    """Keys, sessions, slots, quotas, limits, queued faults, toxics and the scenario, as JSON-able data."""
    accounts = core.accounts
    labels = {key: f"key-{n}" for n, key in enumerate(accounts.api_keys, 1)}
    now = time.monotonic()
    quota = accounts.limits.usage_quota
    keys = [{"key": labels[key], "slots_in_use": accounts.slots_in_use(key),
             "concurrency_limit": accounts.limits.concurrency_limit,
             "interactions": accounts.interactions(key), "usage_quota": quota,
             "quota_left": None if quota is None else max(0, quota - accounts.interactions(key))}
            for key in accounts.api_keys]
    sessions = [{"session_id": s.session_id, "character_session_id": s.character_session_id,
                 "character_id": s.character_id, "end_user_id": s.end_user_id, "key": labels.get(s.api_key),
                 "transport": s.transport, "room_name": s.room_name, "state": s._phase.value,
                 "age": round(now - s.created_at, 3), "received": s.received_count,
                 "turns": s.turn_count}
                for s in core.sessions.values()]
    ended = [{"session_id": s.session_id, "transport": s.transport, "close_code": s.close_code,
              "close_reason": s.close_reason, "disconnect_reason": _reason_name(s.close_code)}
             for s in list(core.recent.values())[-ENDED_SHOWN:]]
    livekit = core.livekit
    return {
        "keys": keys,
        "characters": list(accounts.characters),
        "sessions": sessions,
        "ended_sessions": ended,
        "slots": {"in_use": accounts.slots_in_use(), "concurrency_limit_per_key": accounts.limits.concurrency_limit},
        "quotas": {k["key"]: {"used": k["interactions"], "quota": quota} for k in keys},
        "limits": limits.current(core),
        "conversations": accounts.conversation_count,
        "faults": {"connect": [{"code": entry[0].code.value, "times": entry[1]} for entry in core.connect_faults],
                   "livekit_refusals": [] if livekit is None else livekit.queued_refusals()},
        "toxics": core.toxics.describe(),
        "scenario": None if core.runner is None else core.runner.scenario.name,
        "replay": None if core.replay is None else core.replay.describe(),
    }
