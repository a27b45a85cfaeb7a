"""Proof that a game host kept to its engine's rule: engine calls and SDK handlers on the main thread only.

pygame (SDL) must be driven from the thread that initialised it, and so must most engines' APIs.
:class:`ThreadGuard` records, for every named call site (each event handler, each function that
calls pygame), which threads it ran on, so a host can check the rule instead of assuming it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ThreadGuard:
    """Records the thread of every call to :meth:`check`, per call-site name.

    ``check`` is cheap (a dict lookup and a set add on the common path), so it can sit in every
    frame's pygame calls. It only records; :meth:`violations` says what ran off the owner thread.
    """

    def __init__(self, owner: threading.Thread | None = None) -> None:
        self.owner = owner or threading.current_thread()
        self._sites: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()  # check() may be called from a wrong thread: that is what it finds

    def check(self, site: str) -> None:
        """Record one call at ``site`` on the calling thread."""
        name = threading.current_thread().name
        with self._lock:
            counts = self._sites.setdefault(site, {})
            counts[name] = counts.get(name, 0) + 1

    def wrap(self, site: str, handler: Callable[[T], Any]) -> Callable[[T], Any]:
        """``handler`` with a :meth:`check` at ``site`` before each call."""
        @functools.wraps(handler)
        def checked(event: T) -> Any:
            self.check(site)
            return handler(event)
        return checked

    def sites(self) -> dict[str, dict[str, int]]:
        """``{site: {thread name: calls}}`` so far."""
        with self._lock:
            return {site: dict(counts) for site, counts in self._sites.items()}

    def violations(self) -> dict[str, list[str]]:
        """``{site: [thread names other than the owner's]}`` for every site that ran elsewhere."""
        owner = self.owner.name
        return {site: sorted(t for t in counts if t != owner)
                for site, counts in self.sites().items() if set(counts) - {owner}}
