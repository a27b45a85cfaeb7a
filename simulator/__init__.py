"""A local Convai realtime service for offline development and tests.
The public API is thread-safe: each :class:`Simulator` runs its aiohttp loop on its own thread.

::

    from simulator import Simulator
    with Simulator() as sim:                  # binds 127.0.0.1 on a free port; ready on return
        config = sim.client_config()          # a ConvaiConfig pointing at it
        sim.inject("connection.connect_concurrency_limit_reached", times=2)

    Simulator(scenario="flaky_network")       # every session runs a shipped (or your own) scenario
    Simulator(characters_file=shipped_character("shopkeeper"))   # a character with a story, actions, lip-sync

``python -m simulator`` / ``convai-sim`` runs it standalone; ``/_sim/*`` routes (see
:mod:`simulator.http.control`) drive it from other processes with its control token.

The simulator speaks Convai's real wire protocol (the connect API, the ``/chat`` WebSocket's RTVI
messages, LiveKit) with frames it builds itself; it
shares only the ``ErrorCode`` and ``DisconnectReason`` catalogs with ``convai_sync``.
"""

from __future__ import annotations

from convai_sync.disconnect import DisconnectReason
from convai_sync.errors import ErrorCode
from simulator.core.characters import (
    CharacterDefinition,
    CharacterError,
    load_characters_file,
    shipped_character,
    shipped_character_names,
)
from simulator.core.scenario import Scenario, load_scenario, shipped_scenarios
from simulator.core.sessions import SimSession
from simulator.server import Simulator

__all__ = ["CharacterDefinition", "CharacterError", "DisconnectReason", "ErrorCode", "Scenario", "SimSession",
           "Simulator", "load_characters_file", "load_scenario", "shipped_character", "shipped_character_names",
           "shipped_scenarios"]
