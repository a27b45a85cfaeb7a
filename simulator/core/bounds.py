"""Input bounds: the sizes and depths the simulator accepts from peers, and a bounded JSON decoder.

Users run the simulator as a local server, so every peer input is bounded before the simulator works on
it, and work on it is linear in its size, so no single input stalls the event loop (and so every other
session). The limits:

* :data:`MAX_BODY_BYTES`: an HTTP request body (``POST /connect``, ``/_sim/*``); larger is 413.
* :data:`MAX_JSON_DEPTH`: how deeply a JSON value (a body, a WebSocket frame, a scenario) may nest;
  deeper is treated as invalid JSON (422 ``json_invalid`` on HTTP, the ``parse-error`` ack on the
  WebSocket). No Convai message nests more than a handful of levels.
* :data:`MAX_TEXT_LENGTH`: characters in one text field of a client message (``user_text_message``
  ``text``, ``trigger-message`` ``trigger_name`` / ``trigger_message``, each template key and value);
  longer is answered with ``Failed to process <type>: ...``. It equals the runtime context budget Convai
  documents for ``context-update`` (30,000 estimated tokens at four characters per token), so a text
  the simulator refuses could not fit the character's context either.
* :data:`MAX_SCENARIO_FILE_BYTES`: a scenario file read from disk.
* :data:`MAX_INJECT_TIMES`: how many times one injection repeats (``times`` of ``Simulator.inject``,
  ``POST /_sim/inject``, ``refuse_livekit_join`` and scenario ``inject`` steps); more is refused (400 on
  the control API). A repeated injection yields to the event loop between frames and stops when its
  session ends, so even the largest one never stalls other sessions.

WebSocket messages are bounded separately by the 16 MB per message Convai documents for ``/chat``.
"""

from __future__ import annotations

import json
from typing import Any

from simulator.core.context import RUNTIME_MAX_TOKENS

MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_TEXT_LENGTH = 4 * RUNTIME_MAX_TOKENS
MAX_SCENARIO_FILE_BYTES = 1024 * 1024
MAX_INJECT_TIMES = 1000
#: Largest count a setting takes (sessions, speakers, connects per window, conversations remembered).
MAX_COUNT = 1_000_000
#: Largest usage quota (interactions per key).
MAX_QUOTA = 1_000_000_000
#: Longest duration a setting takes (timeouts, windows, ``token_ttl``, scenario times): one day.
MAX_SECONDS = 86_400.0
#: Longest artificial delay (``bot_ready_delay``, ``chunk_delay``).
MAX_DELAY = 60.0


class JsonInputError(ValueError):
    """A JSON text the simulator does not accept; ``msg`` and ``pos`` as in ``json.JSONDecodeError``.

    ``msg`` never contains the input itself (only positions and limits), so it is safe to echo.
    """

    def __init__(self, msg: str, pos: int = 0) -> None:
        super().__init__(f"{msg} (at character {pos})" if pos else msg)
        self.msg = msg
        self.pos = pos


def decode_json(data: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode JSON text (bytes must be UTF-8) nesting at most ``max_depth`` levels.

    Raises:
        JsonInputError: invalid UTF-8, invalid JSON, or nesting deeper than ``max_depth``. The work is
            linear in the input's size: deep inputs never reach Python's recursion limit unhandled.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonInputError("invalid UTF-8", exc.start) from None
    else:
        text = data
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonInputError(f"JSON nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise JsonInputError(exc.msg, exc.pos) from None
    except ValueError as exc:  # e.g. an integer with more digits than int() allows
        raise JsonInputError(f"invalid JSON value: {type(exc).__name__}") from None
    # Fewer brackets than the limit cannot nest deeper than it: skip the walk for ordinary messages.
    if text.count("[") + text.count("{") > max_depth and _deeper_than(value, max_depth):
        raise JsonInputError(f"JSON nested deeper than {max_depth} levels")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """True when ``value`` nests more than ``limit`` containers (an explicit stack, no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def too_long(value: object, limit: int = MAX_TEXT_LENGTH) -> bool:
    """True when ``value`` is a string longer than ``limit`` characters."""
    return isinstance(value, str) and len(value) > limit
