"""One simulated session: its public face (:class:`SimSession`) and its loop-side plumbing.

Public attributes (``session_id``, ``character_session_id``, ``api_key``, ``end_user_id``, ``received``,
``close_code``, ``close_reason``, ``transport``, ``room_name``, ``received_audio_seconds``) may be read from
any thread. Everything with a leading underscore, and every method, is used on the simulator's loop thread
only. Per-session state is kept small (a handful of fields, timer handles instead of tasks) so thousands of
sessions stay cheap.

A client that stops reading cannot stall the simulator: the session's carrier (``simulator.core.carrier``) gives
every send, and the goodbye, a deadline of ``send_timeout`` seconds; a send that misses it drops the session
as a slow consumer (the connection is dropped and the session's end callback frees its slot). The frames a
session records are bounded too (:data:`MAX_RECORDED_CHARS`).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from simulator.core import wire
from simulator.core.carrier import SlowConsumer
from simulator.core.character import Turn
from simulator.core.characters import CharacterDefinition
from simulator.core.context import ContextError, ContextState
from simulator.core.features import ActionSettings, Blendshapes, Features

if TYPE_CHECKING:
    from simulator.core.accounts import Conversation
    from simulator.core.carrier import Carrier
    from simulator.core.scenario import Scenario

logger = logging.getLogger("simulator.sessions")


class ScenarioHook(Protocol):
    """What the core tells the scenario running on its sessions (``simulator.core.runner.ScenarioRunner``, which
    sits above the core's state and is installed by ``simulator.core.runner.set_scenario``). Loop thread only."""

    @property
    def scenario(self) -> Scenario:
        """The scenario being run."""

    def session_opened(self, session: SimSession) -> None:
        """``session``'s connection opened: arm its timed chains."""

    def message_handled(self, session: SimSession, msg_type: str) -> None:
        """``session`` handled a client message of ``msg_type``."""

#: Default seconds one frame may wait for a client to read before the session is dropped.
DEFAULT_SEND_TIMEOUT = 5.0
#: Close code and reason recorded for a session dropped as a slow consumer (no close frame is sent:
#: the client is not reading; 1006 is RFC 6455's "closed abnormally").
SLOW_CONSUMER_CODE = 1006
SLOW_CONSUMER_REASON = "slow consumer"
#: Characters of client frames a live session keeps in ``received`` (oldest dropped first; each frame
#: also counts :data:`RECORD_OVERHEAD`), and what an ended session keeps.
MAX_RECORDED_CHARS = 1024 * 1024
ENDED_RECORDED_CHARS = 64 * 1024
RECORD_OVERHEAD = 64


class Phase(enum.Enum):
    """Where a session is in its life."""

    PENDING = "pending"  # /connect succeeded, WebSocket not open yet (holds a slot)
    OPEN = "open"  # WebSocket open
    ENDED = "ended"  # slot freed; WebSocket closed or closing


def mask_key(api_key: str) -> str:
    """An API key as logs and reprs show it: always ``"***"``."""
    return "***" if api_key else ""


class SimSession:
    """A session of the simulated service, as tests see it."""

    def __init__(
        self,
        session_id: str,
        character_session_id: str,
        api_key: str,
        character_id: str,
        end_user_id: str | None,
        conversation: Conversation,
        *,
        tts_enabled: bool = True,
        send_bot_ready: bool = True,
        transport: str = "websocket",
        room_name: str | None = None,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        on_slow_consumer: Callable[[SimSession], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.character_session_id = character_session_id
        self.api_key = api_key
        self.character_id = character_id
        self.end_user_id = end_user_id
        # Client frames as text: strings are not tracked by the garbage collector, so thousands of busy
        # sessions do not lengthen GC pauses; ``received`` decodes them on demand.
        self._received_text: list[str] = []
        self._received_cost = 0
        self._received_total = 0
        #: Close code / reason the session ended with (None while live).
        self.close_code: int | None = None
        self.close_reason: str | None = None
        #: ``"websocket"`` (the ``/chat`` WebSocket) or ``"livekit"`` (a LiveKit room named ``room_name``).
        self.transport = transport
        self.room_name = room_name
        #: Seconds of user audio received so far (LiveKit microphone track); a float, updated on the loop.
        self.received_audio_seconds = 0.0
        # ---- loop-thread only
        self._phase = Phase.PENDING
        #: The character definition this session connected to (the core sets it at ``/connect``).
        self._character = CharacterDefinition(id=character_id)
        self._carrier: Carrier | None = None
        self._conversation = conversation
        self._send_bot_ready = send_bot_ready
        self._tts_enabled = tts_enabled
        self._stt_muted = False
        self._usage_tracking = False
        self._context = ContextState()
        self._template_keys: dict[str, str] = {}
        #: The ``/connect`` feature fields; the action config in force (``context-update`` replaces it);
        #: the narrative section the story is in (None: the character has no narrative).
        self._features = Features()
        self._actions = ActionSettings()
        self._section: str | None = None
        #: A voice made for a turn's lip-sync, (text, (pcm, rate)), used once by the carrier's ``speak``.
        self._voice_cache: tuple[str, tuple[bytes, int]] | None = None
        #: Turns that carried lip-sync so far (``neurosync_turn_id``).
        self._lipsync_turns = 0
        self._scene_metadata: list[Any] = []
        self._handles: dict[str, asyncio.TimerHandle] = {}
        self._turn_task: asyncio.Task[None] | None = None
        self._close_task: asyncio.Task[Any] | None = None
        self._turn: Turn | None = None
        self._idle_deadline = 0.0
        self._idle_warning_index = 0
        self._waiters: list[tuple[str, asyncio.Future[Any]]] | None = None
        #: The scenario this session runs (set when its WebSocket opens) and its message counts.
        self._runner: ScenarioHook | None = None
        self._msg_counts: dict[str, int] | None = None
        self._send_timeout = send_timeout
        #: Called once when a send misses its deadline (the core ends the session); None: abort only.
        self._on_slow_consumer = on_slow_consumer

    def _apply_features(self, features: Features) -> None:
        """Start the session with its ``/connect`` feature fields and its character's defaults."""
        character = self._character
        self._features = features
        self._template_keys.update(features.template_keys)
        self._actions = features.actions or ActionSettings(
            character.actions, tuple(o.name for o in character.objects), tuple(c.name for c in character.characters))
        self._section = None if character.narrative is None else character.narrative.start
        try:
            if features.dynamic_static_text:
                self._context.set_static(features.dynamic_static_text)
            if features.dynamic_text:
                self._context.replace(features.dynamic_text)
        except ContextError as exc:
            logger.info("session %s: dynamic_info not applied: %s", self.session_id, exc)

    @property
    def narrative_section_id(self) -> str | None:
        """The narrative section the session's story is in (None: its character has no narrative)."""
        return self._section

    @property
    def blendshapes(self) -> Blendshapes | None:
        """The lip-sync frames this session gets (None: none), from ``blendshape_config`` and the character."""
        wanted = self._features.blendshapes
        return wanted if wanted is not None and self._character.lipsync else None

    def __repr__(self) -> str:
        return (
            f"SimSession(session_id={self.session_id!r}, character_session_id="
            f"{self.character_session_id!r}, api_key={mask_key(self.api_key)!r}, "
            f"transport={self.transport!r}, phase={self._phase.value!r}, received={self.received_count})"
        )

    @property
    def received(self) -> list[Any]:
        """Decoded client frames (JSON values exactly as sent), in arrival order (a fresh list).

        The most recent frames only: about :data:`MAX_RECORDED_CHARS` characters of them while the
        session is live (and always its latest frame), at most :data:`ENDED_RECORDED_CHARS` once it ended.
        """
        return [json.loads(text) for text in list(self._received_text)]

    @property
    def received_count(self) -> int:
        """How many JSON client frames the session has received (all of them, kept or not)."""
        return self._received_total

    @property
    def is_open(self) -> bool:
        """True while the session's WebSocket is open (a snapshot; the loop may change it)."""
        return self._phase is Phase.OPEN

    @property
    def turn_count(self) -> int:
        """Turns in this conversation so far (resumes included)."""
        return self._conversation.turn_count

    # ------------------------------------------------------------------ loop-side plumbing

    def _attach(self, carrier: Carrier) -> None:
        self._carrier = carrier
        self._phase = Phase.OPEN

    def _replace_carrier(self, carrier: Carrier) -> None:
        """Carry an open session on a new connection (a LiveKit participant joining again)."""
        self._carrier = carrier

    def _record(self, text: str, decoded: Any) -> None:
        """Append a client frame (its text and decoded value) and wake anyone waiting for its type."""
        self._received_text.append(text)
        self._received_total += 1
        self._received_cost += len(text) + RECORD_OVERHEAD
        if self._received_cost > MAX_RECORDED_CHARS:
            # Trim to three quarters so a long-lived session does not trim on every frame.
            self._trim_record(MAX_RECORDED_CHARS * 3 // 4)
        if not self._waiters:
            return
        msg_type = wire.message_type_of(decoded)
        remaining: list[tuple[str, asyncio.Future[Any]]] = []
        for wanted, future in self._waiters:
            if future.done():
                continue
            if wanted == msg_type:
                future.set_result(decoded)
            else:
                remaining.append((wanted, future))
        self._waiters = remaining

    def _trim_record(self, budget: int, *, keep_latest: bool = True) -> None:
        """Forget the oldest recorded frames until they cost at most ``budget`` (a live session keeps its
        latest frame whatever its size, so a wait for it always finds it)."""
        frames = self._received_text
        drop, cost = 0, self._received_cost
        while cost > budget and drop < len(frames) - (1 if keep_latest else 0):
            cost -= len(frames[drop]) + RECORD_OVERHEAD
            drop += 1
        if drop:
            # One slice deletion: ``received`` may copy the list from another thread meanwhile.
            del frames[:drop]
            self._received_cost = cost

    def _find_received(self, msg_type: str) -> Any | None:
        for text in self._received_text:
            frame = json.loads(text)
            if wire.message_type_of(frame) == msg_type:
                return frame
        return None

    def _add_waiter(self, msg_type: str, future: asyncio.Future[Any]) -> None:
        if self._waiters is None:
            self._waiters = []
        self._waiters.append((msg_type, future))

    def _set_timer(self, name: str, handle: asyncio.TimerHandle) -> None:
        old = self._handles.pop(name, None)
        if old is not None:
            old.cancel()
        self._handles[name] = handle

    def _cancel_timer(self, name: str) -> None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _cancel_all_timers(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    async def _send(self, frame: wire.JsonDict) -> bool:
        """Send one frame; False (logged at debug) when the socket is gone."""
        return await self._send_text(wire.encode(frame))

    async def _send_text(self, text: str) -> bool:
        """Send one text frame within the send deadline; False when the session can no longer send."""
        carrier = self._carrier
        if carrier is None:
            return False
        try:
            return await carrier.send_text(text)
        except SlowConsumer:
            self._slow_consumer()
            return False

    def _slow_consumer(self) -> None:
        """A send missed its deadline: drop the session (once, however many sends were waiting)."""
        if self._phase is not Phase.OPEN:
            return
        logger.warning("session %s dropped as a slow consumer: a frame waited more than %.1f s for the "
                       "client to read", self.session_id, self._send_timeout)
        if self._on_slow_consumer is not None:
            self._on_slow_consumer(self)
        else:
            self._phase = Phase.ENDED
            self._abort(SLOW_CONSUMER_REASON)

    async def _close(self, code: int, reason: str) -> None:
        """End the connection for ``code`` / ``reason``: the carrier maps them onto its wire, and bounds the
        goodbye (a client that does not take it within its deadline has its connection dropped)."""
        if self._carrier is not None:
            await self._carrier.close(code, reason)

    def _abort(self, reason: str) -> None:
        """Drop the connection without a goodbye (also when a graceful close is pending)."""
        if self._carrier is None:
            logger.warning("session %s has no connection to abort", self.session_id)
            return
        self._carrier.abort(reason)
