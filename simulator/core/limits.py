"""The simulator's runtime-adjustable limits: validation, reading and applying them.

One table serves the constructor, :meth:`simulator.Simulator.set_limits` and ``POST /_sim/limits``, so
each rejects a bad value with the same ``ValueError``. ``None`` means unlimited / off where allowed.
:func:`current` and :func:`apply` run on the loop thread.

Every number has a documented range, so no accepted value can overflow later (a ``token_ttl`` of
``1e12`` s made every LiveKit token's ``timedelta`` overflow, a 500 on each ``/connect``): counts at
most :data:`MAX_COUNT`, quotas at most :data:`MAX_QUOTA`, durations at most :data:`MAX_SECONDS` (a
day), delays at most :data:`MAX_DELAY`. A value outside its range is refused with a ``ValueError``
naming the setting (400 on the control API, an argparse error on the CLI).

``idle_warning_lead`` only means something with ``idle_timeout``: a lead without a timeout, or longer
than it, is refused (:func:`check_idle`), checked on the values a change would leave. Switching idling
off at runtime (``idle_timeout=None`` alone) switches its warning off too (:func:`with_idle_rules`).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.core.bounds import MAX_COUNT as MAX_COUNT  # the ranges live in bounds; re-exported here
from simulator.core.bounds import MAX_DELAY as MAX_DELAY
from simulator.core.bounds import MAX_QUOTA as MAX_QUOTA
from simulator.core.bounds import MAX_SECONDS as MAX_SECONDS
from simulator.core.sessions import Phase

if TYPE_CHECKING:
    from simulator.core.state import SimCore




class Kind(enum.Enum):
    COUNT = f"a positive int up to {MAX_COUNT}, or null"  # None = unlimited
    QUOTA = f"an int in 0..{MAX_QUOTA}, or null"
    SECONDS = f"seconds in (0, {MAX_SECONDS:g}], or null"  # None = off
    DELAY = f"seconds in [0, {MAX_DELAY:g}]"
    FLAG = "true or false"


#: Each kind's range, as ``--help`` and the README state it.
RANGES: dict[Kind, str] = {
    Kind.COUNT: f"1..{MAX_COUNT}",
    Kind.QUOTA: f"0..{MAX_QUOTA}",
    Kind.SECONDS: f"(0, {MAX_SECONDS:g}] s",
    Kind.DELAY: f"[0, {MAX_DELAY:g}] s",
    Kind.FLAG: "true or false",
}

#: name -> kind. Counts and the flag live on ``Accounts.limits``; the rest on ``SimConfig``.
LIMITS: dict[str, Kind] = {
    "concurrency_limit": Kind.COUNT,
    "speaker_limit": Kind.COUNT,
    "connect_rate_limit": Kind.COUNT,
    "usage_quota": Kind.QUOTA,
    "idle_timeout": Kind.SECONDS,
    "idle_warning_lead": Kind.SECONDS,
    "token_ttl": Kind.SECONDS,
    "realtime_allowed": Kind.FLAG,
    "bot_ready_delay": Kind.DELAY,
    "chunk_delay": Kind.DELAY,
}
_ACCOUNT_FIELDS = ("concurrency_limit", "speaker_limit", "connect_rate_limit", "usage_quota", "realtime_allowed")


def _finite_seconds(value: object) -> float | None:
    """``value`` as finite float seconds, or None (not a number, a bool, inf, nan, or too big)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond float range (JSON allows any number of digits)
        return None
    return seconds if math.isfinite(seconds) else None


def check_value(name: str, kind: Kind, value: object) -> Any:
    """``value`` if it suits ``kind``, else ValueError naming the limit."""
    ok: bool
    seconds = _finite_seconds(value)
    if kind is Kind.FLAG:
        ok = isinstance(value, bool)
    elif value is None:
        ok = kind is not Kind.DELAY
    elif kind in (Kind.COUNT, Kind.QUOTA):
        low, high = (1, MAX_COUNT) if kind is Kind.COUNT else (0, MAX_QUOTA)
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    elif kind is Kind.SECONDS:
        ok = seconds is not None and 0 < seconds <= MAX_SECONDS
    else:
        ok = seconds is not None and 0 <= seconds <= MAX_DELAY
    if not ok:
        raise ValueError(f"{name} must be {kind.value}, got {value!r}")
    if kind in (Kind.SECONDS, Kind.DELAY) and value is not None:
        return seconds
    return value


def check_int(name: str, value: object, low: int, high: int) -> int:
    """An int in ``low..high`` (not a bool), else ValueError naming the setting and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in {low}..{high}, got {value!r}")
    return value


def check_positive_int(name: str, value: object, high: int = MAX_COUNT) -> int:
    """An int in ``1..high`` (not a bool), else ValueError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValueError(f"{name} must be a positive int up to {high}, got {value!r}")
    return value


def check_port(port: object) -> int:
    """A TCP port number (0: any free port), else ValueError."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in 0..65535 (0: any free port), got {port!r}")
    return port


def check_directory(name: str, value: str | Path) -> Path:
    """An existing directory, resolved (``~`` expanded), else ValueError naming the setting."""
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is not a directory")
    return path.resolve()


def check_idle(idle_timeout: float | None, idle_warning_lead: float | None) -> None:
    """ValueError unless ``idle_warning_lead`` is None or at most ``idle_timeout`` (which must be set)."""
    if idle_warning_lead is None:
        return
    if idle_timeout is None:
        raise ValueError("idle_warning_lead needs idle_timeout (the warning comes that long before the idle "
                         "timeout closes the session); set idle_timeout too, or leave idle_warning_lead unset")
    if idle_warning_lead > idle_timeout:
        raise ValueError(f"idle_warning_lead ({idle_warning_lead:g} s) must not be longer than idle_timeout "
                         f"({idle_timeout:g} s)")


def check_seconds(name: str, value: object) -> float:
    """Seconds in (0, :data:`MAX_SECONDS`] (for settings that are not runtime limits)."""
    result = check_value(name, Kind.SECONDS, value)
    if result is None:
        raise ValueError(f"{name} must be seconds in (0, {MAX_SECONDS:g}], got None")
    return float(result)


def validate(changes: Mapping[str, object]) -> dict[str, Any]:
    """Check every entry of ``changes``; unknown names and bad values raise ValueError."""
    unknown = sorted(set(changes) - set(LIMITS))
    if unknown:
        raise ValueError(f"unknown limits {unknown}; known: {sorted(LIMITS)}")
    return {name: check_value(name, LIMITS[name], value) for name, value in changes.items()}


def with_idle_rules(changes: Mapping[str, Any], idle_timeout: float | None,
                    idle_warning_lead: float | None) -> dict[str, Any]:
    """``changes`` to the current idle settings, checked with :func:`check_idle` on the result; turning
    ``idle_timeout`` off without naming ``idle_warning_lead`` also turns the warning off."""
    result = dict(changes)
    if "idle_timeout" in result and result["idle_timeout"] is None:
        result.setdefault("idle_warning_lead", None)
    check_idle(result.get("idle_timeout", idle_timeout), result.get("idle_warning_lead", idle_warning_lead))
    return result


def current(core: SimCore) -> dict[str, Any]:
    """Every runtime limit's value now (loop thread)."""
    limits = core.accounts.limits
    config = core.config
    return {
        name: getattr(limits, name) if name in _ACCOUNT_FIELDS else getattr(config, name)
        for name in LIMITS
    }


def apply(core: SimCore, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Apply validated ``changes`` (loop thread). Connect limits act on the next ``/connect``;
    ``token_ttl`` on sessions connecting afterwards; idle settings restart live sessions' countdowns.
    Raises ValueError (changing nothing) when the resulting idle settings do not fit :func:`check_idle`."""
    changes = with_idle_rules(changes, core.config.idle_timeout, core.config.idle_warning_lead)
    for name in _ACCOUNT_FIELDS:
        if name in changes:
            setattr(core.accounts.limits, name, changes[name])
    config_changes = {k: v for k, v in changes.items() if k not in _ACCOUNT_FIELDS}
    if config_changes:
        core.config = dataclasses.replace(core.config, **config_changes)
    if "idle_timeout" in changes or "idle_warning_lead" in changes:
        for session in core.sessions.values():
            if session._phase is not Phase.OPEN:
                continue
            if core.config.idle_timeout is None:
                session._cancel_timer("idle")
            else:
                core.arm_idle(session)
    return current(core)
