"""The character-feature fields of a ``/connect`` body, checked: ``action_config``, ``narrative_template_keys``,
``blendshape_config`` / ``blendshape_provider``, ``dynamic_info``, ``debug``, ``vad_params``,
``turn_detection_config`` (Convai's connect request reference). Pure; the result is frozen.

A bad field is a :class:`FeatureError` carrying the pydantic-style 422 entry the real service answers
(``{"type", "loc": ["body", ...], "msg", "input"}``). An unknown ``blendshape_config.format`` lists the valid
ones. ``vad_params`` and ``turn_detection_config`` are checked and kept (the simulator's own utterance
detection does not change with them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Values per frame of each ``blendshape_config.format`` (``cc5_hd`` is accepted but delivers no frames).
FORMAT_VALUES: Mapping[str, int] = {"mha": 251, "arkit": 61, "cc4_extended": 170, "visemes": 15, "cc5_hd": 0}
FORMATS: tuple[str, ...] = tuple(FORMAT_VALUES)
#: The 15 OVR viseme keys, in Convai's documented order.
VISEME_KEYS: tuple[str, ...] = ("sil", "pp", "ff", "th", "dd", "kk", "ch", "ss", "nn", "rr", "aa", "e", "ih", "oh",
                                "ou")
DEFAULT_CHUNK_SIZE = 10
DEFAULT_FPS = 60
MAX_CHUNK_SIZE = 1000
MAX_FPS = 240
NO_BLENDSHAPES = ("not_provided", "none")


class FeatureError(ValueError):
    """A ``/connect`` feature field the service refuses; :attr:`entry` is the 422 ``detail`` item."""

    def __init__(self, loc: tuple[str, ...], msg: str, value: Any, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.entry: dict[str, Any] = {"type": kind, "loc": ["body", *loc], "msg": msg, "input": value}


@dataclass(frozen=True)
class Blendshapes:
    """What lip-sync frames a session asked for: ``format``, frames per message, frames per second."""

    format: str = "mha"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    output_fps: int = DEFAULT_FPS
    enable_chunking: bool = True

    @property
    def values_per_frame(self) -> int:
        return FORMAT_VALUES[self.format]


@dataclass(frozen=True)
class ActionSettings:
    """A session's ``action_config``: action names, targetable objects and characters, the attention object."""

    actions: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()
    characters: tuple[str, ...] = ()
    current_attention_object: str | None = None


@dataclass(frozen=True)
class Features:
    """The feature fields of one ``/connect`` (None: the field was not sent)."""

    template_keys: Mapping[str, str] = field(default_factory=dict)
    actions: ActionSettings | None = None
    blendshapes: Blendshapes | None = None
    debug: bool = False
    dynamic_text: str | None = None
    dynamic_static_text: str | None = None
    vad_params: Mapping[str, float] | None = None
    turn_detection: Mapping[str, Any] | None = None
    #: Who "me" / "my" / "here" mean: ``end_user_metadata.name``, else ``end_user_id`` (None: neither).
    speaker: str | None = None


def _object(value: Any, loc: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FeatureError(loc, "Input should be a valid dictionary", value, "dict_type")
    return value


def _list(value: Any, loc: tuple[str, ...]) -> list[Any]:
    if not isinstance(value, list):
        raise FeatureError(loc, "Input should be a valid list", value, "list_type")
    return value


def _string(value: Any, loc: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise FeatureError(loc, "Input should be a valid string", value, "string_type")
    return value


def _int(value: Any, loc: tuple[str, ...], low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or int(value) != value:
        raise FeatureError(loc, "Input should be a valid integer", value, "int_type")
    if not low <= value <= high:
        raise FeatureError(loc, f"Value error, must be {low}..{high}", value)
    return int(value)


def _number(value: Any, loc: tuple[str, ...], low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FeatureError(loc, "Input should be a valid number", value, "float_type")
    if not low <= value <= high:
        raise FeatureError(loc, f"Value error, must be {low:g}..{high:g}", value)
    return float(value)


def parse_blendshapes(body: Mapping[str, Any]) -> Blendshapes | None:
    """``blendshape_config`` (and ``blendshape_provider``): None when the client asked for no lip-sync."""
    provider = body.get("blendshape_provider")
    raw = body.get("blendshape_config")
    if raw is None:
        return Blendshapes() if provider == "neurosync" else None
    if provider in NO_BLENDSHAPES:
        return None
    config = _object(raw, ("blendshape_config",))
    fmt = config.get("format", "mha")
    if not isinstance(fmt, str) or fmt.lower() not in FORMAT_VALUES:
        raise FeatureError(("blendshape_config", "format"),
                           f"Value error, Invalid blendshape format {fmt!r}. Valid formats: {', '.join(FORMATS)}", fmt)
    chunking = config.get("enable_chunking", True)
    if not isinstance(chunking, bool):
        raise FeatureError(("blendshape_config", "enable_chunking"), "Input should be a valid boolean", chunking,
                           "bool_type")
    return Blendshapes(
        format=fmt.lower(),
        chunk_size=_int(config.get("chunk_size", DEFAULT_CHUNK_SIZE), ("blendshape_config", "chunk_size"), 1,
                        MAX_CHUNK_SIZE),
        output_fps=_int(config.get("output_fps", DEFAULT_FPS), ("blendshape_config", "output_fps"), 1, MAX_FPS),
        enable_chunking=chunking,
    )


def _named(items: list[Any], loc: tuple[str, ...], value_key: str | None = None) -> tuple[str, ...]:
    names = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            names.append(item)
            continue
        entry = _object(item, (*loc, str(index)))
        key = "name" if "name" in entry or value_key is None else value_key
        names.append(_string(entry.get(key), (*loc, str(index), key)))
    return tuple(name for name in names if name.strip())


def attention_name(value: Any, loc: tuple[str, ...]) -> str | None:
    """``current_attention_object`` as a name (a string, or an object with ``name``); ``""`` clears it."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        value = value.get("name")
    name = _string(value, loc)
    return name or None


def parse_actions(raw: Any, loc: tuple[str, ...] = ("action_config",),
                  previous: ActionSettings | None = None) -> ActionSettings:
    """An ``action_config`` (lists it leaves out are kept from ``previous``, as a ``context-update`` does)."""
    config = _object(raw, loc)
    base = previous or ActionSettings()
    actions = base.actions if "actions" not in config else _named(_list(config["actions"], (*loc, "actions")),
                                                                  (*loc, "actions"), "value")
    objects = base.objects if "objects" not in config else _named(_list(config["objects"], (*loc, "objects")),
                                                                  (*loc, "objects"))
    characters = base.characters if "characters" not in config else _named(
        _list(config["characters"], (*loc, "characters")), (*loc, "characters"))
    attention = base.current_attention_object
    for key in ("current_attention_object", "currentAttentionObject"):  # the Web SDK sends camelCase
        if key in config:
            attention = attention_name(config[key], (*loc, key))
    return ActionSettings(actions, objects, characters, attention)


def parse(body: Mapping[str, Any]) -> Features:
    """The feature fields of a ``/connect`` body.

    Raises:
        FeatureError: a field of the wrong shape, or an unknown blendshape format.
    """
    keys_raw = body.get("narrative_template_keys")
    keys: dict[str, str] = {}
    if keys_raw is not None:
        for key, value in _object(keys_raw, ("narrative_template_keys",)).items():
            keys[str(key)] = _string(value, ("narrative_template_keys", str(key)))
    debug = body.get("debug", False)
    if not isinstance(debug, bool):
        raise FeatureError(("debug",), "Input should be a valid boolean", debug, "bool_type")
    text = static = None
    if body.get("dynamic_info") is not None:
        info = _object(body["dynamic_info"], ("dynamic_info",))
        text = None if info.get("text") is None else _string(info["text"], ("dynamic_info", "text"))
        static = None if info.get("static_text") is None else _string(info["static_text"],
                                                                       ("dynamic_info", "static_text"))
    vad: dict[str, float] | None = None
    if body.get("vad_params") is not None:
        raw_vad = _object(body["vad_params"], ("vad_params",))
        vad = {"confidence": 0.7, "start_secs": 0.2, "stop_secs": 0.2, "min_volume": 0.6}
        for name in vad:
            if name in raw_vad:
                vad[name] = _number(raw_vad[name], ("vad_params", name), 0.0, 10.0)
    turn: Mapping[str, Any] | None = None
    if body.get("turn_detection_config") is not None:
        turn = _object(body["turn_detection_config"], ("turn_detection_config",))
        kind = turn.get("type", "not_provided")
        if kind not in ("smart_turn", "not_provided"):
            raise FeatureError(("turn_detection_config", "type"),
                               "Input should be 'smart_turn' or 'not_provided'", kind, "literal_error")
    actions = None if body.get("action_config") is None else parse_actions(body["action_config"])
    return Features(keys, actions, parse_blendshapes(body), debug, text, static, vad, turn, _speaker(body))


def _speaker(body: Mapping[str, Any]) -> str | None:
    user = body.get("end_user_id")
    user = user.strip() if isinstance(user, str) else ""
    metadata = body.get("end_user_metadata")
    name = metadata.get("name") if user and isinstance(metadata, Mapping) else None
    if isinstance(name, str) and name.strip():
        return name.strip()
    return user or None
