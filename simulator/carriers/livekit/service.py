"""Per-simulator LiveKit state: the token issuer, every session's room, injected join refusals (loop thread).

``POST /connect`` with a LiveKit transport lands in :meth:`LiveKitService.admit`: the session is created by
the core exactly as a WebSocket session (slots, limits and faults apply the same way) and gets a room, a
participant identity (the ``end_user_id``, or ``user-<hex>``) and a JWT for it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
from typing import TYPE_CHECKING, Any

from simulator.carriers.livekit import faults
from simulator.carriers.livekit.carrier import LiveKitCarrier, LiveKitSession
from simulator.carriers.livekit.room import RoomState
from simulator.carriers.livekit.tokens import TokenIssuer
from simulator.core.features import Features

if TYPE_CHECKING:
    from simulator.core.state import SimCore

logger = logging.getLogger("simulator.livekit")

#: Rooms of ended sessions remembered (so a late join is refused with the reason, not "unknown room").
ENDED_ROOMS_KEPT = 1024


class LiveKitService:
    """The simulator's LiveKit side (created by ``simulator.carriers.livekit.install``; loop thread only)."""

    def __init__(self, core: SimCore) -> None:
        self.core = core
        self.tokens = TokenIssuer()
        self.rooms: collections.OrderedDict[str, LiveKitSession] = collections.OrderedDict()
        self._refusals: collections.deque[list[Any]] = collections.deque()
        #: An injected 404 also answers the client's fallback to ``/rtc`` (v0) that it triggers, as a
        #: server without the room would: otherwise the client reports the fallback's 400.
        self.fallback_refusal: tuple[int, str] | None = None
        self.carriers: set[LiveKitCarrier] = set()

    # ------------------------------------------------------------------ /connect

    def admit(
        self,
        session_id: str,
        host: str,
        api_key: str,
        character_id: str,
        character_session_id: str,
        end_user_id: str | None,
        metadata: Any,
        output: dict[str, Any],
        *,
        tts_enabled: bool,
        send_bot_ready: bool,
        request_trace_id: str,
        features: Features | None = None,
    ) -> dict[str, Any]:
        """Create a LiveKit session; returns the ``/connect`` answer (``room_url``, ``room_name``, ``token``)."""
        name = f"convai-room-{secrets.token_hex(8)}"
        identity = end_user_id or f"user-{secrets.token_hex(4)}"
        # The token first: a failure here must not leave a session holding a slot until the join window ends.
        token = self.tokens.issue(identity, name, self.core.config.token_ttl)
        session = self.core.create_session(session_id, api_key, character_id, character_session_id, end_user_id,
                                           tts_enabled=tts_enabled, send_bot_ready=send_bot_ready,
                                           transport="livekit", room_name=name, features=features)
        self.rooms[name] = LiveKitSession(session, RoomState(name, character_id, identity), output)
        self._forget_ended()
        logger.info("LiveKit session %s: room %s for %s", session.session_id, name, identity)
        return {
            "session_id": session.session_id,
            "request_trace_id": request_trace_id,
            "character_session_id": session.character_session_id,
            "room_url": f"ws://{host}",
            "room_name": name,
            "token": token,
            "end_user_id": end_user_id,
            "end_user_metadata": metadata,
        }

    def _forget_ended(self) -> None:
        ended = [name for name, lk in self.rooms.items() if lk.ended and lk.carrier is None]
        for name in ended[: max(0, len(ended) - ENDED_ROOMS_KEPT)]:
            del self.rooms[name]

    # ------------------------------------------------------------------ injected refusals

    def add_refusal(self, status: int, detail: str | None, times: int) -> None:
        """Answer the next ``times`` ``/rtc/v1`` joins with ``status`` (401/403/404/429)."""
        self._refusals.append([status, faults.refusal_text(status, detail), times])

    def next_refusal(self) -> tuple[int, str] | None:
        if not self._refusals:
            return None
        entry = self._refusals[0]
        entry[2] -= 1
        if entry[2] <= 0:
            self._refusals.popleft()
        refusal = int(entry[0]), str(entry[1])
        self.fallback_refusal = refusal if refusal[0] == 404 else None
        return refusal

    def queued_refusals(self) -> list[dict[str, Any]]:
        """The injected ``/rtc/v1`` refusals still queued (status, times left), for ``GET /_sim/state``."""
        return [{"status": entry[0], "times": entry[2]} for entry in self._refusals]

    def reset(self) -> None:
        """Forget queued refusals, ended rooms and every issued token (``POST /_sim/reset``; the sessions
        were already ended)."""
        self._refusals.clear()
        self.fallback_refusal = None
        for name in [name for name, lk in self.rooms.items() if lk.ended]:
            del self.rooms[name]
        self.tokens = TokenIssuer()

    # ------------------------------------------------------------------ lifecycle

    def connection_count(self) -> int:
        """Participant connections (signal WebSockets) open right now."""
        return len(self.carriers)

    def room_count(self) -> int:
        """Rooms held (live sessions' and up to :data:`ENDED_ROOMS_KEPT` ended ones')."""
        return len(self.rooms)

    async def shutdown(self, deadline: float) -> None:
        """Close every participant connection (their sessions were already ended with 1001)."""
        carriers = list(self.carriers)
        if carriers:
            await asyncio.wait([asyncio.ensure_future(c.dispose()) for c in carriers], timeout=deadline)
        self.carriers.clear()
