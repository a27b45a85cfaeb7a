"""Deadlines of blocking calls, and :class:`ReplyStream` (what ``ConvaiClient.stream()`` returns).

Every blocking public call measures its timeout from the call: a :class:`Deadline` is taken
first, and every wait inside the call uses what remains of it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError

from . import events as ev
from .errors import timeout_error
from .turns import Turn, TurnTracker


def check_timeout(name: str, value: float | None) -> float | None:
    """A timeout argument as seconds, or None for no deadline.

    ``inf`` and any value of ``threading.TIMEOUT_MAX`` seconds or more (beyond what a thread
    can wait for; a longer wait raises ``OverflowError``) mean no deadline, as None does.

    Raises:
        ValueError: a negative, NaN or non-number value (``bool`` included).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0 or None, got {value!r}")
    return None if value >= threading.TIMEOUT_MAX else float(value)


class Deadline:
    """A point in wall-clock (monotonic) time, ``timeout`` seconds from now; None: no deadline."""

    __slots__ = ("at",)

    def __init__(self, timeout: float | None) -> None:
        self.at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None without a deadline."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())


class ReplyStream(Iterator[ev.BotText]):
    """The chunks of one reply as they arrive (see :meth:`ConvaiClient.stream`).

    Iterate it on the calling thread; it ends at the end of the turn. :attr:`reply` holds the
    whole :class:`BotReply` once the iteration has ended; :meth:`close` stops waiting early:
    after it, and in a ``next()`` waiting on another thread when it is called, the iteration
    ends (``StopIteration``) and :attr:`reply` stays None.

    Raises (from ``next()``):
        ConvaiTimeoutError: the reply did not end before the deadline.
        ConvaiError: the session ended or failed while streaming.
    """

    def __init__(self, turn: Turn, deadline: Deadline, timeout: float | None, turns: TurnTracker,
                 after_wait: Callable[[], None], session_id: Callable[[], str | None]) -> None:
        self._turn = turn
        self._deadline = deadline
        self._timeout = timeout
        self._turns = turns
        self._after_wait = after_wait
        self._session_id = session_id
        self._index = 0
        self._closed = False
        self.reply: ev.BotReply | None = None

    def __next__(self) -> ev.BotText:
        if self._closed:
            raise StopIteration
        try:
            chunk = self._turn.wait_chunk(self._index, self._deadline.at)
        except CancelledError:  # close() was called while waiting
            raise StopIteration from None
        except TimeoutError:
            self._turns.abandon(self._turn)
            raise timeout_error(f"No complete reply arrived within {self._timeout} s.", self._session_id()) from None
        finally:
            self._after_wait()
        if chunk is None:
            self.reply = self._turn.future.result(0)
            raise StopIteration
        self._index += 1
        return chunk

    def close(self) -> None:
        """Stop waiting: the rest of the reply reaches the event channels only, and the iteration
        ends (a ``next()`` waiting on another thread returns at once). Idempotent."""
        self._closed = True
        if not self._turn.future.done():
            self._turns.abandon(self._turn)
