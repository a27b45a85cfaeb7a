"""Scenarios: scripted faults and signals that every session of a simulator runs (parsing and loading).
Parsing and loading are pure and run on any thread (the caller's, before the loop gets the scenario).

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

Errors are :class:`ScenarioError` (a ValueError) naming the step and field. A scenario read from a
file never has its content quoted in an error (only where it is wrong), so an error cannot leak what a
file says. The control API loads through :func:`load_allowed_scenario`: shipped names, inline JSON, and
files under an explicitly allowed directory only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from simulator.core import bounds, faults, signals, wire
from simulator.core.faults import ConnectFault, LiveFault

SHIPPED_DIR = Path(__file__).parent.parent / "scenarios"
ACTIONS = ("inject", "send", "idle_warning", "usage_limit", "participant_joined", "participant_left",
           "rebind_state", "close", "delay")
TRIGGER_KEYS = frozenset({"at", "after_messages", "type"})
CLIENT_TYPES = frozenset(wire.SUPPORTED_TYPES + wire.EXTRA_ACCEPTED_TYPES)
_ALLOWED_EXTRAS: dict[str, frozenset[str]] = {"usage_limit": frozenset({"message"})}
_SHIPPED_NAME = re.compile(r"[A-Za-z0-9_-]+")


class ScenarioError(ValueError):
    """A scenario the simulator refuses. ``str()`` may quote the scenario's values (for scenarios a
    caller passed inline); :attr:`redacted` says the same (which step, which field, what is expected)
    without any of them."""

    def __init__(self, message: str, redacted: str | None = None) -> None:
        super().__init__(message)
        self.redacted = message if redacted is None else redacted

    def located(self, full: str, safe: str) -> ScenarioError:
        """This error prefixed with a location (``full`` may name the scenario, ``safe`` must not)."""
        return ScenarioError(f"{full}: {self}", f"{safe}: {self.redacted}")


def _kind(value: object) -> str:
    """A JSON value's kind, for redacted messages (``"a string"``, ``"an object"`` ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _bad(field_name: str, expected: str, value: object) -> ScenarioError:
    return ScenarioError(f"{field_name!r} must be {expected}, got {value!r}",
                         f"{field_name!r} must be {expected}, got {_kind(value)}")


def _finite(value: object) -> float | None:
    """``value`` as a finite float, or None (bools, non-numbers, inf, nan and ints too big for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


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


def _seconds(key: str, value: object, *, allow_zero: bool) -> float:
    number = _finite(value)
    if number is None or number < 0 or (number == 0 and not allow_zero) or number > bounds.MAX_SECONDS:
        raise _bad(key, f"a number of seconds {'>= 0' if allow_zero else '> 0'} (at most {bounds.MAX_SECONDS:g})",
                   value)
    return number


def _positive_int(key: str, value: object, high: int = bounds.MAX_COUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise _bad(key, f"a positive int up to {high}", value)
    return value


def _trigger(raw: Mapping[str, Any]) -> Trigger | None:
    present = TRIGGER_KEYS & set(raw)
    if not present:
        return None
    if "at" in raw:
        if present != {"at"}:
            raise ScenarioError("a step has one trigger: 'at' or 'after_messages' (+ 'type'), not both")
        return Trigger(at=_seconds("at", raw["at"], allow_zero=True))
    if "after_messages" not in raw:
        raise ScenarioError("'type' needs 'after_messages'")
    count = _positive_int("after_messages", raw["after_messages"])
    msg_type = raw.get("type")
    if msg_type is not None and msg_type not in CLIENT_TYPES:
        raise ScenarioError(f"unknown client message type {msg_type!r}; known: {sorted(CLIENT_TYPES)}",
                            f"'type' is not a known client message type; known: {sorted(CLIENT_TYPES)}")
    return Trigger(after_messages=count, msg_type=msg_type)


def _payload(action: str, raw: Mapping[str, Any], extras: dict[str, Any]) -> Any:
    value = raw[action]
    if action == "inject":
        if not isinstance(value, str):
            raise _bad("inject", "an ErrorCode value or DisconnectReason name", value)
        try:
            fault: ConnectFault | LiveFault = faults.resolve(value, extras)
        except ValueError as exc:
            raise ScenarioError(str(exc), "'inject' names no injectable ErrorCode value or DisconnectReason "
                                          "name, or its details do not fit it") from None
        return fault
    if action == "send":
        if not isinstance(value, (str, dict, list)):
            raise _bad("send", "a frame object or raw text", value)
        return signals.raw_frame(value)
    if action == "idle_warning":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= bounds.MAX_SECONDS:
            raise _bad("idle_warning", f"remaining seconds (an int in 0..{bounds.MAX_SECONDS:g})", value)
        return wire.idle_warning(value)
    if action == "usage_limit":
        if not isinstance(value, str) or not value:
            raise _bad("usage_limit", "a quota type string", value)
        message = extras.get("message", faults.DEFAULT_USAGE_MESSAGE)
        if not isinstance(message, str):
            raise ScenarioError("'message' must be a string")
        return (value, message)
    if action in ("participant_joined", "participant_left", "rebind_state"):
        try:
            if action == "rebind_state":
                return signals.rebind_from(value)
            return signals.participant_from(value, joined=action == "participant_joined")
        except ValueError as exc:
            raise ScenarioError(str(exc), f"{action!r} has a missing, unknown or invalid field") from None
    if action == "close":
        if not isinstance(value, Mapping) or set(value) - {"code", "reason"}:
            raise _bad("close", "an object {'code': int, 'reason': str}", value)
        code, reason = value.get("code", 1000), value.get("reason", "")
        if isinstance(code, bool) or not isinstance(code, int) or not (code == 1000 or 1008 <= code <= 4999):
            raise ScenarioError(f"close code must be 1000 or 1008..4999, got {code!r}",
                                f"close code must be 1000 or 1008..4999, got {_kind(code)}")
        if not isinstance(reason, str):
            raise ScenarioError(f"close reason must be a string, got {reason!r}",
                                f"close reason must be a string, got {_kind(reason)}")
        return (code, reason)
    return _seconds("delay", value, allow_zero=False)


def _step(index: int, raw: object, name: str) -> Step:
    try:
        return _checked_step(index, raw)
    except ScenarioError as exc:
        raise exc.located(f"scenario {name!r} step {index}", f"step {index}") from None


def _checked_step(index: int, raw: object) -> Step:
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"a step must be a JSON object, got {raw!r}", f"a step must be a JSON object, got "
                                                                           f"{_kind(raw)}")
    actions = [key for key in ACTIONS if key in raw]
    if len(actions) != 1:
        found = actions or "none"
        raise ScenarioError(f"a step needs exactly one action of {list(ACTIONS)}; found {found}")
    action = actions[0]
    trigger = _trigger(raw)
    once = raw.get("once", False)
    if not isinstance(once, bool):
        raise _bad("once", "true or false", once)
    times = _positive_int("times", raw.get("times", 1), bounds.MAX_INJECT_TIMES)
    if "times" in raw and action != "inject":
        raise ScenarioError("'times' applies to 'inject' steps only")
    extras = {k: v for k, v in raw.items() if k not in (*TRIGGER_KEYS, action, "once", "times", "comment")}
    if action != "inject":
        unknown = set(extras) - _ALLOWED_EXTRAS.get(action, frozenset())
        if unknown:
            raise ScenarioError(f"unknown keys {sorted(unknown)} for a {action!r} step",
                                f"{len(unknown)} unknown key(s) for a {action!r} step")
    return Step(index, action, _payload(action, raw, extras), trigger, once, times)


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
            problem = "the first step needs a trigger ('at' or 'after_messages')"
            raise ScenarioError(f"scenario {name!r} step {step.index}: {problem}", f"step {step.index}: {problem}")
        current.append(step)
    if trigger is not None:
        chains.append(Chain(len(chains), trigger, tuple(current)))
    return tuple(chains)


def parse_scenario(data: object, default_name: str = "inline") -> Scenario:
    """Validate a decoded scenario (an object with ``steps``, or a bare list of steps).

    Raises:
        ScenarioError: naming the step and field that is wrong.
    """
    if isinstance(data, list):
        data = {"name": default_name, "steps": data}
    if not isinstance(data, Mapping):
        raise ScenarioError(
            f"a scenario must be a JSON object with 'steps' (or a list of steps), got {data!r}",
            f"a scenario must be a JSON object with 'steps' (or a list of steps), got {_kind(data)}")
    unknown = set(data) - {"name", "description", "steps", "comment"}
    if unknown:
        raise ScenarioError(f"scenario {default_name!r}: unknown top-level keys {sorted(unknown)}",
                            f"{len(unknown)} unknown top-level key(s); allowed: name, description, steps, "
                            "comment")
    name = data.get("name", default_name)
    description = data.get("description", "")
    if not isinstance(name, str) or not name or not isinstance(description, str):
        raise ScenarioError(f"scenario {default_name!r}: 'name' and 'description' must be strings",
                            "'name' and 'description' must be strings")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError(f"scenario {name!r}: 'steps' must be a non-empty list",
                            "'steps' must be a non-empty list")
    steps = tuple(_step(index, raw, name) for index, raw in enumerate(raw_steps))
    return Scenario(name, description, steps, _chains(steps, name))


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``simulator/scenarios/``."""
    return sorted(path.stem for path in SHIPPED_DIR.glob("*.json"))


def _read(path: Path) -> Scenario:
    """A scenario file (a regular file of at most :data:`~simulator.core.bounds.MAX_SCENARIO_FILE_BYTES`).
    Errors name the path and the step or field, never the file's content."""
    where = f"scenario file {str(path)!r}"
    if not path.is_file():  # also keeps FIFOs and devices, which could block or never end, unopened
        raise ScenarioError(f"cannot read {where}: not a regular file")
    limit = bounds.MAX_SCENARIO_FILE_BYTES
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise ScenarioError(f"cannot read {where}: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > limit:
        raise ScenarioError(f"{where} is larger than {limit} bytes")
    try:
        data = bounds.decode_json(raw)
    except bounds.JsonInputError as exc:
        raise ScenarioError(f"{where} is not valid JSON: {exc}") from None
    try:
        return parse_scenario(data, path.stem)
    except ScenarioError as exc:
        message = f"{where}: {exc.redacted}"
        raise ScenarioError(message) from None


def _parse_text(text: str) -> Scenario:
    try:
        data = bounds.decode_json(text)
    except bounds.JsonInputError as exc:
        raise ScenarioError(f"scenario JSON text is not valid JSON: {exc}") from None
    return parse_scenario(data)


def _shipped(name: str) -> Path | None:
    stem = name.removesuffix(".json")
    if _SHIPPED_NAME.fullmatch(stem) and stem in shipped_scenarios():
        return SHIPPED_DIR / f"{stem}.json"
    return None


def load_scenario(source: object) -> Scenario:
    """A :class:`Scenario` from a Scenario, a dict, a list of steps, a JSON string, a file path, or the
    name of a shipped scenario (``"flaky_network"``). For the Python API and the CLI: any path the
    local user gives is read (the control API uses :func:`load_allowed_scenario` instead).

    Raises:
        ScenarioError: what is wrong (for a file: where, never what the file says).
    """
    if isinstance(source, Scenario):
        return source
    if isinstance(source, (Mapping, list)):
        return parse_scenario(source)
    if isinstance(source, Path):
        return _read(source)
    if not isinstance(source, str) or not source.strip():
        raise ScenarioError("a scenario must be a JSON object with 'steps' (or a list of steps), JSON text, "
                            f"a file path or a shipped scenario's name, not {source!r}")
    text = source.strip()
    if text[0] in "{[":
        return _parse_text(text)
    path = Path(text).expanduser()
    if path.is_file():
        return _read(path)
    shipped = _shipped(text)
    if shipped is not None:
        return _read(shipped)
    raise ScenarioError(f"no scenario file {text!r} and no shipped scenario of that name; "
                        f"shipped: {shipped_scenarios()}")


def _under(directory: Path, name: str) -> Path | None:
    """The regular file ``name`` (or ``name.json``) names inside ``directory``, or None; ScenarioError
    for a name that is absolute, climbs with ``..``, or resolves (through a link) outside it."""
    relative = PurePath(name)
    if relative.anchor or ".." in relative.parts or name.startswith("~"):
        raise ScenarioError("a scenario file must be named relative to the scenario directory, without '..'")
    root = directory.resolve()
    candidates = [root / relative]
    if relative.suffix != ".json":
        candidates.append(root / f"{relative}.json")
    for candidate in candidates:
        resolved = candidate.resolve()
        if not resolved.is_relative_to(root):
            raise ScenarioError(f"scenario file {name!r} resolves outside the scenario directory")
        if resolved.is_file():
            return resolved
    return None


def load_allowed_scenario(source: object, scenario_dir: Path | None) -> Scenario:
    """A scenario for the control API: inline (a dict, a list of steps, or JSON text), a file under
    ``scenario_dir`` named relative to it (``"mine"`` or ``"sub/mine.json"``; it wins over a shipped
    scenario of the same name), or a shipped scenario's name. Nothing else is ever read: with
    ``scenario_dir`` None no file but the shipped ones is.

    Raises:
        ScenarioError: what is wrong; for a file, where, never what it says.
    """
    if isinstance(source, (Mapping, list)):
        return parse_scenario(source)
    if not isinstance(source, str) or not source.strip():
        raise ScenarioError("'scenario' must be a shipped scenario's name, a scenario object, a list of steps, "
                            "JSON text or null")
    text = source.strip()
    if text[0] in "{[":
        return _parse_text(text)
    if scenario_dir is not None:
        path = _under(scenario_dir, text)
        if path is not None:
            return _read(path)
    shipped = _shipped(text)
    if shipped is not None:
        return _read(shipped)
    where = ("no file of that name in the scenario directory" if scenario_dir is not None else
             "no scenario directory is configured (Simulator(scenario_dir=...), convai-sim --scenario-dir), so "
             "the control API reads no scenario files")
    raise ScenarioError(f"no shipped scenario named {text!r} and {where}; shipped: {shipped_scenarios()}")
