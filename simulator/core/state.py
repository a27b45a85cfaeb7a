"""The simulator's loop-side state: sessions, slots, timers, injected faults and session endings.

:class:`SimCore` is created and used on the loop thread only (the public :class:`simulator.Simulator`
marshals onto it). Timers are ``loop.call_later`` handles, so a session costs no task while it waits.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import json
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.core import faults, wire
from simulator.core.accounts import DEFAULT_MAX_CONVERSATIONS, Accounts, Limits
from simulator.core.character import Responder
from simulator.core.characters import CharacterDefinition
from simulator.core.faults import ConnectFault, LiveFault, LiveKind
from simulator.core.features import Features
from simulator.core.ice import TurnServer
from simulator.core.ltm import SessionMemory
from simulator.core.replay import Replay
from simulator.core.restfaults import RestFaults
from simulator.core.sessions import (
    DEFAULT_SEND_TIMEOUT,
    ENDED_RECORDED_CHARS,
    SLOW_CONSUMER_CODE,
    SLOW_CONSUMER_REASON,
    Phase,
    ScenarioHook,
    SimSession,
)
from simulator.core.store import LocalPlanStore, PlanStore, Refusal
from simulator.core.tokens import TokenStore
from simulator.core.toxics import ToxicRegistry

if TYPE_CHECKING:
    from simulator.core.carrier import Carrier, LiveKitSide
    from simulator.core.scenario import Scenario

logger = logging.getLogger("simulator.core")

IDLE_TIMEOUT_REASON = "Idle timeout"
SHUTDOWN_REASON = "Server shutting down"
#: Ended sessions remembered for ``wait_for_received`` and expired-token WS answers.
RECENT_LIMIT = 1024

#: The character's voice: reply text -> (PCM16 mono bytes, sample rate in Hz).
Synthesizer = Callable[[str], tuple[bytes, int]]
#: The character's ears: (PCM16 bytes, sample rate in Hz, channels) -> the user's words.
Transcriber = Callable[[bytes, int, int], str]


@dataclass(frozen=True)
class SimConfig:
    """Everything configurable about one simulator (``None`` = unlimited / off). Keys and the control
    token stay out of its repr."""

    api_keys: tuple[str, ...] = field(default=("sim-api-key",), repr=False)
    characters: tuple[str, ...] = ("sim-character",)
    #: One definition per id of ``characters`` (a plain id gets the default definition).
    definitions: tuple[CharacterDefinition, ...] = ()
    limits: Limits = field(default_factory=Limits)
    idle_timeout: float | None = None
    idle_warning_lead: float | None = None
    idle_warning_interval: float = 60.0
    token_ttl: float | None = None
    bot_ready_delay: float = 0.0
    responder: Responder | None = None
    chunk_delay: float = 0.0
    join_window: float = 10.0
    control_token: str = field(default="", repr=False)
    #: What a ``/connect`` without ``transport`` gets (the real service's default is ``"livekit"``).
    transport_default: str = "livekit"
    synthesizer: Synthesizer | None = None
    transcriber: Transcriber | None = None
    #: Voice replies on the ``/chat`` WebSocket too, as binary Pipecat ``Frame.audio``
    #: (``simulator.carriers.websocket.voice``).
    websocket_audio: bool = False
    #: Addresses the LiveKit side gathers and advertises as ICE host candidates.
    livekit_host_addresses: tuple[str, ...] = ("127.0.0.1",)
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    max_conversations: int = DEFAULT_MAX_CONVERSATIONS
    #: The directory ``POST /_sim/scenario`` may load scenario files from (None: no files at all).
    scenario_dir: Path | None = None
    #: TURN servers the LiveKit JoinResponse advertises and the simulator's peer uses (``simulator.core.ice``).
    ice_servers: tuple[TurnServer, ...] = ()
    #: Browser origins allowed besides loopback ones (``simulator.http.cors``).
    cors_origins: tuple[str, ...] = ()
    #: ``"top-level"`` or ``"server-message"``: the form of the event types in :data:`TOP_LEVEL_TYPES`.
    message_form: str = wire.TOP_LEVEL
    #: Auth tokens (``simulator.core.tokens``): lifetime, single use, and the clock they age on (None: the loop's).
    auth_token_ttl: float = 3600.0
    single_use_tokens: bool = True
    clock: Callable[[], float] | None = None
    #: Where the plan state shared by worker processes lives: None (this process only) or ``redis://HOST:PORT/DB``.
    state_url: str | None = field(default=None, repr=False)
    #: Seconds a Redis-held slot lives without its worker's heartbeat (a dead worker's slots free within this).
    slot_lease: float = 15.0


def _shared_fault(payload: str) -> ConnectFault | None:
    """A connect fault queued in a shared store (JSON ``[code, details]``, as ``POST /_sim/inject`` took it)."""
    code, details = json.loads(payload)
    fault = faults.resolve(code, details, over_http=True)
    return fault if isinstance(fault, ConnectFault) else None


class SimCore:
    """All mutable simulator state; loop thread only."""

    def __init__(self, config: SimConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.accounts = Accounts(config.api_keys, config.characters, config.limits, clock=loop.time,
                                 max_conversations=config.max_conversations)
        #: The cross-session plan state (``simulator.core.store``): this process's, or Redis's shared by workers.
        #: Auth tokens and memories live there too (``PlanStore.mint_token``, ``PlanStore.memories``...).
        self.store: PlanStore = LocalPlanStore(
            self.accounts, TokenStore(config.clock or loop.time, config.auth_token_ttl, config.single_use_tokens))
        if config.state_url is not None:
            from simulator.core.redis_store import RedisStore  # only with --state (needs the redis package)

            self.store = RedisStore(config.state_url, self.accounts, config.slot_lease,
                                    token_ttl=config.auth_token_ttl, single_use_tokens=config.single_use_tokens)
        #: ``host:port`` that names this worker in ``room_url``s (None: the host the client asked).
        self.advertise: str | None = None
        self.definitions: dict[str, CharacterDefinition] = {d.id: d for d in config.definitions}
        self.sessions: dict[str, SimSession] = {}
        self.recent: collections.OrderedDict[str, SimSession] = collections.OrderedDict()
        self.connect_faults: collections.deque[list[Any]] = collections.deque()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None
        #: Thread-name prefix of this simulator's responder workers (joined by Simulator.stop()).
        self.responder_prefix = f"sim-responder-{id(self):x}"
        self.host = "127.0.0.1"
        self.port = 0
        self._open_waiters: list[asyncio.Future[SimSession]] = []
        self._slot_waiters: list[tuple[str | None, int, asyncio.Future[None]]] = []
        self._opened: list[SimSession] = []
        #: The scenario sessions opening from now on run (``simulator.core.runner.set_scenario``); None: none.
        self.runner: ScenarioHook | None = None
        #: The LiveKit side when its extra is installed (``simulator.carriers.livekit.service.LiveKitService``, set
        #: by ``simulator.carriers.livekit.install`` when the server is composed).
        self.livekit: LiveKitSide | None = None
        #: Long-Term Memory at work: what LTM sessions hear, extract at their end and recall (from the store).
        self.ltm = SessionMemory(self.store)
        self.rest_faults = RestFaults()
        #: Active network faults (``simulator.core.toxics``); the carriers carry them out.
        self.toxics = ToxicRegistry()
        #: What ``simulator.core.snapshot.reset`` restores: the configuration and scenario at start.
        self.initial_config = dataclasses.replace(config, limits=dataclasses.replace(config.limits))
        self.initial_scenario: Scenario | None = None
        #: The recording this simulator replays (``simulator.core.replay``); None: the character answers.
        self.replay: Replay | None = None

    # ------------------------------------------------------------------ helpers

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a tracked task; its exception, if any, is logged."""
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("simulator task failed", exc_info=task.exception())

    def open_sessions(self) -> list[SimSession]:
        return [s for s in self.sessions.values() if s._phase is Phase.OPEN]

    def lookup(self, session_id: str) -> SimSession | None:
        return self.sessions.get(session_id) or self.recent.get(session_id)

    def character(self, character_id: str) -> CharacterDefinition:
        """The definition of ``character_id`` (the default one for an id defined without a definition)."""
        definition = self.definitions.get(character_id)
        return CharacterDefinition(id=character_id) if definition is None else definition

    def define_characters(self, definitions: tuple[CharacterDefinition, ...]) -> None:
        """Add or replace character definitions (sessions already live keep the definition they started with)."""
        for definition in definitions:
            self.definitions[definition.id] = definition
        known = self.accounts.characters
        self.accounts.characters = known + tuple(d.id for d in definitions if d.id not in known)

    def responder_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self.executor is None:
            self.executor = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix=self.responder_prefix)
        return self.executor

    # ------------------------------------------------------------------ connect faults

    def add_connect_fault(self, fault: ConnectFault, times: int) -> None:
        self.connect_faults.append([fault, times])

    def next_connect_fault(self) -> ConnectFault | None:
        """Consume one use of the oldest queued connect fault."""
        if not self.connect_faults:
            return None
        entry = self.connect_faults[0]
        entry[1] -= 1
        if entry[1] <= 0:
            self.connect_faults.popleft()
        fault: ConnectFault = entry[0]
        return fault

    async def take_connect_fault(self) -> ConnectFault | None:
        """Consume one use of the oldest connect fault queued here, else of one queued in a shared store (by the
        control API of any worker)."""
        fault = self.next_connect_fault()
        if fault is not None or not self.store.shared:
            return fault
        payload = await self.store.pop_connect_fault()
        return None if payload is None else _shared_fault(payload)

    async def shared_connect_faults(self) -> list[tuple[ConnectFault, int]]:
        """The connect faults queued in a shared store (none without one), with their uses left, oldest first."""
        if not self.store.shared:
            return []
        queued = [(_shared_fault(payload), uses) for payload, uses in await self.store.connect_faults()]
        return [(fault, uses) for fault, uses in queued if fault is not None]

    # ------------------------------------------------------------------ lifecycle

    async def admit(self, api_key: str, end_user_id: str | None, *, take: bool = True) -> Refusal | str:
        """The plan's checks and, when they pass (and ``take``), a slot: returns the new session's id, or why it
        was refused."""
        session_id = str(uuid.uuid4())
        refusal = await self.store.admit(api_key, end_user_id, session_id, take=take)
        if refusal is not None:
            return refusal
        self._notify_slots()
        return session_id

    def create_session(
        self,
        session_id: str,
        api_key: str,
        character_id: str,
        character_session_id: str,
        end_user_id: str | None,
        *,
        tts_enabled: bool,
        send_bot_ready: bool,
        transport: str = "websocket",
        room_name: str | None = None,
        features: Features | None = None,
    ) -> SimSession:
        """Register the session :meth:`admit` took slot ``session_id`` for, and start its join / token timers."""
        conversation = self.accounts.conversation(character_session_id, api_key, character_id)
        session = SimSession(
            session_id,
            character_session_id,
            api_key,
            character_id,
            end_user_id,
            conversation,
            tts_enabled=tts_enabled,
            send_bot_ready=send_bot_ready,
            transport=transport,
            room_name=room_name,
            send_timeout=self.config.send_timeout,
            on_slow_consumer=self._drop_slow_consumer,
            message_form=self.config.message_form,
        )
        session._character = self.character(character_id)
        session._apply_features(features or Features())
        self.sessions[session.session_id] = session
        session._set_timer("join", self.loop.call_later(self.config.join_window, self._join_expired, session))
        if self.config.token_ttl is not None:
            session._set_timer("ttl", self.loop.call_later(self.config.token_ttl, self._token_expired, session))
        logger.info("session %s created", session.session_id)
        return session

    def open_session(self, session: SimSession, carrier: Carrier) -> None:
        """The session's connection opened (WebSocket, or LiveKit join): stop the join timer, start idling,
        wake waiters."""
        session._cancel_timer("join")
        session._attach(carrier)
        self.arm_idle(session)
        self._opened.append(session)
        if len(self._opened) > RECENT_LIMIT:
            del self._opened[: len(self._opened) - RECENT_LIMIT]
        waiters, self._open_waiters = self._open_waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(session)
        logger.info("session %s opened its %s connection", session.session_id, carrier.kind)

    def start_scenario(self, session: SimSession) -> None:
        """Start the current scenario on a session whose WebSocket just opened."""
        if self.runner is not None:
            session._runner = self.runner
            self.runner.session_opened(session)

    def schedule_bot_ready(self, session: SimSession) -> None:
        if not session._send_bot_ready:
            logger.info("session %s will never send bot-ready (connection.timeout injected)", session.session_id)
            return
        delay = self.config.bot_ready_delay
        if delay <= 0:
            self.spawn(session._send(wire.bot_ready()))
        else:
            session._set_timer(
                "bot_ready", self.loop.call_later(delay, lambda: self.spawn(session._send(wire.bot_ready())))
            )

    def end(self, session: SimSession, code: int | None, reason: str, *, abort: bool = False) -> None:
        """End ``session`` once: free its slot, stop its timers and turn, then close or drop its socket.

        ``code`` None means the client already closed the socket (nothing to send).
        """
        if session._phase is Phase.ENDED:
            return
        was_open = session._phase is Phase.OPEN
        session._phase = Phase.ENDED
        carrier = session._carrier
        session.close_code = code if code is not None else (carrier.close_code if carrier else None)
        session.close_reason = reason
        session._cancel_all_timers()
        if session._turn is not None:
            session._turn.interrupted = True
        task = session._turn_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        self.store.release(session.api_key, session.session_id)
        self._notify_slots()
        self.sessions.pop(session.session_id, None)
        self.ltm.session_ended(session)
        session._trim_record(ENDED_RECORDED_CHARS, keep_latest=False)  # up to RECENT_LIMIT are kept
        self.recent[session.session_id] = session
        while len(self.recent) > RECENT_LIMIT:
            self.recent.popitem(last=False)
        logger.info("session %s ended (%s, %s)", session.session_id, code, reason)
        if not was_open:
            return
        if abort:
            session._abort(reason)
        elif code is not None:
            session._close_task = self.spawn(session._close(code, reason))

    def _drop_slow_consumer(self, session: SimSession) -> None:
        """A send to ``session`` missed its deadline: end it and abort its socket (frees its slot)."""
        self.end(session, SLOW_CONSUMER_CODE, SLOW_CONSUMER_REASON, abort=True)

    def _join_expired(self, session: SimSession) -> None:
        if session._phase is Phase.PENDING:
            logger.info("session %s never opened its WebSocket; freeing its slot", session.session_id)
            self.end(session, None, "join window elapsed")

    def _token_expired(self, session: SimSession) -> None:
        self.end(session, 1008, faults.SESSION_EXPIRED_REASON)

    # ------------------------------------------------------------------ idle timer

    def arm_idle(self, session: SimSession) -> None:
        """(Re)start the idle countdown; any client message calls this."""
        if self.config.idle_timeout is None or session._phase is not Phase.OPEN:
            return
        session._idle_deadline = self.loop.time() + self.config.idle_timeout
        session._idle_warning_index = 0
        self._schedule_idle(session)

    def _warning_remaining(self, index: int) -> float | None:
        lead = self.config.idle_warning_lead
        timeout = self.config.idle_timeout
        if lead is None or timeout is None or lead <= 0:
            return None
        remaining = min(lead, timeout) - index * self.config.idle_warning_interval
        return remaining if remaining > 0 else None

    def _schedule_idle(self, session: SimSession) -> None:
        remaining = self._warning_remaining(session._idle_warning_index)
        when = session._idle_deadline - (remaining or 0.0)
        delay = max(0.0, when - self.loop.time())
        session._set_timer("idle", self.loop.call_later(delay, self._idle_fire, session, remaining))

    def _idle_fire(self, session: SimSession, remaining: float | None) -> None:
        if session._phase is not Phase.OPEN:
            return
        if remaining is None:
            logger.info("session %s idle timeout", session.session_id)
            self.end(session, 1000, IDLE_TIMEOUT_REASON)
            return
        self.spawn(session._send(wire.idle_warning(wire.whole_seconds(remaining))))
        session._idle_warning_index += 1
        self._schedule_idle(session)

    # ------------------------------------------------------------------ flows

    async def usage_limit_flow(self, session: SimSession, quota_type: str, message: str) -> None:
        """``usage-limit-reached`` then close 1008 "Usage limit exceeded"."""
        await session._send(wire.usage_limit_reached(quota_type, message))
        self.end(session, 1008, faults.USAGE_LIMIT_REASON)

    async def apply_live(self, fault: LiveFault, session: SimSession, times: int) -> None:
        """Act with ``fault`` on one open session. A repeated frame (``times``, at most
        ``bounds.MAX_INJECT_TIMES``) yields to the loop after each send, so other sessions and routes
        are served meanwhile, and stops as soon as the session can no longer take it (it ended)."""
        kind = fault.kind
        if kind is LiveKind.CLOSE:
            self.end(session, fault.close_code, fault.reason)
        elif kind is LiveKind.ABORT:
            self.end(session, 1006, f"aborted ({fault.label})", abort=True)
        elif kind is LiveKind.PIPELINE_ERROR:
            await self._repeat(session, wire.encode(wire.pipeline_error(fault.text, False)), times)
        elif kind is LiveKind.FATAL_ERROR:
            await session._send(wire.pipeline_error(fault.text, True))
            self.end(session, 1011, fault.reason)
        elif kind is LiveKind.USAGE_LIMIT:
            await self.usage_limit_flow(session, fault.quota_type, fault.text)
        elif kind is LiveKind.RAW_FRAME:
            await self._repeat(session, fault.text, times)

    @staticmethod
    async def _repeat(session: SimSession, text: str, times: int) -> None:
        for _ in range(times):
            if not session.is_open or not await session._send_text(text):
                return  # the session ended: nobody is left to send to
            await asyncio.sleep(0)  # a send that did not wait for the client would never yield

    async def inject_live(self, fault: LiveFault, session_id: str | None, times: int) -> int:
        """Apply ``fault`` to every open session (or one); returns how many it targets.

        Each target gets its own task, so one session that cannot take its frames (a slow consumer,
        dropped after ``send_timeout``) never delays the others; this returns without waiting for them.
        Tasks start in order, so frames of consecutive injections reach a session in order.
        """
        if session_id is None:
            targets = self.open_sessions()
        else:
            session = self.sessions.get(session_id)
            if session is None or session._phase is not Phase.OPEN:
                raise ValueError(f"no live session with id {session_id!r}")
            targets = [session]
        if not targets:
            logger.warning("inject %s: no live session to act on", fault.label)
        for target in targets:
            self.spawn(self.apply_live(fault, target, times))
        return len(targets)

    async def send_frame(self, session_id: str, frame: wire.JsonDict | str) -> None:
        """Send a frame (a dict as JSON text, a str as is) on one live session."""
        session = self.sessions.get(session_id)
        if session is None or session._phase is not Phase.OPEN:
            raise ValueError(f"no live session with id {session_id!r}")
        await session._send_text(frame if isinstance(frame, str) else wire.encode(frame))

    # ------------------------------------------------------------------ waits

    async def wait_open(self, timeout: float) -> SimSession:
        """The most recently opened live session, waiting up to ``timeout`` for one."""
        for session in reversed(self._opened):
            if session._phase is Phase.OPEN:
                return session
        future: asyncio.Future[SimSession] = self.loop.create_future()
        self._open_waiters.append(future)
        await asyncio.wait({future}, timeout=timeout)
        if not future.done():
            future.cancel()
            raise TimeoutError(f"no session opened its WebSocket within {timeout} s")
        return future.result()

    async def wait_received(self, session_id: str, msg_type: str, timeout: float) -> Any:
        """The first frame of ``msg_type`` the session received, waiting up to ``timeout``."""
        session = self.lookup(session_id)
        if session is None:
            raise ValueError(f"unknown session id {session_id!r}")
        found = session._find_received(msg_type)
        if found is not None:
            return found
        future: asyncio.Future[Any] = self.loop.create_future()
        session._add_waiter(msg_type, future)
        await asyncio.wait({future}, timeout=timeout)
        if not future.done():
            future.cancel()
            raise TimeoutError(f"session {session_id} received no {msg_type!r} within {timeout} s")
        return future.result()

    def _notify_slots(self) -> None:
        if not self._slot_waiters:
            return
        remaining = []
        for api_key, count, future in self._slot_waiters:
            if future.done():
                continue
            if self.accounts.slots_in_use(api_key) == count:
                future.set_result(None)
            else:
                remaining.append((api_key, count, future))
        self._slot_waiters = remaining

    async def wait_slots(self, count: int, api_key: str | None, timeout: float) -> None:
        """Wait until exactly ``count`` slots are held (by ``api_key``, or in total)."""
        if self.accounts.slots_in_use(api_key) == count:
            return
        future: asyncio.Future[None] = self.loop.create_future()
        self._slot_waiters.append((api_key, count, future))
        await asyncio.wait({future}, timeout=timeout)
        if not future.done():
            future.cancel()
            raise TimeoutError(
                f"slots in use stayed at {self.accounts.slots_in_use(api_key)}, not {count}, for {timeout} s"
            )

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        """Counts of what the simulator holds, and their bounds (for ``GET /_sim/stats``)."""
        phases = collections.Counter(s._phase.value for s in self.sessions.values())
        return {
            "sessions": {"open": phases[Phase.OPEN.value], "pending": phases[Phase.PENDING.value]},
            "recent_sessions": len(self.recent),
            "max_recent_sessions": RECENT_LIMIT,
            "conversations": self.accounts.conversation_count,
            "max_conversations": self.accounts.max_conversations,
            "slots_in_use": self.accounts.slots_in_use(),
            "store": {"kind": "memory" if isinstance(self.store, LocalPlanStore) else "redis",
                      "round_trips": self.store.round_trips},
            "queued_connect_faults": sum(entry[1] for entry in self.connect_faults),
            "tasks": len(self.tasks),
            "send_timeout": self.config.send_timeout,
            "livekit": {"connections": 0 if self.livekit is None else self.livekit.connection_count(),
                        "rooms": 0 if self.livekit is None else self.livekit.room_count()},
        }

    # ------------------------------------------------------------------ shutdown

    async def shutdown(self, deadline: float) -> None:
        """Close every session with 1001 and wait (bounded) for the close handshakes.

        The closes run concurrently; one still unfinished at ``deadline`` (a client that stopped
        reading) is cancelled, which aborts its connection.
        """
        for session in list(self.sessions.values()):
            self.end(session, 1001, SHUTDOWN_REASON)
        pending = [t for t in self.tasks if not t.done()]
        if pending:
            _done, still = await asyncio.wait(pending, timeout=deadline)
            for task in still:
                task.cancel()
            if still:
                logger.warning("%d simulator tasks still running at shutdown; cancelled", len(still))
        for future in self._open_waiters:
            future.cancel()
        if self.livekit is not None:
            await self.livekit.shutdown(deadline)
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        await self.store.close()
