"""The simulator's runtime-adjustable limits: validation, reading and applying them.

One table serves the constructor, :meth:`simulator.Simulator.set_limits` and ``POST /_sim/limits``, so
each rejects a bad value with the same ``ValueError``. ``None`` means unlimited / off where allowed.
:func:`current` and :func:`apply` run on the loop thread.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from simulator.sessions import Phase

if TYPE_CHECKING:
    from simulator.core import SimCore


class Kind(enum.Enum):
    COUNT = "a positive int or null"  # None = unlimited
    QUOTA = "an int >= 0 or null"
    SECONDS = "seconds > 0 or null"  # None = off
    DELAY = "seconds >= 0"
    FLAG = "true or false"


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


def check_value(name: str, kind: Kind, value: object) -> Any:
    """``value`` if it suits ``kind``, else ValueError naming the limit."""
    ok: bool
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is Kind.FLAG:
        ok = isinstance(value, bool)
    elif value is None:
        ok = kind is not Kind.DELAY
    elif kind in (Kind.COUNT, Kind.QUOTA):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= (1 if kind is Kind.COUNT else 0)
    elif kind is Kind.SECONDS:
        ok = number and 0 < float(value) < float("inf")  # type: ignore[arg-type]
    else:
        ok = number and 0 <= float(value) < float("inf")  # type: ignore[arg-type]
    if not ok:
        raise ValueError(f"{name} must be {kind.value}, got {value!r}")
    if kind in (Kind.SECONDS, Kind.DELAY) and value is not None:
        return float(value)  # type: ignore[arg-type]
    return value


def check_seconds(name: str, value: object) -> float:
    """A positive, finite number of seconds (for settings that are not runtime limits)."""
    result = check_value(name, Kind.SECONDS, value)
    if result is None:
        raise ValueError(f"{name} must be seconds > 0, got None")
    return float(result)


def validate(changes: Mapping[str, object]) -> dict[str, Any]:
    """Check every entry of ``changes``; unknown names and bad values raise ValueError."""
    unknown = sorted(set(changes) - set(LIMITS))
    if unknown:
        raise ValueError(f"unknown limits {unknown}; known: {sorted(LIMITS)}")
    return {name: check_value(name, LIMITS[name], value) for name, value in changes.items()}


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
    ``token_ttl`` on sessions connecting afterwards; idle settings restart live sessions' countdowns."""
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
