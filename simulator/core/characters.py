"""Simulated character definitions: what a character is called, how it replies, its story and its actions.

Pure data and parsing (no I/O but :func:`load_characters_file`, no loop); the definitions are frozen, so any
thread may read them. The simulator looks a session's definition up by the ``character_id`` of its
``/connect``.

A definition is a JSON object (``Simulator(characters=[...])`` takes plain id strings and such mappings; a
characters file, ``Simulator(characters_file=PATH)`` / ``convai-sim --characters FILE``, holds
``{"characters": [...]}`` or a bare list). Only ``"id"`` is required::

    {
      "id": "shopkeeper",                       # the character_id clients connect with (required)
      "name": "Mira",                           # default: the id
      "backstory": "Runs the village shop.",    # default: ""
      "languages": ["en-US"],                   # BCP-47 tags, informational (default ["en-US"])
      "long_term_memory": false,                # true: /connect needs end_user_id (Convai's LTM rule)
      "lipsync": true,                          # false: no blendshape frames even when asked for
      "delays": {"stt": 0.005, "llm_first_token": 0.01, "tts_first_audio": 0.01},   # seconds
      "replies": [                              # first matching pattern wins; else the echo reply
        {"pattern": "hello|hi", "reply": "Welcome, {player_name}!"},
        {"pattern": "^bye", "reply": null}      # null: the character stays silent (llm-no-response)
      ],
      "actions": ["Move To", "Pick Up", "Give"],             # default action_config when /connect has none
      "objects": [{"name": "sword", "description": "a rusty sword"}],
      "characters": [{"name": "Guard", "bio": "guards the door"}],
      "narrative": {
        "start": "greeting",
        "sections": [
          {"id": "greeting", "name": "Greeting", "objective": "Greet {player_name}.",
           "triggers": {"show_sword": "haggle"}, "speech": "Care to see my wares?",
           "bt_code": "", "bt_constants": ""}
        ]
      }
    }

Rules:

- ``replies[].pattern`` is a Python regular expression searched case-insensitively in the user's text (at
  most :data:`MAX_PATTERN_LENGTH` characters); ``reply`` may use ``{template keys}`` (from
  ``narrative_template_keys`` / ``update-template-keys``) and ``{text}`` (the user's text); a key the
  session has not set stays as written. ``reply``, ``speech`` and ``objective`` are templates, checked at
  load: every placeholder is a plain ``{name}`` (no positional ``{}`` / ``{0}``, attribute or index access,
  ``!conversion`` or ``:format``), and a literal brace is doubled (``{{``, ``}}``).
- ``narrative.sections[].triggers`` maps a trigger name to the id of the section it leads to; every target
  must be a section of the same narrative, ``start`` too. ``speech`` (optional) is what the character says
  on entering the section; without it a trigger moves the story silently.
- ``delays`` are per-stage pauses of every turn: ``stt`` before the user's final transcription,
  ``llm_first_token`` before the first ``bot-llm-text``, ``tts_first_audio`` before the first audio; each
  0..60 seconds.

Every error is a :class:`CharacterError` naming the source (the file, or ``characters``), the character
and the field; nothing is loaded when any definition is bad.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.core import bounds

#: Longest ``replies[].pattern`` accepted (the patterns run on the simulator's loop).
MAX_PATTERN_LENGTH = 1000
#: Longest stage delay accepted, in seconds.
MAX_DELAY = 60.0
#: Largest characters file read, in bytes.
MAX_FILE_BYTES = 4 * 1024 * 1024
#: What :func:`parse_character` accepts at the top level of a definition.
KNOWN_KEYS = frozenset({"id", "name", "backstory", "languages", "long_term_memory", "lipsync", "delays",
                        "replies", "actions", "objects", "characters", "narrative"})
DEFAULT_LANGUAGES = ("en-US",)


class CharacterError(ValueError):
    """A character definition that cannot be loaded; the message names the source, character and field."""


@dataclass(frozen=True)
class StageDelays:
    """Per-turn stage pauses in seconds (small by default, so metrics and timings have something to show)."""

    stt: float = 0.005
    llm_first_token: float = 0.01
    tts_first_audio: float = 0.01


@dataclass(frozen=True)
class ScriptedReply:
    """A reply chosen when ``pattern`` is found in the user's text (``reply`` None: stay silent)."""

    pattern: re.Pattern[str]
    reply: str | None


@dataclass(frozen=True)
class NarrativeSection:
    """One section of a narrative graph; ``triggers`` maps a trigger name to the next section's id."""

    id: str
    name: str
    objective: str = ""
    triggers: Mapping[str, str] = field(default_factory=dict)
    speech: str | None = None
    bt_code: str = ""
    bt_constants: str = ""


@dataclass(frozen=True)
class Narrative:
    """A narrative graph: its sections and the one the story starts in."""

    start: str
    sections: tuple[NarrativeSection, ...]

    def section(self, section_id: str) -> NarrativeSection:
        """The section with ``section_id`` (KeyError when there is none)."""
        for section in self.sections:
            if section.id == section_id:
                return section
        raise KeyError(section_id)


@dataclass(frozen=True)
class SceneItem:
    """An object (``name``, ``description``) or character (``name``, ``bio``) actions may target."""

    name: str
    description: str = ""


@dataclass(frozen=True)
class CharacterDefinition:
    """One simulated character (see the module docstring for the JSON shape and rules)."""

    id: str
    name: str = ""
    backstory: str = ""
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    long_term_memory: bool = False
    lipsync: bool = True
    delays: StageDelays = field(default_factory=StageDelays)
    replies: tuple[ScriptedReply, ...] = ()
    actions: tuple[str, ...] = ()
    objects: tuple[SceneItem, ...] = ()
    characters: tuple[SceneItem, ...] = ()
    narrative: Narrative | None = None

    @property
    def display_name(self) -> str:
        """``name``, or the id when the definition has none."""
        return self.name or self.id

    def scripted_reply(self, text: str) -> ScriptedReply | None:
        """The first scripted reply whose pattern is found in ``text`` (None: use the default reply)."""
        for reply in self.replies:
            if reply.pattern.search(text):
                return reply
        return None

    def summary(self) -> dict[str, Any]:
        """A JSON-able description (for the control API and ``Simulator.state``)."""
        return {
            "id": self.id, "name": self.display_name, "backstory": self.backstory,
            "languages": list(self.languages), "long_term_memory": self.long_term_memory,
            "lipsync": self.lipsync, "actions": list(self.actions),
            "objects": [item.name for item in self.objects], "characters": [item.name for item in self.characters],
            "replies": len(self.replies),
            "narrative": None if self.narrative is None else {
                "start": self.narrative.start, "sections": [s.id for s in self.narrative.sections]},
            "delays": {"stt": self.delays.stt, "llm_first_token": self.delays.llm_first_token,
                       "tts_first_audio": self.delays.tts_first_audio},
        }


class _Fields:
    """Reads one definition's fields, raising :class:`CharacterError` with the full location."""

    def __init__(self, source: str, label: str) -> None:
        self.source = source
        self.label = label

    def fail(self, path: str, message: str) -> CharacterError:
        return CharacterError(f"{self.source}: {self.label}: field {path!r}: {message}")

    def string(self, value: Any, path: str, *, empty: bool = True) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, got {type(value).__name__}")
        if not empty and not value.strip():
            raise self.fail(path, "must not be empty")
        return value

    def template(self, value: Any, path: str) -> str:
        """A string that :func:`fill` can fill: balanced braces, every placeholder a plain ``{name}``."""
        text = self.string(value, path)
        try:
            fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(text)
                      if name is not None]
        except ValueError as exc:  # an unbalanced or unescaped brace
            raise self.fail(path, f"template {text!r}: {exc} (write a literal brace as {{{{ or }}}})") from None
        for name, spec, conversion in fields:
            if not name or name.isdigit():
                raise self.fail(path, f"template {text!r}: positional placeholder {{{name}}} (name a template key)")
            if "." in name or "[" in name or conversion is not None or spec:
                raise self.fail(path, f"template {text!r}: placeholder for {name!r} is not a plain {{name}} "
                                      "(no attribute, index, !conversion or :format)")
        return text

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, got {value!r}")
        return value

    def listed(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list, got {type(value).__name__}")
        return value

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be an object, got {type(value).__name__}")
        return value

    def seconds(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(path, f"must be a number of seconds, got {value!r}")
        if not 0 <= value <= MAX_DELAY:
            raise self.fail(path, f"must be 0..{MAX_DELAY:g} seconds, got {value!r}")
        return float(value)

    def names(self, value: Any, path: str) -> tuple[str, ...]:
        items = self.listed(value, path)
        names = tuple(self.string(item, f"{path}[{i}]", empty=False) for i, item in enumerate(items))
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name.casefold() in seen:
                raise self.fail(f"{path}[{i}]", f"duplicate name {name!r}")
            seen.add(name.casefold())
        return names


def _scene_items(reader: _Fields, value: Any, path: str, text_key: str) -> tuple[SceneItem, ...]:
    items = []
    seen: set[str] = set()
    for i, raw in enumerate(reader.listed(value, path)):
        entry = reader.mapping(raw, f"{path}[{i}]")
        name = reader.string(entry.get("name"), f"{path}[{i}].name", empty=False)
        if name.casefold() in seen:
            raise reader.fail(f"{path}[{i}].name", f"duplicate name {name!r}")
        seen.add(name.casefold())
        text = reader.string(entry.get(text_key, ""), f"{path}[{i}].{text_key}")
        items.append(SceneItem(name, text))
    return tuple(items)


def _replies(reader: _Fields, value: Any) -> tuple[ScriptedReply, ...]:
    replies = []
    for i, raw in enumerate(reader.listed(value, "replies")):
        path = f"replies[{i}]"
        entry = reader.mapping(raw, path)
        pattern = reader.string(entry.get("pattern"), f"{path}.pattern", empty=False)
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise reader.fail(f"{path}.pattern", f"is longer than {MAX_PATTERN_LENGTH} characters")
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise reader.fail(f"{path}.pattern", f"is not a valid regular expression: {exc}") from None
        if "reply" not in entry:
            raise reader.fail(f"{path}.reply", "is required (a string, or null to stay silent)")
        reply = entry["reply"]
        replies.append(ScriptedReply(compiled, None if reply is None else reader.template(reply, f"{path}.reply")))
    return tuple(replies)


def _narrative(reader: _Fields, value: Any) -> Narrative:
    body = reader.mapping(value, "narrative")
    raw_sections = reader.listed(body.get("sections"), "narrative.sections")
    if not raw_sections:
        raise reader.fail("narrative.sections", "must hold at least one section")
    sections: list[NarrativeSection] = []
    ids: set[str] = set()
    for i, raw in enumerate(raw_sections):
        path = f"narrative.sections[{i}]"
        entry = reader.mapping(raw, path)
        section_id = reader.string(entry.get("id"), f"{path}.id", empty=False)
        if section_id in ids:
            raise reader.fail(f"{path}.id", f"duplicate section id {section_id!r}")
        ids.add(section_id)
        triggers_raw = reader.mapping(entry.get("triggers", {}), f"{path}.triggers")
        triggers = {reader.string(name, f"{path}.triggers", empty=False):
                    reader.string(target, f"{path}.triggers.{name}", empty=False)
                    for name, target in triggers_raw.items()}
        speech = entry.get("speech")
        sections.append(NarrativeSection(
            id=section_id,
            name=reader.string(entry.get("name", section_id), f"{path}.name"),
            objective=reader.template(entry.get("objective", ""), f"{path}.objective"),
            triggers=triggers,
            speech=None if speech is None else reader.template(speech, f"{path}.speech"),
            bt_code=reader.string(entry.get("bt_code", ""), f"{path}.bt_code"),
            bt_constants=reader.string(entry.get("bt_constants", ""), f"{path}.bt_constants"),
        ))
    for i, section in enumerate(sections):
        for name, target in section.triggers.items():
            if target not in ids:
                raise reader.fail(f"narrative.sections[{i}].triggers.{name}", f"names no section: {target!r}")
    start = reader.string(body.get("start", sections[0].id), "narrative.start", empty=False)
    if start not in ids:
        raise reader.fail("narrative.start", f"names no section: {start!r}")
    return Narrative(start, tuple(sections))


def parse_character(value: str | Mapping[str, Any], source: str = "characters", index: int = 0) -> CharacterDefinition:
    """One definition from a plain id or a mapping (see the module docstring).

    Raises:
        CharacterError: naming ``source``, the character (its id, else its position) and the field.
    """
    if isinstance(value, str):
        if not value.strip():
            raise CharacterError(f"{source}: character #{index}: field 'id': must not be empty")
        return CharacterDefinition(id=value)
    if not isinstance(value, Mapping):
        raise CharacterError(f"{source}: character #{index}: must be an id string or an object, "
                             f"got {type(value).__name__}")
    raw_id = value.get("id")
    label = f"character {raw_id!r}" if isinstance(raw_id, str) and raw_id else f"character #{index}"
    reader = _Fields(source, label)
    character_id = reader.string(raw_id, "id", empty=False)
    unknown = sorted(set(value) - KNOWN_KEYS)
    if unknown:
        raise reader.fail(unknown[0], f"unknown key (known: {', '.join(sorted(KNOWN_KEYS))})")
    delays = StageDelays()
    if "delays" in value:
        raw = reader.mapping(value["delays"], "delays")
        bad = sorted(set(raw) - {"stt", "llm_first_token", "tts_first_audio"})
        if bad:
            raise reader.fail(f"delays.{bad[0]}", "unknown stage (known: stt, llm_first_token, tts_first_audio)")
        delays = StageDelays(**{name: reader.seconds(raw[name], f"delays.{name}") for name in raw})
    languages = reader.names(value.get("languages", list(DEFAULT_LANGUAGES)), "languages")
    return CharacterDefinition(
        id=character_id,
        name=reader.string(value.get("name", ""), "name"),
        backstory=reader.string(value.get("backstory", ""), "backstory"),
        languages=languages or DEFAULT_LANGUAGES,
        long_term_memory=reader.boolean(value.get("long_term_memory", False), "long_term_memory"),
        lipsync=reader.boolean(value.get("lipsync", True), "lipsync"),
        delays=delays,
        replies=_replies(reader, value.get("replies", [])),
        actions=reader.names(value.get("actions", []), "actions"),
        objects=_scene_items(reader, value.get("objects", []), "objects", "description"),
        characters=_scene_items(reader, value.get("characters", []), "characters", "bio"),
        narrative=None if value.get("narrative") is None else _narrative(reader, value["narrative"]),
    )


def parse_characters(values: Iterable[str | Mapping[str, Any]] | str,
                     source: str = "characters") -> tuple[CharacterDefinition, ...]:
    """Every definition of ``values`` (plain ids and mappings), all or nothing.

    Raises:
        CharacterError: an empty list, a bad definition, or two definitions with one id.
    """
    items = [values] if isinstance(values, (str, Mapping)) else list(values)
    if not items:
        raise CharacterError(f"{source}: must define at least one character")
    parsed = tuple(parse_character(item, source, index) for index, item in enumerate(items))
    seen: set[str] = set()
    for definition in parsed:
        if definition.id in seen:
            raise CharacterError(f"{source}: character {definition.id!r}: field 'id': defined twice")
        seen.add(definition.id)
    return parsed


def parse_document(document: Any, source: str) -> tuple[CharacterDefinition, ...]:
    """The definitions of a decoded characters document: ``{"characters": [...]}`` or a bare list."""
    if isinstance(document, Mapping):
        extra = sorted(set(document) - {"characters"})
        if extra:
            raise CharacterError(f"{source}: unknown top-level key {extra[0]!r} (expected 'characters')")
        document = document.get("characters")
    if not isinstance(document, list):
        raise CharacterError(f"{source}: expected {{\"characters\": [...]}} or a list of characters")
    return parse_characters(document, source)


def load_characters_file(path: str | Path) -> tuple[CharacterDefinition, ...]:
    """The definitions in the JSON file at ``path`` (UTF-8, at most :data:`MAX_FILE_BYTES`).

    Raises:
        CharacterError: the file is not a regular file (a FIFO would block), cannot be read, is not JSON
            (or nests deeper than ``simulator.core.bounds.MAX_JSON_DEPTH``), or holds a bad definition (the
            message names the file, the character and the field).
    """
    source = str(path)
    try:
        document = bounds.read_json_file(path, MAX_FILE_BYTES)
    except bounds.JsonInputError as exc:
        raise CharacterError(f"{source}: {exc}") from None
    return parse_document(document, source)


def shipped_characters_dir() -> Path:
    """The directory of the sample characters that ship with the simulator."""
    return Path(__file__).resolve().parent.parent / "characters"


def shipped_character_names() -> list[str]:
    """The names of the shipped sample characters files (``shipped_character(name)`` gives the path)."""
    return sorted(path.stem for path in shipped_characters_dir().glob("*.json"))


def shipped_character(name: str) -> Path:
    """The path of a shipped sample (``"shopkeeper"``, ``"greeter"``); KeyError for an unknown name.

    Only the listed names resolve: a name holding a path (``"../x"``, reachable from the control API's
    ``{"shipped": NAME}``) is unknown, never a file outside the samples' folder.
    """
    if name not in shipped_character_names():
        raise KeyError(name)
    return shipped_characters_dir() / f"{name}.json"


def characters_file_path(name: str) -> str:
    """A characters-file argument (``--characters``, ``--convai-characters``) as a path: an existing file
    as given, else a shipped sample's path by its name; an unknown name is returned as given, so the
    loader reports the missing file by that name."""
    if Path(name).exists():
        return name
    try:
        return str(shipped_character(name))
    except KeyError:
        return name


class Template(dict[str, str]):
    """``str.format_map`` keys that leave unknown ``{placeholders}`` as written."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(text: str, keys: Mapping[str, str]) -> str:
    """``text`` with ``{key}`` placeholders filled from ``keys`` (a key not in ``keys`` stays as written).

    ``text`` is a template a definition was loaded with, so its braces were checked then (see the module
    docstring's rules); anything else raises what ``str.format_map`` raises (ValueError, KeyError,
    IndexError, AttributeError), never a silently unfilled text.
    """
    return text.format_map(Template(keys))
