"""Per-session dynamic context with Convai's token budget (``context-update``; 50,000 combined,
20,000 static, 30,000 runtime estimated tokens, as Convai's context-update docs give them).
Each session's context is read and changed on the loop thread only.

Budget: 50,000 estimated tokens in total, 20,000 static and 30,000 runtime; the oldest runtime entries
are trimmed once the runtime part is over its budget. Tokens are estimated as ``ceil(len(text) / 4)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MAX_TOKENS = 50_000
STATIC_MAX_TOKENS = 20_000
RUNTIME_MAX_TOKENS = 30_000
#: ``update_id`` values a session remembers for duplicate detection (the oldest are forgotten first).
MAX_SEEN_UPDATE_IDS = 1024
#: Characters in one ``update_id`` (ids are UUIDs; the bound keeps the remembered ids small).
MAX_UPDATE_ID_LENGTH = 256
MODES = ("append", "replace", "reset")
RUN_LLM_VALUES = ("true", "false", "auto")


def estimate_tokens(text: str) -> int:
    """Estimated tokens of ``text`` (four characters per token, rounded up)."""
    return math.ceil(len(text) / 4)


class ContextError(ValueError):
    """A context update the server rejects; ``str()`` is the ack's ``<detail>``."""


@dataclass(frozen=True)
class ContextResult:
    """What one ``context-update`` did: the ack extras and whether the bot should respond."""

    extras: dict[str, Any]
    message: str
    run_llm: bool
    text: str


@dataclass
class ContextState:
    """Static text plus the runtime entries of one session."""

    static_text: str = ""
    runtime: list[str] = field(default_factory=list)
    runtime_tokens: int = 0
    revision: int = 0
    #: Insertion-ordered (a dict used as an ordered set) so the oldest ids can be forgotten.
    seen_update_ids: dict[str, None] = field(default_factory=dict)

    @property
    def static_tokens(self) -> int:
        return estimate_tokens(self.static_text)

    def set_static(self, text: str) -> None:
        tokens = estimate_tokens(text)
        if tokens > STATIC_MAX_TOKENS:
            raise ContextError(
                "1 validation error for DynamicInfo\nValue error, Dynamic info static_text token limit "
                f"exceeded. static_text: {tokens} estimated tokens, Maximum: {STATIC_MAX_TOKENS} tokens."
            )
        self.static_text = text

    def _check_runtime_entry(self, text: str) -> None:
        tokens = estimate_tokens(text)
        if tokens > RUNTIME_MAX_TOKENS:
            raise ContextError(
                "1 validation error for DynamicInfo\nValue error, Dynamic info text token limit "
                f"exceeded. text: {tokens} estimated tokens, Maximum: {RUNTIME_MAX_TOKENS} tokens."
            )

    def _trim(self) -> None:
        while self.runtime and self.runtime_tokens > RUNTIME_MAX_TOKENS:
            dropped = self.runtime.pop(0)
            self.runtime_tokens -= estimate_tokens(dropped)

    def append(self, text: str) -> None:
        self._check_runtime_entry(text)
        self.runtime.append(text)
        self.runtime_tokens += estimate_tokens(text)
        self._trim()

    def replace(self, text: str) -> None:
        self._check_runtime_entry(text)
        self.runtime = [text]
        self.runtime_tokens = estimate_tokens(text)

    def reset(self, remove_static: bool) -> None:
        self.runtime = []
        self.runtime_tokens = 0
        if remove_static:
            self.static_text = ""

    def extras(self, update_id: str | None, duplicate: bool) -> dict[str, Any]:
        """The documented ack extras for the current state."""
        static = self.static_tokens
        total = static + self.runtime_tokens
        return {
            "token_count": total,
            "static_token_count": static,
            "runtime_token_count": self.runtime_tokens,
            "max_tokens": MAX_TOKENS,
            "static_max_tokens": STATIC_MAX_TOKENS,
            "runtime_max_tokens": RUNTIME_MAX_TOKENS,
            "remaining_tokens": MAX_TOKENS - total,
            "content": "\n".join(self.runtime),
            "update_id": update_id,
            "revision": self.revision,
            "duplicate": duplicate,
        }

    def apply(self, data: dict[str, Any], envelope_id: str | None) -> ContextResult:
        """Apply one ``context-update`` payload; raises ContextError when it is invalid."""
        raw_id = data.get("update_id", envelope_id)
        update_id = None if raw_id is None else str(raw_id)
        if update_id is not None and len(update_id) > MAX_UPDATE_ID_LENGTH:
            raise ContextError(f"update_id is longer than {MAX_UPDATE_ID_LENGTH} characters")
        mode = data.get("mode", "append")
        if mode not in MODES:
            raise ContextError(f"invalid mode {mode!r}; expected one of {', '.join(MODES)}")
        run_llm = _run_llm(data.get("run_llm", "auto"))
        text = data.get("text")
        if mode != "reset" and (not isinstance(text, str) or not text):
            raise ContextError("text is required unless mode is 'reset'")
        if update_id is not None and update_id in self.seen_update_ids:
            return ContextResult(self.extras(update_id, True), "Duplicate context update ignored", False, "")
        if mode == "append":
            assert isinstance(text, str)
            self.append(text)
        elif mode == "replace":
            assert isinstance(text, str)
            self.replace(text)
        else:
            self.reset(bool(data.get("remove_static", False)))
        if update_id is not None:
            self.seen_update_ids[update_id] = None
            if len(self.seen_update_ids) > MAX_SEEN_UPDATE_IDS:
                del self.seen_update_ids[next(iter(self.seen_update_ids))]
        self.revision += 1
        respond = run_llm == "true" and mode != "reset"
        message = f"Context updated ({mode})"
        reply_text = text if respond and isinstance(text, str) else ""
        return ContextResult(self.extras(update_id, False), message, respond, reply_text)


def _run_llm(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value not in RUN_LLM_VALUES:
        raise ContextError(f"invalid run_llm {value!r}; expected 'true', 'false' or 'auto'")
    return str(value)
