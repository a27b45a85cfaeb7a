"""Scenarios: scripted faults and signals that every session of a simulator runs (parsing and loading).

A scenario is a JSON object ``{"name": ..., "description": ..., "steps": [...]}``. Each step is one
action, optionally with a trigger and ``"once": true``:

* triggers: ``{"at": seconds}`` after the session's WebSocket opens, or ``{"after_messages": n,
  "type": "<client message type>"}`` once the n-th client message of that type (any type when
  ``type`` is left out) has been handled, including the reply turn it started;
* actions: ``{"inject": "<ErrorCode value or DisconnectReason name>", "times": 1, ...details}``
  (connect-API codes answer the next ``times`` connects; the rest act on this session),
  ``{"send": <frame object or raw text>}``, ``{"idle_warning": remaining_seconds}``,
  ``{"usage_limit": quota_type, "message"?: text}``, ``{"participant_joined": {...}}`` /
  ``{"participant_left": {...}}``, ``{"rebind_state": {"outcome": n, ...}}``,
  ``{"close": {"code": 1000, "reason": "Idle timeout"}}`` and ``{"delay": seconds}``.

Steps form chains: a step with a trigger starts a chain; a step without one runs right after the
step before it, so a ``delay`` step postpones the steps that follow it in its chain. The first step
needs a trigger. ``once`` makes a step act only once per simulator (in the first session that
reaches it; later sessions skip it and go on). ``comment`` keys are ignored.

Shipped scenarios live in ``simulator/scenarios/*.json``; :func:`load_scenario` takes their name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator import faults, signals, wire
from simulator.faults import ConnectFault, LiveFault

SHIPPED_DIR = Path(__file__).parent / "scenarios"
ACTIONS = ("inject", "send", "idle_warning", "usage_limit", "participant_joined", "participant_left",
           "rebind_state", "close", "delay")
TRIGGER_KEYS = frozenset({"at", "after_messages", "type"})
CLIENT_TYPES = frozenset(wire.SUPPORTED_TYPES + wire.EXTRA_ACCEPTED_TYPES)
_ALLOWED_EXTRAS: dict[str, frozenset[str]] = {"usage_limit": frozenset({"message"})}


@dataclass(frozen=True)
class Trigger:
    """When a chain starts: ``at`` seconds after open, or after the n-th message of ``msg_type``."""

    at: float | None = None
    after_messages: int | None = None
    msg_type: str | None = None  # None = any client message type


@dataclass(frozen=True)
class Step:
    """One validated step; ``payload`` is what the action needs (frame, fault, seconds...)."""

    index: int
    action: str
    payload: Any
    trigger: Trigger | None = None
    once: bool = False
    times: int = 1


@dataclass(frozen=True)
class Chain:
    """A triggered step and the untriggered steps after it."""

    number: int
    trigger: Trigger
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Scenario:
    """A validated scenario."""

    name: str
    description: str = ""
    steps: tuple[Step, ...] = ()
    chains: tuple[Chain, ...] = field(default=(), compare=False)

    @property
    def counts_messages(self) -> bool:
        return any(chain.trigger.after_messages is not None for chain in self.chains)


def _seconds(where: str, key: str, value: object, *, allow_zero: bool) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(float(value)) or float(value) < 0 or (float(value) == 0 and not allow_zero):  # type: ignore[arg-type]
        raise ValueError(f"{where}: {key!r} must be a number of seconds {'>= 0' if allow_zero else '> 0'}, "
                         f"got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _positive_int(where: str, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: {key!r} must be a positive int, got {value!r}")
    return value


def _trigger(where: str, raw: Mapping[str, Any]) -> Trigger | None:
    present = TRIGGER_KEYS & set(raw)
    if not present:
        return None
    if "at" in raw:
        if present != {"at"}:
            raise ValueError(f"{where}: a step has one trigger: 'at' or 'after_messages' (+ 'type'), not both")
        return Trigger(at=_seconds(where, "at", raw["at"], allow_zero=True))
    if "after_messages" not in raw:
        raise ValueError(f"{where}: 'type' needs 'after_messages'")
    count = _positive_int(where, "after_messages", raw["after_messages"])
    msg_type = raw.get("type")
    if msg_type is not None and msg_type not in CLIENT_TYPES:
        raise ValueError(f"{where}: unknown client message type {msg_type!r}; known: {sorted(CLIENT_TYPES)}")
    return Trigger(after_messages=count, msg_type=msg_type)


def _payload(where: str, action: str, raw: Mapping[str, Any], extras: dict[str, Any]) -> Any:
    value = raw[action]
    if action == "inject":
        if not isinstance(value, str):
            raise ValueError(f"{where}: 'inject' must be an ErrorCode value or DisconnectReason name, got {value!r}")
        fault: ConnectFault | LiveFault = faults.resolve(value, extras)
        return fault
    if action == "send":
        return signals.raw_frame(value)
    if action == "idle_warning":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{where}: 'idle_warning' must be remaining seconds (an int >= 0), got {value!r}")
        return wire.idle_warning(value)
    if action == "usage_limit":
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}: 'usage_limit' must be a quota type string, got {value!r}")
        message = extras.get("message", faults.DEFAULT_USAGE_MESSAGE)
        if not isinstance(message, str):
            raise ValueError(f"{where}: 'message' must be a string")
        return (value, message)
    if action in ("participant_joined", "participant_left"):
        return signals.participant_from(value, joined=action == "participant_joined")
    if action == "rebind_state":
        return signals.rebind_from(value)
    if action == "close":
        if not isinstance(value, Mapping) or set(value) - {"code", "reason"}:
            raise ValueError(f"{where}: 'close' must be an object {{'code': int, 'reason': str}}, got {value!r}")
        code, reason = value.get("code", 1000), value.get("reason", "")
        if isinstance(code, bool) or not isinstance(code, int) or not (code == 1000 or 1008 <= code <= 4999):
            raise ValueError(f"{where}: close code must be 1000 or 1008..4999, got {code!r}")
        if not isinstance(reason, str):
            raise ValueError(f"{where}: close reason must be a string, got {reason!r}")
        return (code, reason)
    return _seconds(where, "delay", value, allow_zero=False)


def _step(index: int, raw: object, name: str) -> Step:
    where = f"scenario {name!r} step {index}"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: a step must be a JSON object, got {raw!r}")
    actions = [key for key in ACTIONS if key in raw]
    if len(actions) != 1:
        found = actions or "none"
        raise ValueError(f"{where}: a step needs exactly one action of {list(ACTIONS)}; found {found}")
    action = actions[0]
    trigger = _trigger(where, raw)
    once = raw.get("once", False)
    if not isinstance(once, bool):
        raise ValueError(f"{where}: 'once' must be true or false, got {once!r}")
    times = _positive_int(where, "times", raw.get("times", 1))
    if "times" in raw and action != "inject":
        raise ValueError(f"{where}: 'times' applies to 'inject' steps only")
    extras = {k: v for k, v in raw.items() if k not in (*TRIGGER_KEYS, action, "once", "times", "comment")}
    if action != "inject":
        unknown = set(extras) - _ALLOWED_EXTRAS.get(action, frozenset())
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} for a {action!r} step")
    try:
        payload = _payload(where, action, raw, extras)
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None
    return Step(index, action, payload, trigger, once, times)


def _chains(steps: Sequence[Step], name: str) -> tuple[Chain, ...]:
    chains: list[Chain] = []
    current: list[Step] = []
    trigger: Trigger | None = None
    for step in steps:
        if step.trigger is not None:
            if trigger is not None:
                chains.append(Chain(len(chains), trigger, tuple(current)))
            trigger, current = step.trigger, []
        elif trigger is None:
            raise ValueError(f"scenario {name!r} step {step.index}: the first step needs a trigger "
                             "('at' or 'after_messages')")
        current.append(step)
    if trigger is not None:
        chains.append(Chain(len(chains), trigger, tuple(current)))
    return tuple(chains)


def parse_scenario(data: object, default_name: str = "inline") -> Scenario:
    """Validate a decoded scenario (an object with ``steps``, or a bare list of steps)."""
    if isinstance(data, list):
        data = {"name": default_name, "steps": data}
    if not isinstance(data, Mapping):
        raise ValueError(f"a scenario must be a JSON object with 'steps' (or a list of steps), got {data!r}")
    unknown = set(data) - {"name", "description", "steps", "comment"}
    if unknown:
        raise ValueError(f"scenario {default_name!r}: unknown top-level keys {sorted(unknown)}")
    name = data.get("name", default_name)
    description = data.get("description", "")
    if not isinstance(name, str) or not name or not isinstance(description, str):
        raise ValueError(f"scenario {default_name!r}: 'name' and 'description' must be strings")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ValueError(f"scenario {name!r}: 'steps' must be a non-empty list")
    steps = tuple(_step(index, raw, name) for index, raw in enumerate(raw_steps))
    return Scenario(name, description, steps, _chains(steps, name))


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``simulator/scenarios/``."""
    return sorted(path.stem for path in SHIPPED_DIR.glob("*.json"))


def _read(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read scenario file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"scenario file {str(path)!r} is not valid JSON: {exc}") from None
    return parse_scenario(data, path.stem)


def load_scenario(source: object) -> Scenario:
    """A :class:`Scenario` from a Scenario, a dict, a list of steps, a JSON string, a file path, or the
    name of a shipped scenario (``"flaky_network"``); ValueError says what is wrong."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, (Mapping, list)):
        return parse_scenario(source)
    if isinstance(source, Path):
        return _read(source)
    if not isinstance(source, str) or not source.strip():
        raise ValueError("a scenario must be a JSON object with 'steps' (or a list of steps), JSON text, a "
                         f"file path or a shipped scenario's name, not {source!r}")
    text = source.strip()
    if text[0] in "{[":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"scenario JSON text is not valid JSON: {exc}") from None
        return parse_scenario(data)
    path = Path(text).expanduser()
    if path.is_file():
        return _read(path)
    shipped = SHIPPED_DIR / f"{text.removesuffix('.json')}.json"
    if "/" not in text and shipped.is_file():
        return _read(shipped)
    raise ValueError(f"no scenario file {text!r} and no shipped scenario of that name; "
                     f"shipped: {shipped_scenarios()}")
