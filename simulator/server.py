"""The public :class:`Simulator`: an aiohttp app on a private event loop in the thread ``sim-loop``.

All simulator state lives on that loop. Public methods called from other threads hand their work over
with ``asyncio.run_coroutine_threadsafe(...).result(timeout)``; calling them from the loop thread itself
(e.g. from a handler) raises RuntimeError instead of deadlocking. A custom ``responder`` runs on a small
worker pool, so it may call these methods. The methods that act on a running simulator (injections, frames,
waits, counts) are inherited from :class:`simulator.operations.SimulatorOperations`; this module has the
configuration, the lifecycle and the hand-over to the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from simulator.account_ops import AccountOperations
from simulator.carriers import livekit
from simulator.carriers.websocket import pipecat
from simulator.core import ice, limits, wire
from simulator.core.accounts import DEFAULT_MAX_CONVERSATIONS, Limits
from simulator.core.character import Responder
from simulator.core.characters import CharacterDefinition, load_characters_file, parse_characters
from simulator.core.replay import Replay, load_replay
from simulator.core.runner import set_scenario
from simulator.core.scenario import Scenario, load_scenario
from simulator.core.sessions import DEFAULT_SEND_TIMEOUT
from simulator.core.state import SimConfig, SimCore, Synthesizer, Transcriber
from simulator.http import cors
from simulator.http.connect import build_app
from simulator.http.control import add_control_routes
from simulator.http.dashboard import add_dashboard_routes
from simulator.http.quiet import QuietAppRunner
from simulator.http.rest import install as add_rest_routes
from simulator.http.speakers import add_speaker_routes
from simulator.instrument import InstrumentOperations
from simulator.operations import CALL_TIMEOUT, SimulatorOperations

if TYPE_CHECKING:
    from convai_sync.config import ConvaiConfig
    from simulator.carriers.livekit import coturn

logger = logging.getLogger("simulator.server")

T = TypeVar("T")
SHUTDOWN_CLOSE_DEADLINE = 2.0
#: The default ``characters`` (replaced by a ``characters_file``'s definitions when only the file is given).
DEFAULT_CHARACTERS: tuple[str, ...] = ("sim-character",)


def _names(value: Iterable[str] | str, what: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{what} must be one or more non-empty strings")
    return names


def _definitions(characters: Iterable[str | Mapping[str, Any]] | str,
                 characters_file: str | Path | None) -> tuple[CharacterDefinition, ...]:
    """The definitions of ``characters`` plus those of ``characters_file``, all or nothing."""
    from_file = () if characters_file is None else load_characters_file(characters_file)
    if from_file and characters is DEFAULT_CHARACTERS:
        return from_file
    given = parse_characters(characters)
    ids = {d.id for d in given}
    for definition in from_file:
        if definition.id in ids:
            raise ValueError(f"{characters_file}: character {definition.id!r}: field 'id': also given in characters")
    return given + from_file


class Simulator(SimulatorOperations, AccountOperations, InstrumentOperations):
    """A local Convai realtime service. ``None`` limits mean unlimited / off.

    Args:
        host: the address to bind (loopback by default; see :attr:`url` after :meth:`start`).
        port: the port to bind (0 = a free port).
        api_keys: accepted API keys (the first is the default).
        characters: the characters (the first is the default): plain id strings and/or definition mappings
            with at least ``"id"`` (the characters file's shape: see ``simulator.core.characters``).
        characters_file: a JSON characters file (``{"characters": [...]}``) whose definitions are added to
            ``characters`` (alone, they replace the default ``"sim-character"``); e.g.
            ``simulator.core.characters.shipped_character("shopkeeper")``.
        concurrency_limit: live sessions per key; a slot is held from ``/connect`` until the session ends.
        speaker_limit: distinct ``end_user_id`` values per key (429 "Speaker limit reached").
        connect_rate_limit: accepted connects per key within ``connect_rate_window`` seconds.
        usage_quota: interactions per key (``user_text_message`` / ``trigger-message``).
        idle_timeout: close 1000 "Idle timeout" after this many seconds without a client message.
        idle_warning_lead: send ``user-idle-warning`` this many seconds before the idle timeout,
            repeating every ``idle_warning_interval`` seconds.
        token_ttl: seconds from ``/connect`` until the session closes 1008 "Session expired...".
        realtime_allowed: False answers every connect with 403.
        bot_ready_delay: seconds between the WebSocket opening and ``bot-ready``.
        responder: ``str -> str | None`` reply function (None reply = ``llm-no-response``); runs on a
            small worker pool. The default reply is deterministic and names the turn number.
        chunk_delay: seconds between ``bot-llm-text`` chunks (and of "speech").
        join_window: seconds a ``/connect`` whose WebSocket never opens keeps its slot.
        scenario: a :mod:`simulator.core.scenario` every session runs: a shipped name (``"flaky_network"``),
            a file path, JSON text, a dict or a list of steps (see :meth:`load_scenario`).
        control_token: the ``X-Sim-Control-Token`` the ``/_sim/*`` routes require (default: random).
        synthesizer: the character's voice, ``text -> (pcm, sample_rate)`` (PCM16 mono bytes, Hz); runs on the
            worker pool. Default: a 440 Hz tone of 20 ms per character (see ``simulator.core.speech``).
        transcriber: hears the user (LiveKit microphone track, or ``Frame.audio`` on the WebSocket),
            ``(pcm, sample_rate, num_channels) -> str`` (PCM16); runs on the worker pool. Default:
            ``"[audio 1.20 s]"``.
        websocket_audio: voice replies on the ``/chat`` WebSocket too, as binary Pipecat ``Frame.audio``
            messages paced at twice real time (PROPOSED: see ``simulator.carriers.websocket.voice``). Off by
            default: clients that read only text frames keep their speed. The user's voice is heard on the
            WebSocket either way.
        transport_default: what a ``/connect`` without ``transport`` gets: ``"livekit"`` (the real service's
            default) or ``"websocket"``.
        livekit_host_addresses: the addresses the LiveKit side gathers and advertises as ICE candidates
            (default loopback only; add this machine's address to serve clients elsewhere).
        send_timeout: seconds one frame may wait for a client to read it; a session whose client
            stops reading for longer is dropped as a slow consumer (logged, slot freed, socket
            aborted), so it never holds up other sessions, injections or :meth:`stop`.
        max_conversations: ``character_session_id`` histories remembered (least recently used
            forgotten first; resuming a forgotten one starts a fresh history, like an unknown id).
        scenario_dir: the one directory ``POST /_sim/scenario`` may read scenario files from (named
            relative to it); None (the default): the control API reads no file but the shipped scenarios.
        state: where the plan state (slots, connect-rate windows, speakers, usage, auth tokens, memories) lives:
            None (this process) or ``redis://HOST:PORT/DB``, shared by every simulator started with the same URL
            (the worker processes of ``convai-sim --workers N``, on one machine or several); needs the
            ``simulator-redis`` extra.
        slot_lease: with ``state``, seconds a slot outlives its worker's last heartbeat (renewed every third of
            it): a worker that dies frees its slots within this (default 15).
        reuse_port: bind ``port`` with ``SO_REUSEPORT`` (several workers share it, the kernel spreads connects)
            and also a port of this worker's own, which every ``room_url`` it answers names.
        advertise_host: the host ``room_url``s name (default ``host``; the address other machines reach this one
            at when workers run on several machines).
            The ``scenario`` argument and :meth:`load_scenario` read any path you give them.
        turn: the TURN server the LiveKit JoinResponse advertises (relay-only clients such as Convai's Web SDK
            need one): ``"turn://USER:PASSWORD@HOST:PORT[?transport=udp|tcp]"``, or ``"auto"`` to run Debian's
            coturn (``turnserver``) on 127.0.0.1 with random credentials from :meth:`start` to :meth:`stop`
            (:meth:`start` raises ``simulator.core.ice.TurnUnavailable``, a RuntimeError naming
            the ``coturn`` package, when it is missing). None (default): no ICE server.
        cors_origins: browser origins allowed besides loopback ones (``http://localhost:*``,
            ``http://127.0.0.1:*``, ``http://[::1]:*``, always allowed); ``"*"`` allows any (logged as a
            warning). See ``simulator.http.cors``.
        message_form: how ``user-transcription``, ``bot-started-speaking``, ``bot-stopped-speaking``,
            ``action-response`` and the other types Convai's Web SDK reads only at the top level reach clients:
            ``"top-level"`` (default; ``{"type": "bot-started-speaking", ...}``, what the Web SDK 1.2.0 reads)
            or ``"server-message"`` (wrapped: ``{"type": "server-message", "data": {"type": ...}}``). PROPOSED:
            see the README's "Message forms". Each event goes to a client in one form only.
        auth_token_ttl: seconds an auth token from ``POST /user/connect`` (or ``/user/extend-token``) stays
            valid for new connects (Convai: one hour); ``token_ttl`` remains the session lifetime.
        single_use_tokens: the first ``/connect`` presenting an auth token consumes it (PROPOSED; Convai's
            docs name "already consumed" tokens); False lets a token connect until it expires or is revoked.
        clock: monotonic seconds for auth-token lifetimes (default: the simulator loop's clock); pass
            ``convai_sync.testing.FakeClock().monotonic`` to expire tokens without waiting an hour.
        replay: a recording ``convai_sync`` wrote (``ConvaiConfig(record_to=PATH)``) to serve back: inputs
            that match it by order and text get the recorded replies with the recorded timing, others the
            default character (see ``simulator.core.replay``); read once, here.
        replay_speed: how much faster than recorded the replies come (2.0: twice as fast), > 0.

    Raises:
        ValueError: a bad value, e.g. a port outside 0..65535, or ``idle_warning_lead`` without
            ``idle_timeout`` or longer than it; ``simulator.core.characters.CharacterError`` (a ValueError) for a
            bad character definition or characters file, naming the file, the character and the field.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_keys: Iterable[str] = ("sim-api-key",),
        characters: Iterable[str | Mapping[str, Any]] = DEFAULT_CHARACTERS,
        characters_file: str | Path | None = None,
        concurrency_limit: int | None = None,
        speaker_limit: int | None = None,
        connect_rate_limit: int | None = None,
        usage_quota: int | None = None,
        idle_timeout: float | None = None,
        idle_warning_lead: float | None = None,
        token_ttl: float | None = None,
        realtime_allowed: bool = True,
        bot_ready_delay: float = 0.0,
        responder: Responder | None = None,
        chunk_delay: float = 0.0,
        join_window: float = 10.0,
        connect_rate_window: float = 60.0,
        idle_warning_interval: float = 60.0,
        scenario: Scenario | Mapping[str, Any] | list[Any] | str | Path | None = None,
        control_token: str | None = None,
        synthesizer: Synthesizer | None = None,
        transcriber: Transcriber | None = None,
        transport_default: str = "livekit",
        livekit_host_addresses: Iterable[str] = ("127.0.0.1",),
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        max_conversations: int = DEFAULT_MAX_CONVERSATIONS,
        scenario_dir: str | Path | None = None,
        websocket_audio: bool = False,
        turn: str | None = None,
        cors_origins: Iterable[str] = (),
        message_form: str = "top-level",
        auth_token_ttl: float = 3600.0,
        single_use_tokens: bool = True,
        clock: Callable[[], float] | None = None,
        replay: str | Path | None = None,
        replay_speed: float = 1.0,
        state: str | None = None,
        slot_lease: float = 15.0,
        reuse_port: bool = False,
        advertise_host: str | None = None,
    ) -> None:
        checked = limits.validate({
            "concurrency_limit": concurrency_limit, "speaker_limit": speaker_limit,
            "connect_rate_limit": connect_rate_limit, "usage_quota": usage_quota, "idle_timeout": idle_timeout,
            "idle_warning_lead": idle_warning_lead, "token_ttl": token_ttl, "realtime_allowed": realtime_allowed,
            "bot_ready_delay": bot_ready_delay, "chunk_delay": chunk_delay,
        })
        limits.check_idle(checked["idle_timeout"], checked["idle_warning_lead"])
        windows = {name: limits.check_seconds(name, value) for name, value in (
            ("join_window", join_window), ("connect_rate_window", connect_rate_window),
            ("idle_warning_interval", idle_warning_interval), ("send_timeout", send_timeout))}
        limits.check_port(port)
        limits.check_positive_int("max_conversations", max_conversations)
        allowed_dir = None if scenario_dir is None else limits.check_directory("scenario_dir", scenario_dir)
        if responder is not None and not callable(responder):
            raise TypeError("responder must be a callable str -> str | None")
        for name, function in (("synthesizer", synthesizer), ("transcriber", transcriber)):
            if function is not None and not callable(function):
                raise TypeError(f"{name} must be callable")
        if not isinstance(websocket_audio, bool):
            raise TypeError("websocket_audio must be a bool")
        token_ttl_checked = limits.check_seconds("auth_token_ttl", auth_token_ttl)
        if not isinstance(single_use_tokens, bool):
            raise TypeError("single_use_tokens must be a bool")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a callable returning monotonic seconds")
        if websocket_audio and not pipecat.available():
            raise ValueError("websocket_audio needs the protobuf package: pip install 'convai-sync[simulator]'")
        if transport_default not in ("livekit", "websocket"):
            raise ValueError(f"transport_default must be 'livekit' or 'websocket', got {transport_default!r}")
        hosts = _names(livekit_host_addresses, "livekit_host_addresses")
        if turn is not None and not isinstance(turn, str):
            raise TypeError("turn must be None, 'auto' or a turn:// URL")
        self._turn_auto = turn == ice.AUTO
        ice_servers = () if turn is None or self._turn_auto else (ice.parse_turn(turn),)
        self._coturn: coturn.CoturnProcess | None = None
        origins = cors.check_origins(cors_origins)
        if message_form not in wire.MESSAGE_FORMS:
            raise ValueError(f"message_form must be one of {', '.join(wire.MESSAGE_FORMS)}, got {message_form!r}")
        definitions = _definitions(characters, characters_file)
        if control_token is not None and (not isinstance(control_token, str) or not control_token.strip()):
            raise ValueError("control_token must be a non-empty string (or None for a random one)")
        if state is not None:
            _check_state(state)
        lease = limits.check_seconds("slot_lease", slot_lease)
        if advertise_host is not None and (not isinstance(advertise_host, str) or not advertise_host.strip()):
            raise ValueError("advertise_host must be a non-empty host name or address (or None)")
        self.host = host
        self._requested_port = port
        self._reuse_port = bool(reuse_port)
        self._advertise_host = advertise_host
        self._config = SimConfig(
            api_keys=_names(api_keys, "api_keys"),
            characters=tuple(d.id for d in definitions),
            definitions=definitions,
            limits=Limits(checked["concurrency_limit"], checked["speaker_limit"], checked["connect_rate_limit"],
                          windows["connect_rate_window"], checked["usage_quota"], checked["realtime_allowed"]),
            idle_timeout=checked["idle_timeout"],
            idle_warning_lead=checked["idle_warning_lead"],
            idle_warning_interval=windows["idle_warning_interval"],
            token_ttl=checked["token_ttl"],
            bot_ready_delay=checked["bot_ready_delay"],
            responder=responder,
            chunk_delay=checked["chunk_delay"],
            join_window=windows["join_window"],
            control_token=control_token or secrets.token_urlsafe(24),
            transport_default=transport_default,
            synthesizer=synthesizer,
            transcriber=transcriber,
            livekit_host_addresses=hosts,
            send_timeout=windows["send_timeout"],
            max_conversations=max_conversations,
            scenario_dir=allowed_dir,
            websocket_audio=websocket_audio,
            ice_servers=ice_servers,
            cors_origins=origins,
            message_form=message_form,
            auth_token_ttl=token_ttl_checked,
            single_use_tokens=single_use_tokens,
            clock=clock,
            state_url=state,
            slot_lease=lease,
        )
        self._scenario: Scenario | None = None if scenario is None else load_scenario(scenario)
        self._initial_scenario = self._scenario
        self._replay: Replay | None = None if replay is None else load_replay(replay, replay_speed)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._core: SimCore | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._started = False
        self._stopped = False

    def __repr__(self) -> str:
        state = "running" if self.running else ("stopped" if self._stopped else "new")
        return f"Simulator(url={self.url if self._port else None!r}, {state})"

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    def start(self) -> Simulator:
        """Bind and serve; returns once the port is bound. Idempotent; a stopped simulator cannot restart."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("a stopped Simulator cannot be restarted; create a new one")
            if self._started:
                return self
            if self._turn_auto:
                # Imported here: coturn's readiness probe needs aioice (the simulator-livekit extra), which a
                # WebSocket-only simulator does not have.
                from simulator.carriers.livekit.coturn import CoturnProcess

                self._coturn = CoturnProcess()
                self._config = dataclasses.replace(self._config, ice_servers=(self._coturn.server,))
            loop = asyncio.new_event_loop()
            ready: concurrent.futures.Future[int] = concurrent.futures.Future()
            thread = threading.Thread(target=self._run, args=(loop, ready), name="sim-loop", daemon=True)
            self._loop, self._thread = loop, thread
            thread.start()
            try:
                self._port = ready.result(timeout=CALL_TIMEOUT)
            except BaseException:
                thread.join(CALL_TIMEOUT)
                self._stopped = True
                self._stop_coturn()
                raise
            self._started = True
        logger.info("simulator listening on %s", self.url)
        return self

    def _run(self, loop: asyncio.AbstractEventLoop, ready: concurrent.futures.Future[int]) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                port = loop.run_until_complete(self._startup(loop))
            except Exception as exc:  # start() raises it to its caller, who reports it (no second traceback)
                logger.debug("simulator failed to start", exc_info=True)
                ready.set_exception(exc)
                return
            ready.set_result(port)
            loop.run_forever()
        finally:
            try:
                _cancel_leftover_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                logger.debug("simulator loop closed")

    async def _startup(self, loop: asyncio.AbstractEventLoop) -> int:
        core = SimCore(self._config, loop)
        set_scenario(core, self._scenario)
        core.initial_scenario = self._initial_scenario = self._scenario
        core.replay = self._replay
        # Composition: the HTTP routes, the LiveKit carrier (which hands the core its LiveKitSide), the control API.
        app = build_app(core)
        livekit.install(core, app)
        app.middlewares.append(cors.middleware(self._config.cors_origins))
        add_speaker_routes(app)
        add_control_routes(app)
        add_rest_routes(app)
        add_dashboard_routes(app)
        await core.store.start()
        runner = QuietAppRunner(app, shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port, reuse_port=self._reuse_port or None)
        try:
            await site.start()
            if self._reuse_port:
                # This worker's own port: the shared one may hand a session's later connections to another worker.
                await web.TCPSite(runner, self.host, 0).start()
        except OSError:
            await runner.cleanup()
            await core.store.close()
            raise
        port = int(runner.addresses[0][1])
        core.host, core.port = self.host, port
        own = int(runner.addresses[-1][1])
        if self._reuse_port or self._advertise_host is not None:
            core.advertise = f"{self._advertise_host or self.host}:{own}"
            await core.store.announce(f"http://{core.advertise}")
        self._core, self._runner = core, runner
        return port

    def stop(self, timeout: float = 5.0) -> None:
        """Close live sessions with 1001 "Server shutting down", unbind, join ``sim-loop``. Idempotent."""
        with self._lock:
            if not self._started or self._stopped:
                self._stopped = True
                return
            self._stopped = True
        loop, thread = self._loop, self._thread
        assert loop is not None and thread is not None
        if threading.current_thread() is thread:
            raise RuntimeError("Simulator.stop() cannot be called from the simulator's loop thread")
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
        except concurrent.futures.TimeoutError:
            logger.warning("simulator shutdown did not finish within %.1f s", timeout)
        except Exception:
            logger.exception("simulator shutdown failed")
        loop.call_soon_threadsafe(loop.stop)
        deadline = time.monotonic() + timeout
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("sim-loop thread did not exit within %.1f s", timeout)
        self._join_responders(deadline)
        self._stop_coturn()
        logger.info("simulator stopped")

    def _stop_coturn(self) -> None:
        if self._coturn is not None:
            self._coturn.stop()

    def _join_responders(self, deadline: float) -> None:
        """Join this simulator's responder workers (a responder that never returns is reported)."""
        if self._core is None:
            return
        prefix = self._core.responder_prefix
        for worker in [t for t in threading.enumerate() if t.name.startswith(prefix)]:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                logger.warning("responder thread %s is still running (a responder did not return)", worker.name)

    async def _shutdown(self) -> None:
        if self._core is not None:
            await self._core.shutdown(SHUTDOWN_CLOSE_DEADLINE)
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ hand-over to the loop

    def _call(self, factory: Callable[[SimCore], Coroutine[Any, Any, T]], timeout: float = CALL_TIMEOUT) -> T:
        if not self.running or self._loop is None or self._core is None:
            raise RuntimeError("the simulator is not running; call start() first")
        if threading.current_thread() is self._thread:
            raise RuntimeError("Simulator methods cannot be called from the simulator's loop thread")
        core = self._core
        return asyncio.run_coroutine_threadsafe(factory(core), self._loop).result(timeout)

    def _send_call(self, factory: Callable[[SimCore], Coroutine[Any, Any, T]]) -> T:
        """:meth:`_call` for work that sends on one session: it may wait up to ``send_timeout`` for a
        client that stopped reading (which is then dropped) before it returns."""
        return self._call(factory, CALL_TIMEOUT + self._config.send_timeout)

    # ------------------------------------------------------------------ addresses and config

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``"http://127.0.0.1:54321"``."""
        return f"http://{self.host}:{self._port}"

    @property
    def worker_url(self) -> str:
        """The URL that names this process among several workers (its own port); :attr:`url` when it is alone."""
        core = self._core
        if core is None or core.advertise is None:
            return self.url
        return f"http://{core.advertise}"

    @property
    def livekit_url(self) -> str:
        """The LiveKit server URL ``/connect`` answers as ``room_url``, e.g. ``"ws://127.0.0.1:54321"``."""
        return f"ws://{self.host}:{self._port}"

    @property
    def livekit_available(self) -> bool:
        """True when the LiveKit side runs (the ``simulator-livekit`` extra is installed)."""
        async def check(core: SimCore) -> bool:
            return core.livekit is not None

        return self._call(check)

    @property
    def api_key(self) -> str:
        return self._config.api_keys[0]

    @property
    def character_id(self) -> str:
        return self._config.characters[0]

    @property
    def characters(self) -> tuple[CharacterDefinition, ...]:
        """Every character definition the simulator serves (the first is :attr:`character_id`'s)."""
        if self.running:
            async def read(core: SimCore) -> tuple[CharacterDefinition, ...]:
                return tuple(core.definitions.values())

            return self._call(read)
        return self._config.definitions

    def define_characters(self, characters: Iterable[str | Mapping[str, Any]] | str | Mapping[str, Any] = (),
                          *, characters_file: str | Path | None = None) -> tuple[CharacterDefinition, ...]:
        """Add or replace character definitions (plain ids, mappings, and/or a characters file), all or
        nothing; returns the new definitions. Live sessions keep the definition they connected with.

        Raises:
            simulator.core.characters.CharacterError: a bad definition (nothing is changed).
        """
        given = () if not characters and not isinstance(characters, str) else parse_characters(characters)
        from_file = () if characters_file is None else load_characters_file(characters_file)
        new = given + from_file
        if not new:
            raise ValueError("define_characters needs characters or a characters_file")
        parse_characters([d.id for d in new])  # one id defined twice in one call is refused

        async def install(core: SimCore) -> None:
            core.define_characters(new)

        with self._lock:
            config = self._config
            merged = {d.id: d for d in config.definitions}
            merged.update({d.id: d for d in new})
            self._config = dataclasses.replace(config, characters=tuple(merged), definitions=tuple(merged.values()))
        if self.running:
            self._call(install)
        return new

    def client_config(self, **overrides: Any) -> ConvaiConfig:
        """A ``ConvaiConfig`` pointing at this simulator (its first key and character).

        ``fast=True`` (a ``bool``; taken out of ``overrides``, so ``client_config(**some_dict)`` still
        type-checks): for tests, no retry or reconnect waits and short deadlines
        (:func:`simulator.fast.fast_overrides` lists them). Other ``overrides`` are ``ConvaiConfig``
        fields and win over both.
        """
        from convai_sync.config import ConvaiConfig

        from .fast import fast_overrides

        fast = overrides.pop("fast", False)
        if not isinstance(fast, bool):
            raise TypeError(f"fast must be a bool, got {fast!r}")
        fields: dict[str, Any] = {"api_key": self.api_key, "character_id": self.character_id, "url": self.url}
        if fast:
            fields.update(fast_overrides())
        if overrides.get("transport") == "livekit":
            fields["ice_transport_policy"] = "all"  # the simulator runs no TURN server: "relay" cannot connect
        fields.update(overrides)
        return ConvaiConfig(**fields)

    # ------------------------------------------------------------------ limits, scenario, control token

    @property
    def control_token(self) -> str:
        """The ``X-Sim-Control-Token`` header value the ``/_sim/*`` control routes require."""
        return self._config.control_token

    @property
    def limits(self) -> dict[str, Any]:
        """Every runtime limit's current value (see :meth:`set_limits`)."""
        if self.running:
            async def read(core: SimCore) -> dict[str, Any]:
                return limits.current(core)

            return self._call(read)
        config = self._config
        return {name: getattr(config.limits, name, getattr(config, name, None)) for name in limits.LIMITS}

    def set_limits(self, **changes: Any) -> dict[str, Any]:
        """Change runtime limits (``concurrency_limit``, ``speaker_limit``, ``connect_rate_limit``,
        ``usage_quota``, ``idle_timeout``, ``idle_warning_lead``, ``token_ttl``, ``realtime_allowed``,
        ``bot_ready_delay``, ``chunk_delay``); returns them all. Raises ValueError for an unknown name or
        a bad value, and when ``idle_warning_lead`` would be set without ``idle_timeout`` or longer than
        it (``idle_timeout=None`` alone also clears the lead). Connect limits apply from the next
        ``/connect``, ``token_ttl`` to later sessions, idle settings restart live sessions' countdowns."""
        checked = limits.validate(changes)
        if self.running:
            return self._call(lambda core: self._apply_limits(core, checked))
        with self._lock:
            config = self._config
            checked = limits.with_idle_rules(checked, config.idle_timeout, config.idle_warning_lead)
            account = {k: v for k, v in checked.items() if hasattr(config.limits, k)}
            rest = {k: v for k, v in checked.items() if k not in account}
            self._config = dataclasses.replace(config, limits=dataclasses.replace(config.limits, **account),
                                               **rest)
        return self.limits

    @staticmethod
    async def _apply_limits(core: SimCore, checked: dict[str, Any]) -> dict[str, Any]:
        return limits.apply(core, checked)

    def reset(self) -> int:
        """End every session (live ones closed 1012 "Simulator reset") and put limits, counters,
        conversations, queued faults, LiveKit tokens, toxics and the scenario back to the configured start.
        Returns how many sessions it ended."""
        ended = super().reset()
        with self._lock:
            self._scenario = self._initial_scenario
        return ended

    @property
    def scenario(self) -> Scenario | None:
        """The scenario new sessions run (None: none)."""
        return self._scenario

    def load_scenario(self, source: Scenario | Mapping[str, Any] | list[Any] | str | Path | None) -> Scenario | None:
        """Validate and install a scenario (a shipped name, a path, JSON text, a dict, a list of steps, or
        None to remove it); sessions opening afterwards run it. Raises ValueError naming the bad step."""
        scenario = None if source is None else load_scenario(source)

        async def install(core: SimCore) -> None:
            set_scenario(core, scenario)

        with self._lock:
            self._scenario = scenario
        if self.running:
            self._call(install)
        return scenario


#: Bound on settling the tasks still pending when the loop stops, in seconds.
LEFTOVER_TASK_TIMEOUT = 1.0


def _check_state(url: object) -> None:
    """``state`` is a Redis URL and the redis package is installed (ValueError naming the field otherwise)."""
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("state must be a redis://HOST:PORT/DB URL (or rediss://, unix://)")
    try:
        import redis  # noqa: F401  (only checked here; simulator.core.redis_store uses it)
    except ImportError:
        raise ValueError("state needs the redis package: pip install 'convai-sync[simulator-redis]'") from None


def _cancel_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel and settle the tasks still pending on the stopped loop (what ``asyncio.run`` does on exit).

    aiortc starts untracked tasks (``RTCPeerConnection.__connect`` waits on ICE checks that never come from
    a client that gathered no candidate); left pending, closing the loop prints asyncio's "Task was
    destroyed but it is pending!" at garbage collection.
    """
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not tasks:
        return
    logger.debug("cancelling %d task(s) still pending at shutdown", len(tasks))
    for task in tasks:
        task.cancel()
    # Bounded: a task that ignores its cancellation must not hold the loop thread for ever.
    done, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=LEFTOVER_TASK_TIMEOUT))
    for task in done:
        if not task.cancelled() and task.exception() is not None:  # retrieved, so asyncio does not warn
            logger.debug("task %s ended with %r at shutdown", task.get_name(), task.exception())
    if pending:
        logger.warning("%d task(s) ignored their cancellation at shutdown", len(pending))
