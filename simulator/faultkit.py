"""The reconnect test kit: the network faults an application should survive, and how to apply one (any thread).

:data:`NETWORK_FAULTS` is the matrix ``convai_sync``'s own tests run on both transports; parametrize an
application's test with it (ids from :attr:`NetworkFault.name`) and apply each with
:func:`network_fault`::

    @pytest.mark.parametrize("fault", NETWORK_FAULTS, ids=str)
    def test_my_game_survives(convai_simulator, fault):
        with ConvaiClient(convai_simulator.client_config(keepalive_interval=0.5, keepalive_timeout=0.5)) as c:
            c.connect(timeout=10)
            with network_fault(convai_simulator, fault, c.session_id):
                ...   # play on: a fault that drops the connection brings Reconnecting, then Reconnected
            assert c.ask("still there?", timeout=10).text

Every fault takes hold with probability 1 from a fixed seed, so a run repeats exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.core.toxics import Toxic

if TYPE_CHECKING:
    from simulator.server import Simulator

TRANSPORTS = ("websocket", "livekit")


@dataclass(frozen=True)
class NetworkFault:
    """One row of the matrix: a toxic and what a client sees under it.

    Attributes:
        name: the test id, e.g. ``"reset_peer"``.
        kind: the toxic's kind (``simulator.core.toxics``); ``params`` its parameters; ``direction`` as there.
        drops: True when the fault ends the connection (the client must reconnect); False when the
            connection lives and only slows (the client must go on within its deadlines).
        transports: where the fault applies (LiveKit's own faults only on ``"livekit"``).
    """

    name: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    direction: str = "both"
    drops: bool = False
    transports: tuple[str, ...] = TRANSPORTS

    def __str__(self) -> str:
        return self.name


#: Every network fault, each once; the ones that drop a connection first.
NETWORK_FAULTS: tuple[NetworkFault, ...] = (
    NetworkFault("reset_peer", "reset_peer", drops=True),
    NetworkFault("abort", "abort", drops=True),
    NetworkFault("stall_then_drop", "stall", {"timeout": 0.3}, drops=True),
    NetworkFault("limit_data", "limit_data", {"bytes": 64}, direction="downstream", drops=True),
    NetworkFault("latency", "latency", {"latency": 0.05, "jitter": 0.02}),
    NetworkFault("bandwidth", "bandwidth", {"rate": 20_000}),
    NetworkFault("slicer", "slicer", {"size": 7, "delay": 0.001}),
    NetworkFault("slow_close", "slow_close", {"delay": 0.3}),
    NetworkFault("leave_reconnect", "leave", {"action": "reconnect"}, drops=True, transports=("livekit",)),
    NetworkFault("leave_resume", "leave", {"action": "resume"}, drops=True, transports=("livekit",)),
    NetworkFault("oversized_data", "oversized_data", transports=("livekit",)),
)


def faults_for(transport: str) -> list[NetworkFault]:
    """The rows of :data:`NETWORK_FAULTS` that apply to ``transport`` (``"websocket"`` or ``"livekit"``)."""
    return [fault for fault in NETWORK_FAULTS if transport in fault.transports]


@contextmanager
def network_fault(sim: Simulator, fault: NetworkFault, session_id: str | None = None, *,
                  seed: int = 0) -> Iterator[Toxic]:
    """Switch ``fault`` on for ``session_id`` (None: every session) for the ``with`` block; yields its
    :class:`~simulator.core.toxics.Toxic`. A fault that drops the connection acts at once; leave the block
    once the client has seen the drop (e.g. after ``client.wait_for(Reconnecting)``), or its reconnect
    meets the same fault."""
    with sim.toxic(fault.kind, session_id, direction=fault.direction, seed=seed, **fault.params) as toxic:
        yield toxic
