"""Server-side wire frames, written from Convai's message docs (never from ``convai_sync.protocol``).
Pure builders and parsers, usable from any thread.

Three server envelope forms (Convai Live API, turn lifecycle and message ordering):

* Form A, bot output stream: ``{"label": "rtvi-ai", "type": T, "data": {...}}``;
* Form B, custom server message: ``{"label": "rtvi-ai", "type": "server-message", "data": {"type": T, ...}}``;
* Form C, flat ack: ``{"type": "server-response", "event_type": T, "status": S, "message"?, "extras"?}``.

Client frames arrive in three shapes (bare, labeled, and ``client-message`` wrapped); :func:`parse_client_frame`
normalises them. Everything here is pure (no I/O, no state).
"""

from __future__ import annotations

import functools
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

from simulator.core import bounds

LABEL = "rtvi-ai"

#: The 12 types in ``extras.supported_types`` of Convai's unknown-type error.
SUPPORTED_TYPES: tuple[str, ...] = (
    "user_text_message",
    "trigger-message",
    "update-template-keys",
    "update-scene-metadata",
    "update-dynamic-info",
    "context-update",
    "tts-toggle",
    "stt-toggle",
    "interrupt-bot",
    "force-user-stopped-speaking",
    "reset-idle-timer",
    "kill-pipeline",
)

#: Newer types DOCS-LIVE documents that the simulator also accepts (not in ``supported_types``).
EXTRA_ACCEPTED_TYPES: tuple[str, ...] = ("usage-toggle",)

PARSE_ERROR_MESSAGE = "Failed to parse message: invalid JSON or UTF-8 encoding"
MISSING_TYPE_MESSAGE = "Message missing required 'type' field"


JsonDict = dict[str, Any]


def encode(frame: JsonDict) -> str:
    """Serialise one frame as compact JSON text."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def form_a(msg_type: str, data: JsonDict | None = None, *, msg_id: str | None = None) -> JsonDict:
    """Form A frame (``bot-llm-*``, ``bot-tts-*``, ``bot-ready``, ``error``)."""
    frame: JsonDict = {"label": LABEL, "type": msg_type}
    if msg_id is not None:
        frame["id"] = msg_id
    frame["data"] = {} if data is None else data
    return frame


def form_b(event: str, **payload: Any) -> JsonDict:
    """Form B frame: a custom ``server-message`` whose ``data.type`` is ``event``."""
    data: JsonDict = {"type": event}
    data.update(payload)
    return {"label": LABEL, "type": "server-message", "data": data}


def ack(
    event_type: str,
    status: str = "success",
    message: str | None = None,
    extras: JsonDict | None = None,
) -> JsonDict:
    """Form C ``server-response``; ``message`` and ``extras`` are omitted when None (§1.10)."""
    frame: JsonDict = {"type": "server-response", "event_type": event_type, "status": status}
    if message is not None:
        frame["message"] = message
    if extras is not None:
        frame["extras"] = extras
    return frame


@functools.lru_cache(maxsize=16)
def plain_ack_text(event_type: str) -> str:
    """The encoded ``{"type":"server-response","event_type":T,"status":"success"}`` (constant per type)."""
    return encode(ack(event_type, "success"))


def parse_error_ack() -> JsonDict:
    """The documented ``parse-error`` ack (``extras`` is an explicit null)."""
    return {
        "type": "server-response",
        "event_type": "parse-error",
        "status": "error",
        "message": PARSE_ERROR_MESSAGE,
        "extras": None,
    }


def validation_error_ack(received: Any) -> JsonDict:
    """The documented ``validation-error`` ack for a message without ``type``."""
    return ack("validation-error", "error", MISSING_TYPE_MESSAGE, {"received_message": received})


def unknown_type_ack(msg_type: str) -> JsonDict:
    """The documented unknown-type ack: ``event_type`` echoes the unknown string."""
    return ack(
        msg_type, "error", f"Unknown message type: {msg_type}", {"supported_types": list(SUPPORTED_TYPES)}
    )


def failed_ack(event_type: str, detail: str, extras: JsonDict | None = None) -> JsonDict:
    """Handler-failure ack: ``"Failed to process <event_type>: <detail>"``."""
    return ack(event_type, "error", f"Failed to process {event_type}: {detail}", extras)


# --------------------------------------------------------------------------- server messages


def bot_ready() -> JsonDict:
    """PROPOSED ``bot-ready`` payload (Convai does not document it; RTVI's ``{version}``)."""
    return form_a("bot-ready", {"version": "1.0.0"}, msg_id=uuid.uuid4().hex[:8])


def interaction_created(character_session_id: str) -> JsonDict:
    return form_b(
        "interaction-created",
        interaction_id=f"int_{uuid.uuid4().hex[:16]}",
        character_session_id=character_session_id,
    )


def speaking(event: str) -> JsonDict:
    """``bot-started-speaking`` / ``bot-stopped-speaking`` (Form B, ``label`` repeated inside data)."""
    return form_b(event, label=LABEL)


def turn_completed(was_interrupted: bool) -> JsonDict:
    return form_b("bot-turn-completed", was_interrupted=was_interrupted)


def final_user_transcription(text: str, message_id: str | None) -> JsonDict:
    if message_id is None:
        return form_b("final-user-transcription", text=text)
    return form_b("final-user-transcription", text=text, message_id=message_id)


def pipeline_error(text: str, fatal: bool) -> JsonDict:
    """RTVI ``error`` (Form A) with ``{error, fatal}``."""
    return form_a("error", {"error": text, "fatal": fatal})


def usage_limit_reached(quota_type: str, message: str) -> JsonDict:
    return form_b("usage-limit-reached", quota_type=quota_type, message=message)


def idle_warning(remaining_seconds: int) -> JsonDict:
    return form_b(
        "user-idle-warning",
        remaining_seconds=remaining_seconds,
        message=f"You've been idle. You will be disconnected in {describe_seconds(remaining_seconds)}.",
    )


#: Participant kinds the client decodes by name (Convai Unity ``ParticipantType``), in value order.
PARTICIPANT_TYPES: tuple[str, ...] = ("unknown", "local_player", "remote_player", "character")


def participant(
    joined: bool,
    participant_id: str,
    identity: str,
    display_name: str,
    participant_type: str,
    *,
    is_local: bool = False,
    is_muted: bool = False,
) -> JsonDict:
    """``room-participant-joined`` / ``room-participant-left`` (Form B, WebSocket transport)."""
    return form_b(
        "room-participant-joined" if joined else "room-participant-left",
        participant_id=participant_id,
        identity=identity,
        display_name=display_name,
        participant_type=participant_type,
        is_local=is_local,
        is_muted=is_muted,
    )


def rebind_state(
    outcome: int,
    *,
    has_pending_reconnect: bool = False,
    session_state: int = 2,
    active_character_id: str = "",
    requested_character_id: str = "",
    reconnect_required: bool = False,
) -> JsonDict:
    """``room-ownership-rebind-state-changed`` (Form B); ``session_state`` 2 = CONNECTED."""
    return form_b(
        "room-ownership-rebind-state-changed",
        outcome=outcome,
        has_pending_reconnect=has_pending_reconnect,
        session_state=session_state,
        active_character_id=active_character_id,
        requested_character_id=requested_character_id,
        reconnect_required=reconnect_required,
    )


def describe_seconds(seconds: int) -> str:
    """``300 -> "5 minutes"``, ``1 -> "1 second"``, ``90 -> "90 seconds"``."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute" + ("" if minutes == 1 else "s")
    return f"{seconds} second" + ("" if seconds == 1 else "s")


def whole_seconds(seconds: float) -> int:
    """Round a remaining time up to whole seconds (never announce less than is left)."""
    return max(1, math.ceil(seconds - 1e-9))


# --------------------------------------------------------------------------- client frames


@dataclass(frozen=True)
class ClientMessage:
    """One decoded client message, normalised from any of the three client shapes."""

    type: str
    data: JsonDict
    envelope_id: str | None


@dataclass(frozen=True)
class BadFrame:
    """A client frame the server cannot accept; ``reply`` is the ack to send."""

    reply: JsonDict


def parse_client_frame(text: str) -> tuple[Any, ClientMessage | BadFrame]:
    """Decode one text frame; returns ``(decoded_json_or_None, message_or_error)``.

    Invalid JSON, and JSON nested deeper than :data:`simulator.core.bounds.MAX_JSON_DEPTH`, get the
    documented ``parse-error`` ack (decoded None).
    """
    try:
        decoded = bounds.decode_json(text)
    except bounds.JsonInputError:
        return None, BadFrame(parse_error_ack())
    return decoded, normalise(decoded)


def normalise(decoded: Any) -> ClientMessage | BadFrame:
    """Unwrap the ``client-message`` shape and validate the ``type`` field."""
    if not isinstance(decoded, dict):
        return BadFrame(validation_error_ack(decoded))
    msg_type = decoded.get("type")
    data = decoded.get("data")
    envelope_id = decoded.get("id")
    if msg_type == "client-message" and isinstance(data, dict) and "t" in data:
        msg_type = data.get("t")
        data = data.get("d")
    if not isinstance(msg_type, str) or not msg_type:
        return BadFrame(validation_error_ack(decoded))
    return ClientMessage(
        type=msg_type,
        data=data if isinstance(data, dict) else {},
        envelope_id=envelope_id if isinstance(envelope_id, str) else None,
    )


def message_type_of(decoded: Any) -> str | None:
    """The normalised type of an already-decoded client frame, or None."""
    result = normalise(decoded)
    return result.type if isinstance(result, ClientMessage) else None
