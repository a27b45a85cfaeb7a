"""Network faults ("toxics", after Toxiproxy): their validation and the registry of active ones (loop thread).

A toxic is a fault of the network between a client and the simulator, switched on and off at run time for
every session or one. The registry here is the core's part: it knows which toxics are active and decides,
once per connection and toxic, whether the toxic takes hold (``probability``, drawn from the toxic's own
``random.Random(seed)``, so the same seed and the same order of connections replay the same run). The
carriers (``simulator.carriers.toxiclink``) carry the faults out on their wire, in either direction:

* ``latency`` (``latency``, ``jitter`` s): each message waits ``latency`` ± uniform ``jitter`` seconds;
* ``bandwidth`` (``rate`` bytes/s): each message waits its size / ``rate``;
* ``slicer`` (``size`` bytes, ``delay`` s): a message goes out in ``size``-byte pieces ``delay`` apart;
* ``stall`` (``timeout`` s): nothing is read or written; 0 = until removed (Toxiproxy's ``timeout`` toxic),
  else the connection is dropped after ``timeout``;
* ``reset_peer`` (``timeout`` s): the TCP connection is reset (RST, ``SO_LINGER`` 0) ``timeout`` seconds
  after the toxic takes hold;
* ``abort`` (``timeout`` s): the connection is closed without a close frame;
* ``slow_close`` (``delay`` s): a server-side close waits ``delay`` seconds first;
* ``limit_data`` (``bytes``): the connection is cut once ``bytes`` bytes have passed in the direction;
* LiveKit only: ``leave`` (``action``: ``"resume"``, ``"reconnect"``, ``"disconnect"``): the server sends
  ``leave`` with that action (LiveKit ``livekit_rtc.proto`` ``LeaveRequest.Action``);
  ``drop_signal_on_resume``: a resuming client's signal connection is dropped (LiveKit's
  ``SimulateScenario.disconnect_signal_on_resume``); ``oversized_data`` (``limit`` bytes, default 64 KiB):
  data packets larger than ``limit`` are dropped.

``direction`` is ``"downstream"`` (simulator to client), ``"upstream"`` (client to simulator) or
``"both"``.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

logger = logging.getLogger("simulator.toxics")

DIRECTIONS = ("both", "downstream", "upstream")
LEAVE_ACTIONS = ("resume", "reconnect", "disconnect")
#: LiveKit's limit on one reliable data packet's size.
DATA_PACKET_LIMIT = 64 * 1024
#: kind -> its parameters and their defaults (None: required).
KINDS: dict[str, dict[str, Any]] = {
    "latency": {"latency": None, "jitter": 0.0},
    "bandwidth": {"rate": None},
    "slicer": {"size": 64, "delay": 0.0},
    "stall": {"timeout": 0.0},
    "reset_peer": {"timeout": 0.0},
    "abort": {"timeout": 0.0},
    "slow_close": {"delay": None},
    "limit_data": {"bytes": None},
    "leave": {"action": "reconnect"},
    "drop_signal_on_resume": {},
    "oversized_data": {"limit": DATA_PACKET_LIMIT},
}
LIVEKIT_ONLY = frozenset({"leave", "drop_signal_on_resume", "oversized_data"})
_SECONDS = frozenset({"latency", "jitter", "delay", "timeout"})
_COUNTS = frozenset({"rate", "size", "bytes", "limit"})


def _check_param(kind: str, name: str, value: Any) -> Any:
    if name == "action":
        if value not in LEAVE_ACTIONS:
            raise ValueError(f"toxic {kind!r}: 'action' must be one of {list(LEAVE_ACTIONS)}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"toxic {kind!r}: {name!r} must be a finite number, got {value!r}")
    if name in _COUNTS:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"toxic {kind!r}: {name!r} must be a positive int, got {value!r}")
        return value
    if value < 0:
        raise ValueError(f"toxic {kind!r}: {name!r} must be seconds >= 0, got {value!r}")
    return float(value)


@dataclass
class ActiveToxic:
    """One active network fault as the loop thread holds it (see the module docstring); made by
    :func:`make_toxic`. Users get a :class:`Toxic` handle instead."""

    id: str
    kind: str
    session_id: str | None
    direction: str
    probability: float
    #: The seed its random draws come from (drawn at random when none was given, and shown, so a run
    #: can be repeated with it).
    seed: int
    params: dict[str, Any]
    _rng: random.Random = field(repr=False, compare=False, default_factory=random.Random)
    _rolls: dict[str, bool] = field(repr=False, compare=False, default_factory=dict)

    def acts_on(self, direction: str) -> bool:
        """True when this toxic applies to traffic going ``direction`` (``"upstream"``/``"downstream"``)."""
        return self.direction in ("both", direction)

    def holds(self, link_id: str) -> bool:
        """Whether this toxic takes hold of the connection ``link_id`` (drawn once per connection)."""
        rolled = self._rolls.get(link_id)
        if rolled is None:
            rolled = self._rolls[link_id] = self.probability >= 1.0 or self._rng.random() < self.probability
        return rolled

    def forget(self, link_id: str) -> None:
        """Drop the draw remembered for ``link_id`` (its connection ended)."""
        self._rolls.pop(link_id, None)

    def jitter(self) -> float:
        """A ``latency`` toxic's delay for one message: ``latency`` ± uniform ``jitter``, at least 0."""
        jitter = float(self.params.get("jitter", 0.0))
        offset = self._rng.uniform(-jitter, jitter) if jitter else 0.0
        return max(0.0, float(self.params["latency"]) + offset)

    def describe(self) -> dict[str, Any]:
        """JSON-able: everything needed to add the same toxic again."""
        return {"id": self.id, "kind": self.kind, "session_id": self.session_id, "direction": self.direction,
                "probability": self.probability, "seed": self.seed, **self.params}


def make_toxic(toxic_id: str, kind: str, session_id: str | None = None, *, direction: str = "both",
               probability: float = 1.0, seed: int | None = None, **params: Any) -> ActiveToxic:
    """A validated :class:`ActiveToxic`; ValueError names the bad field."""
    if kind not in KINDS:
        raise ValueError(f"unknown toxic kind {kind!r}; known: {sorted(KINDS)}")
    if session_id is not None and (not isinstance(session_id, str) or not session_id):
        raise ValueError(f"session_id must be a session id string or None, got {session_id!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {list(DIRECTIONS)}, got {direction!r}")
    if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
        raise ValueError(f"probability must be a number in 0..1, got {probability!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    defaults = KINDS[kind]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"toxic {kind!r} has no parameters {unknown}; it takes {sorted(defaults) or 'none'}")
    checked: dict[str, Any] = {}
    for name, default in defaults.items():
        value = params.get(name, default)
        if value is None:
            raise ValueError(f"toxic {kind!r} needs {name!r}")
        checked[name] = _check_param(kind, name, value)
    chosen = secrets.randbits(32) if seed is None else seed
    return ActiveToxic(toxic_id, kind, session_id, direction, float(probability), chosen, checked,
                 _rng=random.Random(chosen))


class ToxicTarget(Protocol):
    """A connection toxics act on (``simulator.carriers.toxiclink.ToxicLink``); loop thread only."""

    session_id: str
    transport: str

    def engage(self, toxic: ActiveToxic) -> None:
        """``toxic`` was added (or the connection opened while it was active)."""

    def disengage(self, toxic: ActiveToxic) -> None:
        """``toxic`` was removed."""

    def held_by(self, toxic: ActiveToxic) -> bool:
        """True while ``toxic`` acts on this connection."""


class ToxicRegistry:
    """The active toxics and the live connections they act on (loop thread only)."""

    def __init__(self) -> None:
        self._toxics: dict[str, ActiveToxic] = {}
        self._targets: set[ToxicTarget] = set()
        self._ids = itertools.count(1)

    def __bool__(self) -> bool:
        return bool(self._toxics)

    def add_from(self, kind: str, session_id: str | None = None, **options: Any) -> ActiveToxic:
        """Validate and add a toxic (see :func:`make_toxic`); it takes hold of matching live connections at
        once and of matching connections that open later."""
        toxic = make_toxic(f"{kind}-{next(self._ids)}", kind, session_id, **options)
        self._toxics[toxic.id] = toxic
        logger.info("toxic added: %s", toxic.describe())
        for target in list(self._targets):
            if self._matches(toxic, target):
                target.engage(toxic)
        return toxic

    def remove(self, toxic_id: str) -> ActiveToxic | None:
        """Remove one toxic (None when unknown); what it held is released."""
        toxic = self._toxics.pop(toxic_id, None)
        if toxic is not None:
            logger.info("toxic removed: %s", toxic_id)
            for target in list(self._targets):
                target.disengage(toxic)
        return toxic

    def clear(self) -> None:
        """Remove every toxic."""
        for toxic_id in list(self._toxics):
            self.remove(toxic_id)

    def active(self) -> list[ActiveToxic]:
        return list(self._toxics.values())

    def holding(self, toxic: ActiveToxic) -> int:
        """How many live connections ``toxic`` acts on now."""
        return sum(1 for target in self._targets if target.held_by(toxic))

    def describe(self) -> list[dict[str, Any]]:
        """Every active toxic as :meth:`ActiveToxic.describe` shows it, with ``holding`` (connections it acts
        on now)."""
        return [{**toxic.describe(), "holding": self.holding(toxic)} for toxic in self._toxics.values()]

    @staticmethod
    def _matches(toxic: ActiveToxic, target: ToxicTarget) -> bool:
        if toxic.session_id is not None and toxic.session_id != target.session_id:
            return False
        return toxic.kind not in LIVEKIT_ONLY or target.transport == "livekit"

    def for_target(self, target: ToxicTarget) -> list[ActiveToxic]:
        """The toxics acting on ``target`` now (matching it and holding its connection)."""
        return [t for t in self._toxics.values() if self._matches(t, target) and t.holds(id_of(target))]

    def for_session(self, session_id: str, kind: str) -> ActiveToxic | None:
        """The first active toxic of ``kind`` matching ``session_id`` that holds it, or None."""
        for toxic in self._toxics.values():
            if toxic.kind == kind and toxic.session_id in (None, session_id) and toxic.holds(session_id):
                return toxic
        return None

    def attach(self, target: ToxicTarget) -> None:
        """A connection opened: the active toxics that match it take hold."""
        self._targets.add(target)
        for toxic in list(self._toxics.values()):
            if self._matches(toxic, target):
                target.engage(toxic)

    def detach(self, target: ToxicTarget) -> None:
        """A connection ended: forget it and each toxic's draw for it (long-lived toxics stay small)."""
        self._targets.discard(target)
        key = id_of(target)
        for toxic in self._toxics.values():
            toxic.forget(key)


def id_of(target: ToxicTarget) -> str:
    """The key a toxic's per-connection draw is remembered under."""
    return f"{target.session_id}#{id(target):x}"


def options_from(body: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """``(kind, session_id, options)`` from a control API body (``POST /_sim/toxics``)."""
    options = dict(body)
    kind = options.pop("kind", None)
    if not isinstance(kind, str):
        raise ValueError(f"'kind' (one of {sorted(KINDS)}) is required")
    session_id = options.pop("session_id", None)
    return kind, session_id, options


class Toxic:
    """A handle on one active toxic, from :meth:`simulator.Simulator.toxic` (any thread).

    A context manager: leaving the ``with`` block removes the toxic. :attr:`seed` is the seed its random
    draws use (drawn at random when none was given): pass it again to repeat a run exactly.
    """

    def __init__(self, description: Mapping[str, Any], remove: Callable[[str], object]) -> None:
        details = dict(description)
        self.id: str = details.pop("id")
        self.kind: str = details.pop("kind")
        self.session_id: str | None = details.pop("session_id")
        self.direction: str = details.pop("direction")
        self.probability: float = details.pop("probability")
        self.seed: int = details.pop("seed")
        #: The kind's parameters (e.g. ``{"latency": 0.2, "jitter": 0.05}``).
        self.params: dict[str, Any] = details
        self._remove = remove

    def __repr__(self) -> str:
        return (f"Toxic(id={self.id!r}, kind={self.kind!r}, session_id={self.session_id!r}, "
                f"direction={self.direction!r}, probability={self.probability}, seed={self.seed}, {self.params})")

    def remove(self) -> None:
        """Switch the toxic off (idempotent); what it held (a stall) is released."""
        self._remove(self.id)

    def __enter__(self) -> Toxic:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()
