"""Retry, reconnect and slot-wait policies: immutable values with pure delay functions.

Numbers follow Convai's Unity SDK (PROTOCOL.md §2.7; seed 003): connect attempts 4 with delays
0, 1, 2, 4 s; reconnect at most 3 attempts; the Web SDK's advice to wait 5 s after
``SERVER_SHUTDOWN`` (seed 004). The session does the waiting (interruptibly, on its clock); these
objects only answer "may I try again, and after how long?".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .disconnect import DisconnectReason
from .errors import ErrorCode


def _default_retryable(code: ErrorCode) -> bool:
    return code.is_retried


@dataclass(frozen=True)
class RetryPolicy:
    """Connect attempts (seed 003: "4 attempts, delays 0, 1, 2, 4 s").

    Args:
        max_attempts: Total attempts including the first (>= 1).
        delays: Seconds to wait before attempt ``n`` (index ``n-1``); the last value repeats.
        retryable: Predicate on :class:`ErrorCode`; default: the code is on Convai's retry list.
    """

    max_attempts: int = 4
    delays: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    retryable: Callable[[ErrorCode], bool] = field(default=_default_retryable, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1")
        if not self.delays or any(d < 0 for d in self.delays):
            raise ValueError("RetryPolicy.delays must be a non-empty tuple of seconds >= 0")

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (1-based)."""
        return float(self.delays[min(attempt - 1, len(self.delays) - 1)])

    def should_retry(self, code: ErrorCode, attempts_made: int) -> bool:
        """True when another attempt is allowed after ``attempts_made`` failed with ``code``."""
        return attempts_made < self.max_attempts and self.retryable(code)


@dataclass(frozen=True)
class ReconnectPolicy:
    """Reconnects after an unexpected drop while CONNECTED (Unity ``ReconnectPolicy``).

    Args:
        max_attempts: Reconnect attempts before the state becomes ERROR (Unity default 3).
        delays: Seconds before attempt ``n``; the last value repeats.
        server_shutdown_delay: Minimum seconds before the first attempt after
            ``SERVER_SHUTDOWN`` (seed 004 advises 5 s).
        resume: Resume the same ``character_session_id`` (conversation history) on reconnect.
    """

    max_attempts: int = 3
    delays: tuple[float, ...] = (0.5, 1.0, 2.0)
    server_shutdown_delay: float = 5.0
    resume: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 0:
            raise ValueError("ReconnectPolicy.max_attempts must be >= 0")
        if not self.delays or any(d < 0 for d in self.delays) or self.server_shutdown_delay < 0:
            raise ValueError("ReconnectPolicy delays must be seconds >= 0")

    def delay_before(self, attempt: int, reason: DisconnectReason) -> float:
        """Seconds to wait before reconnect ``attempt`` (1-based) after a drop for ``reason``."""
        delay = float(self.delays[min(attempt - 1, len(self.delays) - 1)])
        if attempt == 1 and reason is DisconnectReason.SERVER_SHUTDOWN:
            delay = max(delay, self.server_shutdown_delay)
        return delay


@dataclass(frozen=True)
class SlotWaitPolicy:
    """Keep waiting while the plan's concurrency limit is reached (seed 000's "Please wait…").

    Args:
        max_wait: Give up (``ConcurrencyLimitError``) once this many seconds have been waited.
        interval: Seconds between attempts while the limit holds.
    """

    max_wait: float = 120.0
    interval: float = 5.0

    def __post_init__(self) -> None:
        if self.max_wait < 0 or self.interval <= 0:
            raise ValueError("SlotWaitPolicy needs max_wait >= 0 and interval > 0")

    def next_wait(self, waited: float) -> float | None:
        """Seconds to wait before the next try after ``waited`` seconds, or None to give up."""
        remaining = self.max_wait - waited
        if remaining <= 0:
            return None
        return min(self.interval, remaining)
