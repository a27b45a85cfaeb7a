"""The simulator as a test instrument, in Python: network faults, reset and state (any thread).

:class:`InstrumentOperations` is inherited by :class:`simulator.Simulator`; like
``simulator.operations.SimulatorOperations`` it hands each call to the loop thread through ``_call``.
The control API offers the same as ``/_sim/toxics``, ``/_sim/reset`` and ``/_sim/state``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from simulator.core import snapshot as sim_state
from simulator.core.state import SimCore
from simulator.core.toxics import Toxic
from simulator.operations import CALL_TIMEOUT

T = TypeVar("T")


class InstrumentOperations:
    """Toxics, reset and state of a running simulator (see the module docstring)."""

    def _call(self, factory: Callable[[SimCore], Coroutine[Any, Any, T]], timeout: float = CALL_TIMEOUT) -> T:
        raise NotImplementedError

    def toxic(self, kind: str, session_id: str | None = None, *, direction: str = "both",
              probability: float = 1.0, seed: int | None = None, **params: Any) -> Toxic:
        """Switch a network fault on, for every session or for ``session_id``; returns its handle (a context
        manager whose exit, like :meth:`Toxic.remove`, switches it off).

        Args:
            kind: ``"latency"`` (``latency``, ``jitter`` s), ``"bandwidth"`` (``rate`` bytes/s), ``"slicer"``
                (``size`` bytes, ``delay`` s), ``"stall"`` (``timeout`` s, 0 = until removed), ``"reset_peer"``
                (TCP RST after ``timeout`` s), ``"abort"`` (no close frame, after ``timeout`` s),
                ``"slow_close"`` (``delay`` s), ``"limit_data"`` (``bytes``); LiveKit only: ``"leave"``
                (``action``: ``"resume"``, ``"reconnect"``, ``"disconnect"``), ``"drop_signal_on_resume"``,
                ``"oversized_data"`` (``limit`` bytes, default 65536). See ``simulator.core.toxics``.
            session_id: one session's id, or None for every session (live and later).
            direction: ``"both"``, ``"downstream"`` (to the client) or ``"upstream"`` (from it).
            probability: chance (0..1) the toxic takes hold of each connection.
            seed: seeds the toxic's random draws (probability, jitter); None draws one (see
                :attr:`Toxic.seed`).

        Raises:
            ValueError: an unknown kind or parameter, or a bad value (the message names it).
        """
        async def add(core: SimCore) -> dict[str, Any]:
            return core.toxics.add_from(kind, session_id, direction=direction, probability=probability,
                                        seed=seed, **params).describe()

        return Toxic(self._call(add), self.remove_toxic)

    def remove_toxic(self, toxic_id: str) -> bool:
        """Switch off the toxic ``toxic_id`` (:attr:`Toxic.id`); False when it was not active."""
        async def remove(core: SimCore) -> bool:
            return core.toxics.remove(toxic_id) is not None

        return self._call(remove)

    def toxics(self) -> list[dict[str, Any]]:
        """The active toxics, as the control API lists them (``id``, ``kind``, ``seed``, parameters...)."""
        async def read(core: SimCore) -> list[dict[str, Any]]:
            return core.toxics.describe()

        return self._call(read)

    def state(self) -> dict[str, Any]:
        """A JSON-able view: keys (as ``"key-1"``..., never the key), sessions (state, transport, age in
        seconds, slot's key), slots, quotas, limits, queued faults, toxics and the scenario."""
        async def read(core: SimCore) -> dict[str, Any]:
            return sim_state.state(core)

        return self._call(read)

    def reset(self) -> int:
        """End every session (live ones closed 1012 "Simulator reset") and put limits, counters,
        conversations, queued faults, auth tokens, memories, LiveKit tokens, toxics and the scenario back to the
        configured start. Returns how many sessions it ended. With a shared ``state`` store this ends this
        process's sessions only but clears the shared counters, tokens and memories of every process
        (``POST /_sim/reset`` ends every worker's)."""
        async def act(core: SimCore) -> int:
            return await sim_state.reset(core)

        return self._call(act)
