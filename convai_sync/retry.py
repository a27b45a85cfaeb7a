"""Retry, reconnect and slot-wait policies: immutable values with pure delay functions.

Numbers follow Convai's Unity SDK documentation ("Connection and API issues", docs.convai.com,
Unity SDK troubleshooting: connect attempts 4 with delays 0, 1, 2, 4 s; at most 3 reconnect
attempts) and the Web SDK's "Error Handling" page (wait 5 s after ``SERVER_SHUTDOWN``). The session
does the waiting (interruptibly, on its clock); these objects only answer "may I try again, and
after how long?".

Every field is validated at construction: a wrong type, ``bool`` where a number is expected,
NaN/infinity, a negative delay, a list instead of a tuple or a non-callable ``retryable`` raises
:class:`~convai_sync.errors.ConfigurationError` (``config.invalid``, also a ``ValueError``) naming
the field, e.g. ``"RetryPolicy.max_attempts must be an int in [1, 1000], got str '3'"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .disconnect import DisconnectReason
from .errors import ErrorCode
from .validation import check_fields, count, flag, function, number, rule, seconds_tuple, validated

#: Upper bound of any single retry/reconnect delay (an hour), so a typo cannot park a session.
MAX_DELAY = 3600.0
#: Upper bound of the total slot wait (a day).
MAX_SLOT_WAIT = 86400.0
#: Upper bound of attempt counts.
MAX_ATTEMPTS = 1000


def _default_retryable(code: ErrorCode) -> bool:
    return code.is_retried


@validated
@dataclass(frozen=True)
class RetryPolicy:
    """Connect attempts (Convai Unity SDK: "4 attempts, delays 0, 1, 2, 4 s").

    Args:
        max_attempts: Total attempts including the first, an ``int`` in [1, 1000].
        delays: ``tuple`` of seconds (finite, in [0, 3600], at least one) to wait before attempt
            ``n`` (index ``n-1``); the last value repeats.
        retryable: Predicate ``(ErrorCode) -> bool``; default: the code is on Convai's retry list.

    Raises:
        ConfigurationError: ``config.invalid`` for any invalid field.
    """

    max_attempts: int = field(default=4, metadata=rule(count(1, MAX_ATTEMPTS)))
    delays: tuple[float, ...] = field(default=(0.0, 1.0, 2.0, 4.0),
                                      metadata=rule(seconds_tuple(MAX_DELAY, low_open=False, min_items=1)))
    retryable: Callable[[ErrorCode], bool] = field(default=_default_retryable, compare=False,
                                                   metadata=rule(function()))

    def __post_init__(self) -> None:
        check_fields(self)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (1-based)."""
        return float(self.delays[min(attempt - 1, len(self.delays) - 1)])

    def should_retry(self, code: ErrorCode, attempts_made: int) -> bool:
        """True when another attempt is allowed after ``attempts_made`` failed with ``code``."""
        return attempts_made < self.max_attempts and self.retryable(code)


@validated
@dataclass(frozen=True)
class ReconnectPolicy:
    """Reconnects after an unexpected drop while CONNECTED (Unity ``ReconnectPolicy``).

    Args:
        max_attempts: Reconnect attempts before the state becomes ERROR, an ``int`` in [0, 1000]
            (Unity default 3; 0 = never reconnect).
        delays: ``tuple`` of seconds (finite, in [0, 3600], at least one) before attempt ``n``;
            the last value repeats.
        server_shutdown_delay: Minimum seconds (finite, in [0, 3600]) before the first attempt
            after ``SERVER_SHUTDOWN`` (Convai Web SDK "Error Handling" advises 5 s).
        resume: ``bool``: resume the same ``character_session_id`` (conversation history).

    Raises:
        ConfigurationError: ``config.invalid`` for any invalid field.
    """

    max_attempts: int = field(default=3, metadata=rule(count(0, MAX_ATTEMPTS)))
    delays: tuple[float, ...] = field(default=(0.5, 1.0, 2.0),
                                      metadata=rule(seconds_tuple(MAX_DELAY, low_open=False, min_items=1)))
    server_shutdown_delay: float = field(default=5.0, metadata=rule(number(0.0, MAX_DELAY, low_open=False)))
    resume: bool = field(default=True, metadata=rule(flag()))

    def __post_init__(self) -> None:
        check_fields(self)

    def delay_before(self, attempt: int, reason: DisconnectReason) -> float:
        """Seconds to wait before reconnect ``attempt`` (1-based) after a drop for ``reason``."""
        delay = float(self.delays[min(attempt - 1, len(self.delays) - 1)])
        if attempt == 1 and reason is DisconnectReason.SERVER_SHUTDOWN:
            delay = max(delay, self.server_shutdown_delay)
        return delay


@validated
@dataclass(frozen=True)
class SlotWaitPolicy:
    """Keep waiting while the plan's concurrency limit is reached (the "Please wait…" UX asked
    for on the Convai forum, "UX when Character Session Concurrency is reached").

    Args:
        max_wait: Give up (``ConcurrencyLimitError``) once this many seconds (finite, in
            [0, 86400]) have been waited.
        interval: Seconds (finite, in (0, 3600]) between attempts while the limit holds.

    Raises:
        ConfigurationError: ``config.invalid`` for any invalid field.
    """

    max_wait: float = field(default=120.0, metadata=rule(number(0.0, MAX_SLOT_WAIT, low_open=False)))
    interval: float = field(default=5.0, metadata=rule(number(0.0, MAX_DELAY)))

    def __post_init__(self) -> None:
        check_fields(self)

    def next_wait(self, waited: float) -> float | None:
        """Seconds to wait before the next try after ``waited`` seconds, or None to give up."""
        remaining = self.max_wait - waited
        if remaining <= 0:
            return None
        return min(self.interval, remaining)
