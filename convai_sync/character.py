"""Character settings sent with ``POST /connect``: actions, scene, lip-sync, dynamic info, turn-taking.

Frozen value objects, validated at construction like :class:`~convai_sync.ConvaiConfig` (an invalid
value raises :class:`~convai_sync.ConfigurationError`, code ``config.invalid``, naming the class and
field, e.g. ``"ActionConfig.actions must be ..."``). Each has ``to_wire()`` giving the JSON object
Convai's connect API takes (Convai Realtime API documentation, "Connect API" request body:
``action_config``, ``scene_description``, ``blendshape_config``, ``dynamic_info``, ``vad_params``,
``turn_detection_config``). Owns no thread; immutable, so safe to share between threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .validation import (
    check_fields,
    count,
    flag,
    instance,
    invalid,
    json_object,
    number,
    one_of,
    rule,
    sequence,
    validated,
)
from .validation import name as name_spec
from .validation import text as text_spec

#: ``blendshape_config.format`` values Convai documents (Realtime API "Lip-sync"; Web SDK ``format``).
BLENDSHAPE_FORMATS = ("mha", "arkit", "cc4_extended", "visemes", "cc5_hd")


@validated
@dataclass(frozen=True)
class SceneObject:
    """An object in the scene the character can act on (``action_config.objects[]``), or one
    entry of ``scene_description`` (which describes only and grants no action).

    Attributes:
        name: What the character and the user call it (``str``, non-empty, stripped), e.g.
            ``"sword"``; an action's ``target`` is one of these names.
        description: Free text for the model (``str``; may be empty).
    """

    name: str = field(metadata=rule(name_spec()))
    description: str = field(default="", metadata=rule(text_spec()))

    def __post_init__(self) -> None:
        check_fields(self)

    def to_wire(self) -> dict[str, Any]:
        """This object as the connect request body carries it (Convai Realtime API documentation,
        "Connect API": ``action_config.objects[]`` and ``scene_description[]``): a new
        ``{"name": str, "description": str}`` dict on each call."""
        return {"name": self.name, "description": self.description}


@validated
@dataclass(frozen=True)
class SceneCharacter:
    """Another character in the scene an action can target (``action_config.characters[]``).

    Attributes:
        name: Its name (``str``, non-empty, stripped).
        bio: Free text for the model (``str``; may be empty).
    """

    name: str = field(metadata=rule(name_spec()))
    bio: str = field(default="", metadata=rule(text_spec()))

    def __post_init__(self) -> None:
        check_fields(self)

    def to_wire(self) -> dict[str, Any]:
        """This character as the connect request body carries it (Convai Realtime API documentation,
        "Connect API": ``action_config.characters[]``): a new ``{"name": str, "bio": str}`` dict on each call."""
        return {"name": self.name, "bio": self.bio}


def _name_of(item: Any) -> str:
    return str(getattr(item, "name", item))


@validated
@dataclass(frozen=True)
class ActionConfig:
    """What the character may do and to what (``action_config``; Convai "Character actions").

    The character answers with ``action-response`` (:class:`~convai_sync.ActionResponse`): only
    action names from ``actions``, a target only from ``objects`` or ``characters``; "this/that/
    it/there" means ``current_attention_object``. Sent at connect (``ConvaiConfig.action_config``)
    and replaced mid-session by :meth:`ConvaiClient.update_action_config` (a ``context-update``).

    Attributes:
        actions: Action names (``tuple``/``list`` of non-empty ``str``, e.g. ``("Pick Up",
            "Move To")``; case-insensitively unique; at least one).
        characters: :class:`SceneCharacter` items (unique names).
        objects: :class:`SceneObject` items (unique names).
        current_attention_object: The object or character "this/that" refers to: one of the
            names above, or None.

    Raises:
        ConfigurationError: ``config.invalid`` naming the field.
    """

    actions: tuple[str, ...] = field(metadata=rule(sequence(name_spec(), min_items=1, unique=_name_of)))
    characters: tuple[SceneCharacter, ...] = field(
        default=(), metadata=rule(sequence(instance(SceneCharacter), unique=_name_of)))
    objects: tuple[SceneObject, ...] = field(
        default=(), metadata=rule(sequence(instance(SceneObject), unique=_name_of)))
    current_attention_object: str | None = field(default=None, metadata=rule(name_spec(optional=True)))

    def __post_init__(self) -> None:
        check_fields(self)
        focus = self.current_attention_object
        if focus is not None:
            names = [o.name for o in self.objects] + [c.name for c in self.characters]
            if focus.casefold() not in {n.casefold() for n in names}:
                raise invalid(f"ActionConfig.current_attention_object must name one of objects or characters, "
                              f"got {focus!r} (known: {sorted(names)})")

    def to_wire(self) -> dict[str, Any]:
        """The ``action_config`` object: ``{actions, characters, objects, current_attention_object?}``."""
        body: dict[str, Any] = {
            "actions": list(self.actions),
            "characters": [c.to_wire() for c in self.characters],
            "objects": [o.to_wire() for o in self.objects],
        }
        if self.current_attention_object is not None:
            body["current_attention_object"] = self.current_attention_object
        return body


@validated
@dataclass(frozen=True)
class BlendshapeConfig:
    """Lip-sync frames for the character's voice (``blendshape_config``; Convai Realtime API "Lip-sync").

    Asking for it sends ``blendshape_provider: "neurosync"``; frames then arrive as
    ``chunked-neurosync-blendshapes`` and are assembled into :class:`~convai_sync.LipSync`
    timelines and ``BotReply.lipsync``.

    Attributes:
        format: ``"mha"`` (251 values per frame), ``"arkit"`` (61), ``"cc4_extended"`` (170),
            ``"visemes"`` (15) or ``"cc5_hd"`` (accepted by Convai; no frames are delivered).
        chunk_size: Frames per message, ``int`` in [1, 600] (Convai's default 10).
        output_fps: Frames per second of animation, ``int`` in [1, 240] (Convai documents 60).
    """

    format: str = field(default="mha", metadata=rule(one_of(*BLENDSHAPE_FORMATS)))
    chunk_size: int = field(default=10, metadata=rule(count(1, 600)))
    output_fps: int = field(default=60, metadata=rule(count(1, 240)))

    def __post_init__(self) -> None:
        check_fields(self)

    def to_wire(self) -> dict[str, Any]:
        """The ``blendshape_config`` object as Convai's Web SDK sends it."""
        return {"enable_chunking": True, "chunk_size": self.chunk_size, "format": self.format,
                "frames_buffer_duration": 0, "output_fps": self.output_fps}


@validated
@dataclass(frozen=True)
class DynamicInfo:
    """Facts the character knows this session (``dynamic_info``; Convai "Dynamic information").

    Attributes:
        text: Runtime context (``str``), e.g. ``"The player carries a lantern."``.
        static_text: Context kept for the whole session (``str`` or None).
        keep_in_context: Keep ``text`` in context across turns (``bool``).
    """

    text: str = field(default="", metadata=rule(text_spec()))
    static_text: str | None = field(default=None, metadata=rule(text_spec(optional=True)))
    keep_in_context: bool = field(default=False, metadata=rule(flag()))

    def __post_init__(self) -> None:
        check_fields(self)

    def to_wire(self) -> dict[str, Any]:
        """The ``dynamic_info`` object of the connect request body (Convai Realtime API documentation,
        "Connect API"; Convai "Dynamic information"): ``{"text": str, "keep_in_context": bool}`` plus
        ``"static_text": str`` when set; a new dict on each call."""
        body: dict[str, Any] = {"text": self.text, "keep_in_context": self.keep_in_context}
        if self.static_text is not None:
            body["static_text"] = self.static_text
        return body


@validated
@dataclass(frozen=True)
class VadParams:
    """Server voice-activity detection (``vad_params``; Convai Realtime API "VAD params").

    Attributes:
        confidence: Speech probability threshold in [0, 1] (default 0.7).
        start_secs: Seconds of speech before the user counts as speaking, in [0, 10] (0.2).
        stop_secs: Seconds of silence before the user counts as stopped, in [0, 10] (0.2).
        min_volume: Minimum volume in [0, 1] (0.6).
    """

    confidence: float = field(default=0.7, metadata=rule(number(0.0, 1.0, low_open=False, unit="")))
    start_secs: float = field(default=0.2, metadata=rule(number(0.0, 10.0, low_open=False)))
    stop_secs: float = field(default=0.2, metadata=rule(number(0.0, 10.0, low_open=False)))
    min_volume: float = field(default=0.6, metadata=rule(number(0.0, 1.0, low_open=False, unit="")))

    def __post_init__(self) -> None:
        check_fields(self)

    def to_wire(self) -> dict[str, Any]:
        """The ``vad_params`` object of the connect request body (Convai Realtime API documentation, "VAD
        params"): ``{"confidence": 0..1, "start_secs": s, "stop_secs": s, "min_volume": 0..1}`` (floats;
        the two durations in seconds); a new dict on each call."""
        return {"confidence": self.confidence, "start_secs": self.start_secs,
                "stop_secs": self.stop_secs, "min_volume": self.min_volume}


@validated
@dataclass(frozen=True)
class TurnDetectionConfig:
    """End-of-turn detection (``turn_detection_config``; Convai Realtime API connect request).

    Attributes:
        type: ``"smart_turn"`` or ``"not_provided"``.
        params: Extra parameters passed through (JSON-serialisable mapping with ``str`` keys) or None.
    """

    type: str = field(default="smart_turn", metadata=rule(one_of("smart_turn", "not_provided")))
    params: Mapping[str, Any] | None = field(default=None, metadata=rule(json_object(optional=True)))

    def __post_init__(self) -> None:
        check_fields(self)

    def to_wire(self) -> dict[str, Any]:
        """The ``turn_detection_config`` object of the connect request body (Convai Realtime API
        documentation, "Connect API"): ``{"type": "smart_turn" | "not_provided"}`` plus ``"params"`` (a copy
        of :attr:`params`) when set; a new dict on each call."""
        body: dict[str, Any] = {"type": self.type}
        if self.params is not None:
            body["params"] = dict(self.params)
        return body
