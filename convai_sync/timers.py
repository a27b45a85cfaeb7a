"""The timers of a connected session: duration cap, idle deadline, keepalive.

Thread ownership: a :class:`SessionTimers` lives on the session thread (it arms timers of the
:class:`~convai_sync.loop.SessionLoop`, which fire there). Only ``idle_deadline_armed`` is read
from other threads (senders skip a thread hand-off when no local idle deadline is armed).

* Duration cap (``max_session_duration``): Convai has no per-session time limit, so the SDK ends
  the session at the cap, with ``SessionDurationWarning`` lead times before it.
* Idle deadline: Convai's ``user-idle-warning`` carries ``remaining_seconds`` and no separate
  timeout packet follows, so the SDK keeps a local deadline (warning time + remaining) and
  publishes ``UserIdleTimeoutElapsed`` when it passes, as the Convai Unity SDK's
  ``OnUserIdleTimeoutElapsed`` does. Any message the client sends resets the server's timer.
* Keepalive: a ping every ``keepalive_interval``; a link from which nothing arrived for
  ``keepalive_interval + keepalive_timeout`` is dropped as lost (the session's reconnect policy
  then takes over).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from . import events as ev
from .config import ConvaiConfig
from .errors import ErrorCode
from .hub import EventHub
from .loop import SessionLoop
from .transports.base import Transport

_IDLE = "idle_deadline"
_KEEPALIVE = "keepalive"
_DURATION = "duration"


class SessionTimers:
    """Duration cap, idle deadline and keepalive of one session (session thread only).

    Args:
        loop: The session loop whose timers these are.
        hub: Where warnings and the idle deadline are published.
        config: ``max_session_duration``, ``session_duration_warnings``,
            ``reset_duration_on_reconnect``, ``keepalive_interval``, ``keepalive_timeout``.
        end_session: Called at the cap with ``session.duration_limit_reached`` and a message.
        transport: Returns the session's current transport (None while it has none).
        stats: The session's counters (``keepalive_timeouts`` is incremented here).
    """

    def __init__(self, loop: SessionLoop, hub: EventHub, config: ConvaiConfig,
                 end_session: Callable[[ErrorCode, str], None], transport: Callable[[], Transport | None],
                 stats: dict[str, Any]) -> None:
        self._loop = loop
        self._hub = hub
        self._config = config
        self._end_session = end_session
        self._transport = transport
        self._stats = stats
        self._duration_started: float | None = None
        self.idle_deadline_armed = False

    # ---- lifecycle ----

    def connected(self, reconnected: bool) -> None:
        """The session reached CONNECTED: (re)start the duration clock and the keepalive."""
        self._start_duration(reset=not reconnected or self._config.reset_duration_on_reconnect)
        self._arm_keepalive()

    def link_down(self) -> None:
        """The transport went away (a drop, a teardown): no keepalive without a link."""
        self._loop.cancel_timer(_KEEPALIVE)

    def stop(self) -> None:
        """The session ended (DISCONNECTED or ERROR): cancel everything; the next session starts afresh."""
        self._loop.cancel_timers(_DURATION)
        self._loop.cancel_timer(_IDLE)
        self._loop.cancel_timer(_KEEPALIVE)
        self._duration_started = None
        self.idle_deadline_armed = False

    # ---- idle deadline ----

    def idle_warning(self, event: ev.UserIdleWarningReceived) -> None:
        """Arm the local idle deadline for a ``user-idle-warning``, then publish the warning."""
        remaining = float(event.remaining_seconds)
        deadline = event.timestamp + timedelta(seconds=remaining)
        warned_at = event.timestamp

        def elapsed() -> None:
            self.idle_deadline_armed = False
            self._hub.publish(ev.UserIdleTimeoutElapsed(warning_received_at=warned_at, deadline=deadline))
        self._loop.set_timer(_IDLE, remaining, elapsed)
        self.idle_deadline_armed = True  # senders then post note_activity (else they skip the wake-up)
        self._hub.publish(event)

    def note_activity(self) -> None:
        """The client sent a message, which resets the server's idle timer: clear the local deadline."""
        self.idle_deadline_armed = False
        self._loop.cancel_timer(_IDLE)

    def pop_idle_deadline(self) -> Callable[[], None] | None:
        """Disarm the idle deadline and return its callback (to report it before a disconnect)."""
        self.idle_deadline_armed = False
        return self._loop.pop_timer(_IDLE)

    # ---- keepalive ----

    def _arm_keepalive(self) -> None:
        interval = self._config.keepalive_interval
        if interval is not None:
            self._loop.set_timer(_KEEPALIVE, interval, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        transport = self._transport()
        interval = self._config.keepalive_interval
        if transport is None or interval is None:
            return
        last = transport.last_received
        silent = None if last is None else time.monotonic() - last
        if silent is not None and silent > interval + self._config.keepalive_timeout:
            self._stats["keepalive_timeouts"] += 1
            transport.abort(f"nothing received from the server for {silent:.1f} s (keepalive)")
            return
        transport.ping()
        self._arm_keepalive()

    # ---- duration cap ----

    def _start_duration(self, reset: bool) -> None:
        cap = self._config.max_session_duration
        if cap is None:
            return
        now = self._loop.clock.monotonic()
        if reset or self._duration_started is None:
            self._duration_started = now
        remaining = cap - (now - self._duration_started)
        for lead in self._config.session_duration_warnings:
            if lead < remaining:
                self._loop.set_timer(f"{_DURATION}_warn_{lead}", remaining - lead, self._warning(lead, cap))
        self._loop.set_timer(f"{_DURATION}_cap", remaining, lambda: self._end_session(
            ErrorCode.SESSION_DURATION_LIMIT_REACHED, f"max_session_duration of {cap:g} s reached"))

    def _warning(self, lead: float, cap: float) -> Callable[[], None]:
        def warn() -> None:
            self._hub.publish(ev.SessionDurationWarning(remaining_seconds=lead, max_session_duration=cap))
        return warn
