"""The character's actions: which configured actions a user's request asks for, with which targets (pure).

Deterministic stand-in for the model, following the rules of Convai's character-actions docs (action
affordance model, pronoun resolution, the action-response contract):

- Only configured action names are emitted, found in the user's text case-insensitively as whole words
  (``"please PICK UP the sword"`` names ``"Pick Up"``; a name of several words may be split around up to three
  words, as in ``"pick that up"``), in the order the text names them.
- Each action's target is the first configured object or character named after it (before the next action),
  or a pronoun there: ``me``/``my``/``here`` resolve to the speaker, ``this``/``that``/``it``/``there`` to the
  ``current_attention_object``. Targets come only from those: an action whose target cannot be resolved (an
  unconfigured thing, or a pronoun without an attention object) is declined and left out.
- A turn that asks for nothing configured, or whose every action is declined, emits ``[]``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from simulator.core.features import ActionSettings

SPEAKER_WORDS = ("me", "my", "here")
ATTENTION_WORDS = ("this", "that", "it", "there")
#: The speaker's name when ``end_user_metadata.name`` and ``end_user_id`` are both absent.
DEFAULT_SPEAKER = "Player"


@dataclass(frozen=True)
class Action:
    """One action of an ``action-response``: ``name`` (a configured action), ``target`` (None: none)."""

    name: str
    target: str | None = None

    def wire(self) -> dict[str, str]:
        """The wire shape: ``{"name"}`` plus ``"target"`` when there is one (omitted when empty)."""
        return {"name": self.name} if self.target is None else {"name": self.name, "target": self.target}


@functools.lru_cache(maxsize=512)
def _word(name: str) -> re.Pattern[str]:
    """``name`` as a whole-word, case-insensitive pattern (any run of spaces between its words)."""
    body = r"\s+".join(re.escape(part) for part in name.split())
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def _verb(name: str) -> re.Pattern[str]:
    """An action name as a pattern that also finds it split around up to three words ("pick that up")."""
    parts = [re.escape(part) for part in name.split()]
    if len(parts) < 2:
        return _word(name)
    middle = r"(?:\s+(?P<mid>\w+(?:\s+\w+){0,2}?))??"
    rest = r"\s+".join(parts[1:])
    return re.compile(rf"(?<!\w){parts[0]}{middle}\s+{rest}(?!\w)", re.IGNORECASE)


def _mentions(text: str, names: tuple[str, ...]) -> list[tuple[int, int, str]]:
    """(start, end, name) of every mention of ``names`` in ``text``, longest name first at one position."""
    found = [(m.start(), m.end(), name) for name in names for m in _word(name).finditer(text)]
    return _leftmost(found)


def _leftmost(found: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    found.sort(key=lambda hit: (hit[0], -(hit[1] - hit[0])))
    kept: list[tuple[int, int, str]] = []
    for hit in found:
        if not kept or hit[0] >= kept[-1][1]:
            kept.append(hit)
    return kept


def _verbs(text: str, names: tuple[str, ...]) -> list[tuple[int, int, str, str]]:
    """(start, end, name, words inside a split name) of every action named in ``text``, in text order."""
    inner: dict[tuple[int, int, str], str] = {}
    for name in names:
        for match in _verb(name).finditer(text):
            groups = match.groupdict()
            inner[(match.start(), match.end(), name)] = groups.get("mid") or ""
    return [(start, end, name, inner[(start, end, name)]) for start, end, name in _leftmost(list(inner))]


def choose(text: str, settings: ActionSettings, speaker: str | None) -> list[Action]:
    """The actions ``text`` asks for under ``settings`` (see the module docstring); ``speaker`` names the user."""
    if not settings.actions:
        return []
    verbs = _verbs(text, settings.actions)
    targets = settings.objects + settings.characters
    chosen: list[Action] = []
    for index, (_start, end, name, inside) in enumerate(verbs):
        stop = verbs[index + 1][0] if index + 1 < len(verbs) else len(text)
        segment = f"{inside} {text[end:stop]}"
        candidates = _mentions(segment, targets + SPEAKER_WORDS + ATTENTION_WORDS)
        target: str | None = None
        if candidates:
            word = candidates[0][2]
            if word in SPEAKER_WORDS:
                target = speaker or DEFAULT_SPEAKER
            elif word in ATTENTION_WORDS:
                target = settings.current_attention_object
            else:
                target = word
        if target is not None:
            chosen.append(Action(name, target))
    return chosen
