"""Runs a :class:`~simulator.core.scenario.Scenario` on every session (loop thread only).

Timed chains and ``delay`` continuations are ``loop.call_later`` handles stored on the session, so a
session's end cancels them with its other timers and a waiting scenario costs no task.
"""

from __future__ import annotations

import asyncio
import logging

from simulator.core.faults import ConnectFault
from simulator.core.scenario import CLIENT_TYPES, Chain, Scenario, Step
from simulator.core.sessions import Phase, SimSession
from simulator.core.state import SimCore

logger = logging.getLogger("simulator.scenario")

ANY_TYPE = "*"


def set_scenario(core: SimCore, scenario: Scenario | None) -> None:
    """Run ``scenario`` on sessions whose connection opens from now on (None: no scenario)."""
    core.runner = None if scenario is None else ScenarioRunner(core, scenario)


class ScenarioRunner:
    """One scenario's state across sessions: which ``once`` steps have acted."""

    def __init__(self, core: SimCore, scenario: Scenario) -> None:
        self.core = core
        self.scenario = scenario
        self._spent: set[int] = set()
        self._timed = [c for c in scenario.chains if c.trigger.at is not None]
        self._counted = [c for c in scenario.chains if c.trigger.after_messages is not None]

    def session_opened(self, session: SimSession) -> None:
        """Arm this session's timed chains."""
        loop = self.core.loop
        for chain in self._timed:
            delay = chain.trigger.at or 0.0
            session._set_timer(f"scenario-{chain.number}", loop.call_later(delay, self._fire, session, chain, 0))

    def message_handled(self, session: SimSession, msg_type: str) -> None:
        """Count a handled client message; start chains whose ``after_messages`` it reaches."""
        if not self._counted:
            return
        counts = session._msg_counts
        if counts is None:
            counts = session._msg_counts = {}
        if msg_type in CLIENT_TYPES:  # triggers name known types only; a client's made-up types add no key
            counts[msg_type] = counts.get(msg_type, 0) + 1
        counts[ANY_TYPE] = counts.get(ANY_TYPE, 0) + 1
        for chain in self._counted:
            key = chain.trigger.msg_type or ANY_TYPE
            if counts.get(key) == chain.trigger.after_messages:
                self.core.spawn(self._after_turn(session, chain))

    async def _after_turn(self, session: SimSession, chain: Chain) -> None:
        """Let the reply the message started finish, then run the chain."""
        turn = session._turn_task
        if turn is not None and not turn.done() and turn is not asyncio.current_task():
            await asyncio.wait({turn})
        await self._run(session, chain, 0)

    def _fire(self, session: SimSession, chain: Chain, start: int) -> None:
        self.core.spawn(self._run(session, chain, start))

    async def _run(self, session: SimSession, chain: Chain, start: int) -> None:
        for position in range(start, len(chain.steps)):
            if session._phase is not Phase.OPEN:
                return
            step = chain.steps[position]
            if step.once:
                if step.index in self._spent:
                    continue
                self._spent.add(step.index)
            if step.action == "delay":
                handle = self.core.loop.call_later(step.payload, self._fire, session, chain, position + 1)
                session._set_timer(f"scenario-{chain.number}-{position}", handle)
                return
            logger.info("scenario %r step %d (%s) on session %s", self.scenario.name, step.index, step.action,
                        session.session_id)
            await self._act(session, step)

    async def _act(self, session: SimSession, step: Step) -> None:
        core, action, payload = self.core, step.action, step.payload
        if action == "inject":
            if isinstance(payload, ConnectFault):
                core.add_connect_fault(payload, step.times)
            else:
                await core.apply_live(payload, session, step.times)
        elif action == "send":
            await session._send_text(payload)
        elif action == "usage_limit":
            quota_type, message = payload
            await core.usage_limit_flow(session, quota_type, message)
        elif action == "close":
            code, reason = payload
            core.end(session, code, reason)
        else:  # idle_warning, participant_joined/left, rebind_state: a prebuilt frame
            await session._send(payload)
