"""Validated builders for the room signals the simulator can send (participants, ownership rebind).

Shared by :class:`simulator.Simulator`, the ``/_sim/*`` control routes and scenario steps, so each
reports a bad argument with the same ``ValueError``. Pure; no I/O.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from simulator.core import wire

PARTICIPANT_FIELDS = frozenset(
    {"joined", "participant_id", "identity", "display_name", "participant_type", "is_local", "is_muted"}
)
REBIND_FIELDS = frozenset(
    {"has_pending_reconnect", "session_state", "active_character_id", "requested_character_id",
     "reconnect_required"}
)
#: RoomOwnershipRebindStatus values (0..4) and SessionState values (0..5) the client decodes.
REBIND_OUTCOMES = range(5)
SESSION_STATES = range(6)


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def _int_in(name: str, value: object, allowed: range) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        raise ValueError(f"{name} must be an int in {allowed.start}..{allowed.stop - 1}, got {value!r}")
    return int(value)


def participant_type_name(value: object) -> str:
    """``"character"`` / ``"remote_player"`` / ... from a name or its ``ParticipantType`` value."""
    names = wire.PARTICIPANT_TYPES
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[int(value)]
    if isinstance(value, str) and value.strip().lower() in names:
        return value.strip().lower()
    raise ValueError(f"participant_type must be one of {list(names)} (or 0..{len(names) - 1}), got {value!r}")


def participant_frame(
    joined: bool = True,
    participant_id: str | None = None,
    identity: str | None = None,
    display_name: str = "",
    participant_type: str | int = "character",
    is_local: bool = False,
    is_muted: bool = False,
) -> wire.JsonDict:
    """A ``room-participant-joined``/``-left`` frame; ``participant_id`` defaults to a fresh id."""
    pid = f"PA_{uuid.uuid4().hex[:12]}" if participant_id is None else _text("participant_id", participant_id)
    if not pid:
        raise ValueError("participant_id must not be empty")
    return wire.participant(
        _bool("joined", joined),
        pid,
        pid if identity is None else _text("identity", identity),
        _text("display_name", display_name),
        participant_type_name(participant_type),
        is_local=_bool("is_local", is_local),
        is_muted=_bool("is_muted", is_muted),
    )


def participant_from(fields: Mapping[str, Any], *, joined: bool | None = None) -> wire.JsonDict:
    """:func:`participant_frame` from a JSON object (unknown keys are a ValueError)."""
    if not isinstance(fields, Mapping):
        raise ValueError(f"participant details must be an object, got {fields!r}")
    extra = set(fields) - PARTICIPANT_FIELDS
    if extra:
        raise ValueError(f"unknown participant fields {sorted(extra)}; allowed: {sorted(PARTICIPANT_FIELDS)}")
    kwargs = dict(fields)
    if joined is not None:
        if "joined" in kwargs and kwargs["joined"] is not joined:
            raise ValueError("'joined' contradicts the action (participant_joined / participant_left)")
        kwargs["joined"] = joined
    return participant_frame(**kwargs)


def rebind_frame(outcome: int, **fields: Any) -> wire.JsonDict:
    """A ``room-ownership-rebind-state-changed`` frame (``outcome`` is a RoomOwnershipRebindStatus value)."""
    extra = set(fields) - REBIND_FIELDS
    if extra:
        raise ValueError(f"unknown rebind fields {sorted(extra)}; allowed: {sorted(REBIND_FIELDS)}")
    return wire.rebind_state(
        _int_in("outcome", outcome, REBIND_OUTCOMES),
        has_pending_reconnect=_bool("has_pending_reconnect", fields.get("has_pending_reconnect", False)),
        session_state=_int_in("session_state", fields.get("session_state", 2), SESSION_STATES),
        active_character_id=_text("active_character_id", fields.get("active_character_id", "")),
        requested_character_id=_text("requested_character_id", fields.get("requested_character_id", "")),
        reconnect_required=_bool("reconnect_required", fields.get("reconnect_required", False)),
    )


def rebind_from(fields: Mapping[str, Any]) -> wire.JsonDict:
    """:func:`rebind_frame` from a JSON object with an ``outcome`` key."""
    if not isinstance(fields, Mapping) or "outcome" not in fields:
        raise ValueError(f"rebind details must be an object with an 'outcome', got {fields!r}")
    rest = {k: v for k, v in fields.items() if k != "outcome"}
    return rebind_frame(fields["outcome"], **rest)


def raw_frame(frame: object) -> str:
    """The text to send for a raw frame: a dict/list as compact JSON, a string as is."""
    if isinstance(frame, str):
        return frame
    if isinstance(frame, (dict, list)):
        return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
    raise ValueError(f"a raw frame must be a JSON object or a string, got {type(frame).__name__}")
