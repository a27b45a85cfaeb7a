"""Parse one server frame (text or UTF-8 bytes) into JSON, refusing what would blow up later.

Sans-I/O and pure. Beyond well-formed JSON, :func:`parse` refuses: frames over
:data:`MAX_FRAME_BYTES`; bytes that are not UTF-8; the ``NaN``/``Infinity`` literals and numbers
that overflow a float (``1e400``), which are not JSON and become ``inf`` in Python; and nesting
deeper than :data:`MAX_NESTING`, which would make ``repr()`` or an application's ``json.dumps``
raise ``RecursionError`` later, on another thread. Each refusal is a :class:`FrameRejected`
carrying the ``protocol.*`` code the session reports.
"""

from __future__ import annotations

import json
import math

from .errors import ErrorCode

#: Frames larger than this are refused before parsing (the service's own limit is 16 MB).
MAX_FRAME_BYTES = 16 * 1024 * 1024

#: Deepest JSON nesting accepted. Convai's payloads nest a handful of levels (blendshape frames
#: are lists of lists inside ``data``).
MAX_NESTING = 32


class FrameRejected(ValueError):
    """The frame is not acceptable JSON.

    Attributes:
        code: ``protocol.parse_failed`` (not UTF-8 JSON) or ``protocol.message_invalid``
            (too large, too deep, not text).
        detail: What is wrong, for the log and the ``SessionError`` message.
        raw: The frame as received (``str`` or ``bytes``), for the fault's excerpt.
    """

    def __init__(self, code: ErrorCode, detail: str, raw: str | bytes) -> None:
        super().__init__(detail)
        self.code, self.detail, self.raw = code, detail, raw


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # "1e400" parses to inf; the float hook is the one place to see it
        raise ValueError(f"number {text[:40]} overflows a float")
    return value


def _non_finite(name: str) -> float:
    raise ValueError(f"non-finite number {name} is not JSON")


#: One decoder for every frame: refuses NaN/Infinity literals and float overflow.
_JSON = json.JSONDecoder(parse_float=_finite_float, parse_constant=_non_finite)


_TOO_DEEP = f"JSON nested deeper than {MAX_NESTING} levels"


def _too_deep(value: object, text: str) -> bool:
    """True when ``value`` nests containers deeper than :data:`MAX_NESTING`."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return False  # cannot be that deep: skip the walk (the common case, big frames included)
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            return True
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def parse(raw: object) -> tuple[object, str]:
    """Parse one frame.

    Args:
        raw: ``str``, or UTF-8 ``bytes``/``bytearray``/``memoryview``.

    Returns:
        ``(json_value, text)``: the parsed value (any JSON type) and the frame as text.

    Raises:
        FrameRejected: with ``protocol.parse_failed`` or ``protocol.message_invalid``.
    """
    if isinstance(raw, (bytearray, memoryview)):
        raw = bytes(raw)
    if isinstance(raw, bytes):
        if len(raw) > MAX_FRAME_BYTES:
            raise FrameRejected(ErrorCode.PROTOCOL_MESSAGE_INVALID, "frame exceeds 16 MB", raw)
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameRejected(ErrorCode.PROTOCOL_PARSE_FAILED, "frame is not UTF-8 text", raw) from None
    if not isinstance(raw, str):
        raise FrameRejected(ErrorCode.PROTOCOL_MESSAGE_INVALID, f"frame is {type(raw).__name__}, not text", "")
    if len(raw) * 4 > MAX_FRAME_BYTES and len(raw.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise FrameRejected(ErrorCode.PROTOCOL_MESSAGE_INVALID, "frame exceeds 16 MB", raw)
    try:
        value = _JSON.decode(raw)
    except ValueError as exc:  # JSONDecodeError, our float/constant hooks, int digit limit
        raise FrameRejected(ErrorCode.PROTOCOL_PARSE_FAILED, f"invalid JSON: {exc}", raw) from None
    except RecursionError:
        raise FrameRejected(ErrorCode.PROTOCOL_MESSAGE_INVALID, _TOO_DEEP, raw) from None
    if _too_deep(value, raw):
        raise FrameRejected(ErrorCode.PROTOCOL_MESSAGE_INVALID, _TOO_DEEP, raw)
    return value, raw
