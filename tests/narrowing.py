"""Reads that mypy does not narrow.

mypy keeps the type an ``assert`` narrowed a property to across later method calls: after
``assert client.state is SessionState.CONNECTING`` and ``client.disconnect()``, it takes
``client.state is SessionState.DISCONNECTED`` for an impossible comparison and the rest of the test
for unreachable code, which it then does not check (python/mypy#9457). A test that asserts a state
*change* reads the new state through a call, which starts from the declared type again.
"""

from __future__ import annotations

from convai_sync import ConvaiClient, SessionState


def state_of(client: ConvaiClient) -> SessionState:
    """``client.state`` now."""
    return client.state


def section_of(client: ConvaiClient) -> str | None:
    """``client.narrative_section_id`` now."""
    return client.narrative_section_id
