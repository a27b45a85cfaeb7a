"""Sans-I/O RTVI protocol: encode client messages, decode and normalise server frames.

No sockets, threads or clocks here. Client messages are sent as the superset envelope
``{"label": "rtvi-ai", "type", "id", "data"}`` (as the Convai Unity SDK's ``RTVISendMessageBase``
sends it). Server frames arrive in three forms, all normalised into one stream of typed events:

* Form A: ``{"label":"rtvi-ai","type":"bot-llm-text","data":{...}}``
* Form B: ``{"label":"rtvi-ai","type":"server-message","data":{"type":"bot-emotion", ...}}``
* Form C: ``{"type":"server-response","event_type":...,"status":...}`` (flat)

:func:`decode` never raises, whatever the peer sends: bad input becomes a
:class:`~convai_sync.events.ProtocolFault` (``protocol.parse_failed`` or
``protocol.message_invalid``) so the session keeps running. :mod:`convai_sync.frames` refuses
what would blow up later on an SDK thread (NaN/``Infinity``, numbers that overflow a float,
nesting deeper than :data:`MAX_NESTING`, frames over :data:`MAX_FRAME_BYTES`); the builders
here refuse numeric fields outside their sane range (``user-idle-warning.remaining_seconds``
must be in [0, :data:`MAX_IDLE_SECONDS`]).
"""

from __future__ import annotations

import base64
import binascii
import enum
import io
import json
import logging
import math
import uuid
import wave
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from . import events as ev
from . import frames
from .audio import BYTES_PER_SAMPLE, check_format
from .errors import ErrorCode

LABEL = "rtvi-ai"

log = logging.getLogger("convai_sync")

# Re-exported: the frame limits are part of what decode() promises.
MAX_FRAME_BYTES = frames.MAX_FRAME_BYTES
MAX_NESTING = frames.MAX_NESTING

#: Largest ``remaining_seconds`` a ``user-idle-warning`` may announce (a day). Convai documents
#: an int (example 300); beyond this the local idle deadline would overflow a ``timedelta``.
MAX_IDLE_SECONDS = 86400

#: Client message types Convai documents as accepted (the 12 ``extras.supported_types`` of its
#: unknown-type error, plus ``usage-toggle`` from its Live API message glossary).
CLIENT_TYPES = frozenset({
    "user_text_message", "trigger-message", "update-template-keys", "update-scene-metadata",
    "update-dynamic-info", "context-update", "tts-toggle", "stt-toggle", "interrupt-bot",
    "force-user-stopped-speaking", "reset-idle-timer", "kill-pipeline", "usage-toggle",
})

#: Echoes of client message types that the Web SDK ignores if the server reflects them.
_ECHO_TYPES = frozenset({
    "user_text_message", "user-llm-text", "text-input", "user-input", "text-message",
    "chat-message", "input-text", "message", "trigger-message", "update-template-keys",
    "update-dynamic-info", "interrupt-bot",
})

CONTEXT_MODES = ("append", "replace", "reset")
_INVALID = "\x00invalid"  # marks a non-object ``data`` found by _normalise
RUN_LLM_VALUES = ("true", "false", "auto")


_E = TypeVar("_E", bound=enum.IntEnum)


class MessageInvalid(ValueError):
    """A payload field has the wrong shape (becomes ``protocol.message_invalid``)."""


# ---- encoding --------------------------------------------------------------------------------


def new_message_id() -> str:
    """A fresh message id (UUID4 hex, Unity's ``N`` format)."""
    return uuid.uuid4().hex


def encode(msg_type: str, data: Mapping[str, Any] | None = None, message_id: str | None = None) -> tuple[str, str]:
    """Encode one client message.

    Args:
        msg_type: RTVI client type, e.g. ``"user_text_message"``.
        data: JSON-serialisable payload (``{}`` when None).
        message_id: Envelope ``id``; a new UUID when None.

    Returns:
        ``(message_id, json_text)``.

    Raises:
        ValueError: ``data`` is not JSON-serialisable.
    """
    mid = message_id or new_message_id()
    frame = {"label": LABEL, "type": msg_type, "id": mid, "data": dict(data or {})}
    try:
        return mid, json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{msg_type} data is not JSON-serialisable: {exc}") from exc


def user_text_message(text: str) -> tuple[str, str]:
    """``user_text_message`` with ``message_id`` equal to the envelope id (Unity's shape)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    mid = new_message_id()
    return encode("user_text_message", {"text": text.strip(), "message_id": mid}, mid)


def trigger_message(name: str | None = None, message: str | None = None) -> tuple[str, str]:
    """``trigger-message`` with exactly one of ``trigger_name`` / ``trigger_message``."""
    if (name is None) == (message is None):
        raise ValueError("send_trigger needs exactly one of name or message")
    value = name if name is not None else message
    if not isinstance(value, str) or not value.strip():
        raise ValueError("trigger name/message must be a non-empty string")
    data = {"trigger_name": name} if name is not None else {"trigger_message": message}
    return encode("trigger-message", data)


def update_template_keys(keys: Mapping[str, str]) -> tuple[str, str]:
    """``update-template-keys`` (``{str: str}``, non-empty)."""
    if not keys or not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
        raise ValueError("template keys must be a non-empty mapping of str to str")
    return encode("update-template-keys", {"template_keys": dict(keys)})


def update_dynamic_info(text: str) -> tuple[str, str]:
    """``update-dynamic-info`` (legacy alias of context updates)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("dynamic info text must be a non-empty string")
    return encode("update-dynamic-info", {"dynamic_info": {"text": text}})


def context_update(text: str | None, mode: str = "append", run_llm: str = "auto") -> tuple[str, str]:
    """``context-update``; ``text`` is required unless ``mode == "reset"``."""
    if mode not in CONTEXT_MODES:
        raise ValueError(f"mode must be one of {CONTEXT_MODES}")
    if run_llm not in RUN_LLM_VALUES:
        raise ValueError(f"run_llm must be one of {RUN_LLM_VALUES}")
    data: dict[str, Any] = {"mode": mode, "run_llm": run_llm}
    if mode != "reset":
        if not isinstance(text, str) or not text.strip():
            raise ValueError("context text is required unless mode='reset'")
        data["text"] = text
    elif text:
        data["text"] = text
    mid = new_message_id()
    data["update_id"] = mid
    return encode("context-update", data, mid)


def action_config_update(action_config: Mapping[str, Any]) -> tuple[str, str]:
    """``context-update`` replacing the session's ``action_config`` (``run_llm: "false"``: no reply);
    its ``current_attention_object`` also travels at the top level, where Convai's
    ``context-update`` reads it (``""`` clears it)."""
    mid = new_message_id()
    data: dict[str, Any] = {"action_config": dict(action_config), "run_llm": "false", "update_id": mid,
                            "current_attention_object": action_config.get("current_attention_object") or ""}
    return encode("context-update", data, mid)


def tts_toggle(enabled: bool) -> tuple[str, str]:
    """``tts-toggle``."""
    return encode("tts-toggle", {"enabled": bool(enabled)})


def simple(msg_type: str) -> tuple[str, str]:
    """A message with empty data: ``interrupt-bot``, ``reset-idle-timer``, ``kill-pipeline``…"""
    return encode(msg_type, {})


# ---- decoding --------------------------------------------------------------------------------

def decode(raw: object) -> object | None:
    """Decode one server frame into an event object. Never raises.

    Args:
        raw: One WebSocket/data-channel message: ``str``, or UTF-8 ``bytes``/``bytearray``/
            ``memoryview``; anything else is a ``protocol.message_invalid`` fault.

    Returns:
        A typed event (``ServerMessage`` subclass, ``BotReady``, ``ServerResponse``, …), None
        for an ignored echo of a client message type, or a
        :class:`~convai_sync.events.ProtocolFault`: ``protocol.parse_failed`` for input that is
        not UTF-8 JSON (or uses NaN/``Infinity``, or a number that overflows a float),
        ``protocol.message_invalid`` for valid JSON of the wrong shape (no ``type``, too deep,
        too large, a field of the wrong type or out of range).
    """
    try:
        msg, text = frames.parse(raw)
    except frames.FrameRejected as exc:
        return _fault(exc.code, exc.detail, exc.raw)
    try:
        return _build(msg, text)
    except (MessageInvalid, TypeError, ValueError, OverflowError) as exc:
        return _fault(ErrorCode.PROTOCOL_MESSAGE_INVALID, f"invalid message: {exc}", text)
    except Exception as exc:  # a bug in a builder must not kill the session thread: log it loudly
        log.exception("decoder bug on a frame; reported as protocol.message_invalid")
        return _fault(ErrorCode.PROTOCOL_MESSAGE_INVALID, f"could not decode: {type(exc).__name__}", text)


def _build(msg: object, raw: str) -> object | None:
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str) or not msg["type"]:
        return _fault(ErrorCode.PROTOCOL_MESSAGE_INVALID, "message missing required 'type' field", raw)
    event_type, payload = _normalise(msg)
    if event_type is None:
        return _fault(ErrorCode.PROTOCOL_MESSAGE_INVALID, "server-message without data.type", raw)
    if _INVALID in payload:
        return _fault(ErrorCode.PROTOCOL_MESSAGE_INVALID, f"{event_type}: data must be a JSON object", raw)
    if event_type in _ECHO_TYPES:
        return None
    builder = _BUILDERS.get(event_type)
    frozen = MappingProxyType(payload)
    try:
        if builder is None:
            return ev.ServerMessage(type=event_type, data=frozen)
        return builder(event_type, payload, frozen)
    except (MessageInvalid, TypeError, ValueError, OverflowError) as exc:
        return _fault(ErrorCode.PROTOCOL_MESSAGE_INVALID, f"{event_type}: {exc}", raw)


def _fault(code: ErrorCode, detail: str, raw: str | bytes) -> ev.ProtocolFault:
    text = raw if isinstance(raw, str) else repr(raw[:200])
    return ev.ProtocolFault(code=code, detail=detail, raw=text[:500])


def _normalise(msg: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    msg_type: str = msg["type"]
    data = msg.get("data")
    if msg_type == "server-message":
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return None, {}
        inner = {k: v for k, v in data.items() if k not in ("type", "label")}
        return data["type"], inner
    if msg_type == "server-response":
        # Form C is flat; tolerate a wrapped variant too.
        body = data if isinstance(data, dict) and "event_type" in data else msg
        return msg_type, {k: v for k, v in body.items() if k not in ("type", "label")}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return msg_type, {_INVALID: data}
    return msg_type, dict(data)


def _str(payload: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise MessageInvalid(f"missing '{key}'")
        return None
    if not isinstance(value, str):
        raise MessageInvalid(f"'{key}' must be a string")
    return value


def _req_str(payload: Mapping[str, Any], key: str) -> str:
    value = _str(payload, key)
    assert value is not None  # _str raised otherwise
    return value


def _opt_int(payload: Mapping[str, Any], key: str, low: int, high: int,
             rounding: Callable[[float], int] = int) -> int | None:
    """A number field in ``[low, high]`` as an ``int`` (``rounding`` for fractions), or None."""
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MessageInvalid(f"'{key}' must be a number")
    if not low <= value <= high:  # also false for NaN
        raise MessageInvalid(f"'{key}' must be in [{low}, {high}], got {value!r:.40}")
    return value if isinstance(value, int) else rounding(value)


def _member(enum_cls: type[_E], payload: Mapping[str, Any], key: str, default: int) -> _E:
    """``enum_cls`` member named by an int (or a numeric string) field."""
    value = payload.get(key, default)
    if isinstance(value, str) and value.strip().isdigit() and len(value) < 10:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageInvalid(f"'{key}' must be an int")
    try:
        return enum_cls(value)
    except ValueError:
        raise MessageInvalid(f"'{key}': unknown {enum_cls.__name__} {value!r:.40}") from None


def _opt_bool(payload: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = payload.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise MessageInvalid(f"'{key}' must be a boolean")
    return value


Builder = Callable[[str, dict[str, Any], Mapping[str, Any]], object]


def _plain(cls: type[ev.ServerMessage]) -> Builder:
    def build(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
        return cls(type=t, data=d)
    return build


def _text(cls: type[ev.BotText] | type[ev.BotTTSText]) -> Builder:
    def build(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
        return cls(type=t, data=d, text=_req_str(p, "text"))
    return build


def _bot_ready(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    version = p.get("version")
    return ev.BotReady(version=version if isinstance(version, str) else None, data=d)


def _server_response(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    extras = p.get("extras")
    if extras is not None and not isinstance(extras, dict):
        raise MessageInvalid("'extras' must be an object or null")
    message = p.get("message")
    return ev.ServerResponse(
        event_type=_req_str(p, "event_type"),
        status=_req_str(p, "status"),
        message=message if isinstance(message, str) else None,
        extras=MappingProxyType(extras) if extras is not None else None,
    )


def _user_transcription(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    return ev.UserTranscription(type=t, data=d, text=_req_str(p, "text"),
                                final=_opt_bool(p, "final"), user_id=_str(p, "user_id", required=False))


def _final_transcription(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    return ev.FinalUserTranscription(
        type=t, data=d, text=_req_str(p, "text"),
        message_id=_str(p, "message_id", required=False),
        speaker_id=_str(p, "speaker_id", required=False),
        speaker_name=_str(p, "speaker_name", required=False),
        participant_id=_str(p, "participant_id", required=False),
    )


def _speaking(cls: type[ev.BotStartedSpeaking] | type[ev.BotStoppedSpeaking]) -> Builder:
    def build(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
        rid = p.get("response_id")
        return cls(type=t, data=d, response_id=str(rid) if rid is not None else None)
    return build


def _turn_completed(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    return ev.BotTurnCompleted(type=t, data=d, was_interrupted=_opt_bool(p, "was_interrupted"),
                               was_aborted=_opt_bool(p, "was_aborted"),
                               error_reason=_str(p, "error_reason", required=False))


def _interaction_created(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    return ev.InteractionCreated(type=t, data=d, interaction_id=_req_str(p, "interaction_id"),
                                 character_session_id=_str(p, "character_session_id", required=False))


def _emotion(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    # Convai documents scale 1 (subtle) to 3 (intense); leave room for finer scales.
    return ev.BotEmotion(type=t, data=d, emotion=_req_str(p, "emotion"), scale=_opt_int(p, "scale", 0, 100))


def _actions(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    raw = p.get("actions", [])
    if raw in (None, "None"):
        raw = []
    if not isinstance(raw, list):
        raise MessageInvalid("'actions' must be a list")
    actions = []
    for item in raw:
        if isinstance(item, str):  # WEB120 still sends plain strings
            actions.append(ev.Action(name=item))
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            target = item.get("target")
            actions.append(ev.Action(name=item["name"], target=str(target) if target is not None else None))
        else:
            raise MessageInvalid("each action needs a string 'name'")
    return ev.ActionResponse(type=t, data=d, actions=tuple(actions))


def _moderation(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    result = p.get("result")
    if not isinstance(result, bool):
        raise MessageInvalid("'result' must be a boolean")
    return ev.ModerationResponse(type=t, data=d, result=result,
                                 user_input=_str(p, "user_input", required=False),
                                 reason=_str(p, "reason", required=False))


def _behavior_tree(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    def opt(key: str) -> str | None:
        value = p.get(key)
        return None if value is None else str(value)
    return ev.BehaviorTreeResponse(type=t, data=d, bt_code=opt("bt_code"),
                                   bt_constants=opt("bt_constants"),
                                   narrative_section_id=opt("narrative_section_id"))


def _visemes(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    raw = p.get("visemes", {})
    if not isinstance(raw, dict):
        raise MessageInvalid("'visemes' must be an object")
    return ev.Visemes(type=t, data=d, visemes=MappingProxyType(raw))


def _numbers(value: object, what: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in value):
        raise MessageInvalid(f"{what} must be a list of finite numbers")
    return tuple(float(x) for x in value)


def _blendshapes(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    raw = p.get("blendshapes")
    frames: tuple[tuple[float, ...], ...] = ()
    if t == "neurosync-blendshapes":
        frames = (_numbers(raw, "'blendshapes'"),)
    elif t == "chunked-neurosync-blendshapes":
        if not isinstance(raw, list):
            raise MessageInvalid("'blendshapes' must be a list of frames")
        frames = tuple(_numbers(f, "each frame of 'blendshapes'") for f in raw)
    through = p.get("valid_through_frame_index")
    if through is not None and (isinstance(through, bool) or not isinstance(through, int)):
        raise MessageInvalid("'valid_through_frame_index' must be an int or null")
    return ev.BlendshapeFrames(type=t, data=d, frames=frames, valid_through_frame_index=through,
                               reason=_str(p, "reason", required=False))


def _metric_values(raw: object, key: str) -> tuple[ev.MetricValue, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise MessageInvalid(f"'{key}' must be a list")
    values = []
    for item in raw:
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(item.get("processor"), str) \
                or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MessageInvalid(f"each '{key}' item needs a string 'processor' and a number 'value'")
        model = item.get("model")
        values.append(ev.MetricValue(processor=item["processor"], value=float(value),
                                     model=model if isinstance(model, str) else None))
    return tuple(values)


def _metrics(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    return ev.Metrics(type=t, data=d, ttfb=_metric_values(p.get("ttfb"), "ttfb"),
                      processing=_metric_values(p.get("processing"), "processing"))


def _audio_data(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    # Convai Realtime API ``audio-data`` (audio_config.output.audio_routing "data_only"/"both"):
    # base64 PCM16 little-endian in ``audio``, optionally behind a 44-byte WAV header.
    encoded = _req_str(p, "audio")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise MessageInvalid("'audio' is not base64") from None
    rate = _opt_int(p, "sample_rate", 1, 10**6)
    channels = _opt_int(p, "channels", 1, 64)
    if _opt_bool(p, "includes_wav_header"):
        if not raw.startswith(b"RIFF"):
            raise MessageInvalid("'includes_wav_header' is true but 'audio' has no WAV header")
        try:
            with wave.open(io.BytesIO(raw), "rb") as wav:
                if wav.getsampwidth() != BYTES_PER_SAMPLE or wav.getcomptype() != "NONE":
                    raise MessageInvalid("the WAV header does not describe PCM16")
                rate, channels = wav.getframerate(), wav.getnchannels()
                raw = wav.readframes(wav.getnframes())
        except (wave.Error, EOFError) as exc:
            raise MessageInvalid(f"bad WAV header: {exc}") from None
    if rate is None:
        raise MessageInvalid("missing 'sample_rate'")
    channels = channels or 1
    try:
        check_format(raw, rate, channels)
    except ValueError as exc:
        raise MessageInvalid(str(exc)) from None
    return ev.AudioData(type=t, data=d, pcm=raw, sample_rate=rate, num_channels=channels)


def _no_response(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    return ev.LLMNoResponse(reason=_str(p, "reason", required=False))


def _usage_limit(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    quota = p.get("quota_type")
    message = p.get("message")
    return ev.UsageLimitReached(quota_type=str(quota) if quota is not None else "unknown",
                                message=str(message) if message is not None else "Usage limit exceeded")


def _idle_warning(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    # A negative value is invalid rather than clamped: clamping to 0 would fire the local idle
    # deadline at once on a peer's bad number. Fractions round up: never expire early.
    remaining = _opt_int(p, "remaining_seconds", 0, MAX_IDLE_SECONDS, math.ceil)
    if remaining is None:
        raise MessageInvalid("missing 'remaining_seconds'")
    message = p.get("message")
    return ev.UserIdleWarningReceived(
        remaining_seconds=remaining,
        message=str(message) if message is not None else f"Idle: disconnecting in {remaining} s")


def _error(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    text = p.get("error", p.get("message", "pipeline error"))
    return ev.PipelineError(error=str(text), fatal=_opt_bool(p, "fatal"))


def _participant(joined: bool) -> Builder:
    def build(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
        pid = p.get("participant_id") or p.get("sid") or p.get("identity")
        if not isinstance(pid, str):
            raise MessageInvalid("missing 'participant_id'")
        kind = p.get("participant_type", 0)
        try:
            ptype = (ev.ParticipantType[kind.upper()] if isinstance(kind, str)
                     else ev.ParticipantType(kind))
        except (KeyError, ValueError, TypeError):  # unknown kinds are UNKNOWN, as Unity does
            ptype = ev.ParticipantType.UNKNOWN
        cls = ev.ParticipantJoined if joined else ev.ParticipantLeft
        return cls(participant_id=pid, identity=str(p.get("identity") or pid),
                   display_name=str(p.get("display_name") or p.get("name") or ""),
                   participant_type=ptype, is_local=bool(p.get("is_local", False)),
                   is_muted=bool(p.get("is_muted", False)))
    return build


def _rebind(t: str, p: dict[str, Any], d: Mapping[str, Any]) -> object:
    from .state import SessionState

    outcome = _member(ev.RoomOwnershipRebindStatus, p, "outcome", 0)
    return ev.RoomOwnershipRebindStateChanged(
        outcome=outcome, has_pending_reconnect=bool(p.get("has_pending_reconnect", False)),
        session_state=_member(SessionState, p, "session_state", 0),
        active_character_id=str(p.get("active_character_id") or ""),
        requested_character_id=str(p.get("requested_character_id") or ""),
        reconnect_required=bool(p.get("reconnect_required", False)))


_BUILDERS: dict[str, Builder] = {
    "bot-ready": _bot_ready,
    "server-response": _server_response,
    "bot-llm-started": _plain(ev.BotLLMStarted),
    "bot-llm-text": _text(ev.BotText),
    "bot-llm-stopped": _plain(ev.BotLLMStopped),
    "bot-tts-started": _plain(ev.BotTTSStarted),
    "bot-tts-stopped": _plain(ev.BotTTSStopped),
    "bot-tts-text": _text(ev.BotTTSText),
    "bot-transcription": _text(ev.BotTTSText),
    "user-transcription": _user_transcription,
    "final-user-transcription": _final_transcription,
    "user-started-speaking": _plain(ev.UserStartedSpeaking),
    "user-stopped-speaking": _plain(ev.UserStoppedSpeaking),
    "bot-started-speaking": _speaking(ev.BotStartedSpeaking),
    "bot-stopped-speaking": _speaking(ev.BotStoppedSpeaking),
    "bot-turn-completed": _turn_completed,
    "interaction-created": _interaction_created,
    "bot-emotion": _emotion,
    "action-response": _actions,
    "moderation-response": _moderation,
    "behavior-tree-response": _behavior_tree,
    "visemes": _visemes,
    "neurosync-blendshapes": _blendshapes,
    "chunked-neurosync-blendshapes": _blendshapes,
    "neurosync-blendshapes-cancel": _blendshapes,
    "blendshape-turn-stats": _plain(ev.BlendshapeFrames),
    "vad-stt-started": _plain(ev.VadSttEvent),
    "vad-stt-stopped": _plain(ev.VadSttEvent),
    "audio-data": _audio_data,
    "metrics": _metrics,
    "llm-no-response": _no_response,
    "usage-limit-reached": _usage_limit,
    "user-idle-warning": _idle_warning,
    "error": _error,
    "participant-joined": _participant(True),
    "participant-left": _participant(False),
    "room-participant-joined": _participant(True),
    "room-participant-left": _participant(False),
    "room-ownership-rebind-state-changed": _rebind,
}
