"""A session's story: named triggers move it between its character's narrative sections (Convai Narrative
Design: ``trigger-message`` with ``trigger_name``, answered by ``behavior-tree-response``). Pure.

Rules (each is what Convai's trigger-message and AI-behavior-event docs describe; the graph is the character
definition's, see :mod:`simulator.core.characters`):

- A ``trigger_name`` listed in the current section's ``triggers`` moves the story to the section it names:
  ``behavior-tree-response {bt_code, bt_constants, narrative_section_id}`` follows the ack. When the new section
  has ``speech``, the character says it (template keys filled) and the ack's extras are
  ``{trigger_name, has_speak_tag: false}``; without it the ack says ``Trigger message processed without
  response`` and ``has_speak_tag`` is absent (no context text was generated).
- Any other trigger name (unknown, or not leaving the current section) changes nothing: a success ack
  ``Trigger message processed without response`` with extras ``{trigger_name}`` only.
- Section objectives are filled from the session's template keys (``narrative_template_keys`` at
  ``/connect``, ``update-template-keys`` later); unknown ``{placeholders}`` stay as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from simulator.core import wire
from simulator.core.characters import CharacterDefinition, NarrativeSection, fill

PROCESSED = "Trigger message processed successfully"
WITHOUT_RESPONSE = "Trigger message processed without response"


@dataclass(frozen=True)
class Move:
    """What one named trigger does: the section it leads to and what the character then says (None: nothing)."""

    section: NarrativeSection
    speech: str | None


def current(character: CharacterDefinition, section_id: str | None) -> NarrativeSection | None:
    """The section ``section_id`` of ``character``'s narrative (None without a narrative)."""
    if character.narrative is None or section_id is None:
        return None
    return character.narrative.section(section_id)


def fire(character: CharacterDefinition, section_id: str | None, trigger_name: str,
         keys: Mapping[str, str]) -> Move | None:
    """The move ``trigger_name`` makes from ``section_id`` (None: it leads nowhere from there)."""
    section = current(character, section_id)
    if section is None or character.narrative is None:
        return None
    target = section.triggers.get(trigger_name)
    if target is None:
        return None
    entered = character.narrative.section(target)
    return Move(entered, None if entered.speech is None else fill(entered.speech, keys))


def objective(character: CharacterDefinition, section_id: str | None, keys: Mapping[str, str]) -> str | None:
    """The current section's objective with its template keys filled (None without a narrative)."""
    section = current(character, section_id)
    return None if section is None else fill(section.objective, keys)


def behavior_tree_response(section: NarrativeSection) -> wire.JsonDict:
    """``behavior-tree-response`` for entering ``section`` (Form B, as Convai's AI behavior events show it)."""
    return wire.form_b("behavior-tree-response", bt_code=section.bt_code, bt_constants=section.bt_constants,
                       narrative_section_id=section.id)
