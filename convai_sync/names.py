"""How the SDK's public enums print: ``Type.NAME`` from ``str()``, ``format()`` and f-strings (no state)."""

from __future__ import annotations

import enum
from typing import cast

#: ``format()`` type codes that ask for a number: an integer enum still formats as its value with these.
_NUMERIC = frozenset("bcdoxXn")


class ReadableNames:
    """Mixed into every public enum: ``print(client.state)`` shows ``SessionState.CONNECTED``, never ``2``.

    ``str()``, ``format()`` and f-strings give ``<Type>.<NAME>`` on every Python version (3.11 made
    ``IntEnum.__str__`` the bare number; a ``str`` enum printed its value). ``.value`` is the wire or
    numeric value (e.g. ``ErrorCode.CONNECTION_TIMEOUT.value == "connection.timeout"``), ``.name`` the
    bare name. A numeric format spec (``f"{reason:d}"``) still formats an integer enum's value.
    """

    def __str__(self) -> str:
        member = cast(enum.Enum, self)
        return f"{type(member).__name__}.{member.name}"

    def __format__(self, spec: str) -> str:
        value = cast(enum.Enum, self).value
        if spec[-1:] in _NUMERIC and isinstance(value, int):
            return format(value, spec)
        return format(str(self), spec)
