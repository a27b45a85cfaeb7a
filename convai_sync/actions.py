"""``ActionQueue``: the character's actions handed to a game loop in order, on the host's tick.

Thread notes: the queue's handler runs IMMEDIATE on the session thread (it only appends under a
lock); :meth:`ActionQueue.pop_ready` runs on the host's thread. Actions already delivered are not
retracted by an interruption (Convai "Character actions": "actions already delivered are not
retracted"), so an ``AudioInterrupted`` leaves the queue as it is.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

from .delivery import EventDeliveryPolicy
from .events import Action, ActionResponse

log = logging.getLogger("convai_sync")


class ActionQueue:
    """Collects every ``action-response`` of a client, in wire order, until the game takes them.

    Args:
        client: The :class:`~convai_sync.ConvaiClient` (anything with ``events.on_actions``).
        max_actions: Actions held at most (``int`` >= 1, default 1000); beyond it the oldest are
            dropped with a warning (a game that stopped ticking).

    Example::

        actions = ActionQueue(client)
        while running:                          # the game loop, any thread
            for action in actions.pop_ready():  # Action(name="Pick Up", target="sword")
                character.start(action.name, action.target)
    """

    def __init__(self, client: Any, max_actions: int = 1000) -> None:
        if isinstance(max_actions, bool) or not isinstance(max_actions, int) or max_actions < 1:
            raise ValueError(f"max_actions must be an int >= 1, got {max_actions!r}")
        self._lock = threading.Lock()
        self._actions: collections.deque[Action] = collections.deque()
        self._max = max_actions
        self.dropped = 0
        self._subscription = client.events.on_actions.subscribe(self._on_actions, EventDeliveryPolicy.IMMEDIATE)

    def _on_actions(self, response: ActionResponse) -> None:
        with self._lock:
            self._actions.extend(response.actions)
            excess = len(self._actions) - self._max
            for _ in range(max(0, excess)):
                self._actions.popleft()
            if excess > 0:
                self.dropped += excess
        if excess > 0:
            log.warning("ActionQueue over %d actions: dropped the %d oldest (pop_ready() not called?)",
                        self._max, excess)

    def pop_ready(self) -> list[Action]:
        """Every action received since the last call, oldest first (``[]`` when none)."""
        with self._lock:
            ready = list(self._actions)
            self._actions.clear()
        return ready

    def __len__(self) -> int:
        with self._lock:
            return len(self._actions)

    def close(self) -> None:
        """Stop collecting (unsubscribe); actions already held stay poppable."""
        self._subscription.unsubscribe()

    def __enter__(self) -> ActionQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
