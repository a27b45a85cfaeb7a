"""Faults injected into the REST gateway routes (token minting, extending, revoking, the memory API).

``Simulator.inject_rest_fault(operation, status, times)`` queues a status that answers the next
``times`` calls of ``operation``, with the gateway's error envelope ``{"ERROR": ...}`` (Convai REST API
docs; texts below, PROPOSED where the docs give none). Pure state; owned by the loop thread.
"""

from __future__ import annotations

import collections
from typing import Any

#: Every operation a fault can target.
OPERATIONS = ("mint", "extend", "revoke", "memory.list", "memory.add", "memory.get", "memory.delete",
              "memory.delete_all")

#: The gateway's documented texts where there is one.
MESSAGES: dict[int, str] = {
    400: "Bad request",
    401: "The request contains an invalid API key.",
    403: "Forbidden",
    404: "Not found",
    429: "API rate limit exceeded. Please try again later.",
    500: "Internal server error",
    503: "Service temporarily unavailable",
}


def envelope(status: int, message: str | None = None) -> dict[str, Any]:
    """The gateway's error body for ``status``."""
    return {"ERROR": message or MESSAGES.get(status, f"HTTP {status}")}


def check(operation: object, status: object, times: object) -> tuple[str, int, int]:
    """The checked ``(operation, status, times)``; ValueError naming a bad argument."""
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}; got {operation!r}")
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError(f"status must be an HTTP error status (an int 400..599), got {status!r}")
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ValueError(f"times must be a positive int, got {times!r}")
    assert isinstance(operation, str)
    return operation, status, times


class RestFaults:
    """Queued statuses per operation, each for a number of calls."""

    def __init__(self) -> None:
        self._queued: dict[str, collections.deque[list[int]]] = {}

    def add(self, operation: str, status: int, times: int) -> None:
        self._queued.setdefault(operation, collections.deque()).append([status, times])

    def take(self, operation: str) -> int | None:
        """The status answering this call of ``operation``, or None."""
        queue = self._queued.get(operation)
        if not queue:
            return None
        entry = queue[0]
        entry[1] -= 1
        if entry[1] <= 0:
            queue.popleft()
        return entry[0]

    def clear(self) -> None:
        self._queued.clear()

    def pending(self) -> int:
        return sum(times for queue in self._queued.values() for _, times in queue)
