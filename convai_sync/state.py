"""Session states (Convai Unity SDK ``SessionState``) and the one allowed-transition table.

Source: Convai Unity SDK docs, "Session events" (docs.convai.com,
convai-unity-sdk/scripting-reference/session-events).

Transitions::

    DISCONNECTED -> CONNECTING -> CONNECTED -> RECONNECTING -> CONNECTED
    CONNECTING -> ERROR | DISCONNECTED (cancelled)     RECONNECTING -> ERROR | DISCONNECTED
    CONNECTED -> DISCONNECTING -> DISCONNECTED         CONNECTED -> DISCONNECTED (drop, no retry)
    ERROR -> DISCONNECTED (reset by disconnect())
"""

from __future__ import annotations

import enum

from .names import ReadableNames


class SessionState(ReadableNames, enum.IntEnum):
    """Lifecycle state of a session, with Convai's numeric values."""

    DISCONNECTED = 0
    CONNECTING = 1
    CONNECTED = 2
    RECONNECTING = 3
    DISCONNECTING = 4
    ERROR = 5

    def is_connected(self) -> bool:
        """CONNECTED or RECONNECTING."""
        return self in (SessionState.CONNECTED, SessionState.RECONNECTING)

    def is_transitioning(self) -> bool:
        """CONNECTING, RECONNECTING or DISCONNECTING."""
        return self in (SessionState.CONNECTING, SessionState.RECONNECTING, SessionState.DISCONNECTING)

    def is_stable(self) -> bool:
        """DISCONNECTED, CONNECTED or ERROR."""
        return self in (SessionState.DISCONNECTED, SessionState.CONNECTED, SessionState.ERROR)

    def can_accept_input(self) -> bool:
        """CONNECTED only: the transport is joined and the character sent ``bot-ready``."""
        return self is SessionState.CONNECTED


S = SessionState

#: state -> states it may move to. Every transition in the SDK is checked against this table.
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    S.DISCONNECTED: frozenset({S.CONNECTING}),
    S.CONNECTING: frozenset({S.CONNECTED, S.ERROR, S.DISCONNECTING, S.DISCONNECTED}),
    S.CONNECTED: frozenset({S.DISCONNECTING, S.RECONNECTING, S.DISCONNECTED}),
    S.RECONNECTING: frozenset({S.CONNECTED, S.ERROR, S.DISCONNECTING, S.DISCONNECTED}),
    S.DISCONNECTING: frozenset({S.DISCONNECTED}),
    S.ERROR: frozenset({S.DISCONNECTED}),
}
del S


class IllegalTransition(RuntimeError):
    """An internal bug: a transition the table does not allow was attempted."""


def check_transition(old: SessionState, new: SessionState) -> None:
    """Raise :class:`IllegalTransition` unless ``old -> new`` is in :data:`TRANSITIONS`."""
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"{old.name} -> {new.name} is not an allowed transition")
