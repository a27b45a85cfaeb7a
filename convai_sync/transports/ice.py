"""Why a LiveKit join can gather no ICE candidate, in a sentence that names the fix (any thread; no state)."""

from __future__ import annotations

from .. import loopback


def no_ice_candidate_hint() -> str | None:
    """A sentence for a stalled LiveKit join when this process can gather no ICE candidate, else None.

    libwebrtc (inside the ``livekit`` wheel) gathers host candidates only on interfaces that are up and
    not loopback; when :func:`convai_sync.loopback.ice_interfaces` finds none, the join can never
    complete. ``None`` when some interface qualifies or it cannot be determined (not Linux).
    """
    if loopback.ice_interfaces() != []:
        return None
    return ("This machine's only network is loopback, which libwebrtc ignores, so a LiveKit join from this "
            "process gathers no ICE candidate and cannot complete. Run the process under the loopback helper "
            "(Linux): call convai_sync.loopback.ensure_loopback_preload() first thing, or use a machine with a "
            "network interface.")
