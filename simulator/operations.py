"""The thread-safe methods that drive and inspect a running :class:`simulator.Simulator`.

:class:`SimulatorOperations` is the part of ``Simulator``'s public API that acts on a running simulator:
fault injection, server-side frames and signals, waits and counts. Each method hands its work to the
simulator's loop thread through :meth:`SimulatorOperations._call` (``Simulator`` implements it with
``asyncio.run_coroutine_threadsafe(...).result(timeout)``); called on the loop thread itself it raises
RuntimeError instead of deadlocking, and on a simulator that is not running it raises RuntimeError.
Methods that send on a session may wait up to the simulator's ``send_timeout`` for a client that stopped
reading (which is then dropped as a slow consumer) before they return.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from convai_sync.disconnect import DisconnectReason
from convai_sync.errors import ErrorCode
from simulator.core import bounds, faults, limits, signals, wire
from simulator.core.faults import ConnectFault
from simulator.core.sessions import SimSession
from simulator.core.state import SimCore

T = TypeVar("T")
#: Seconds a public call waits for the loop thread (on top of any timeout it was given).
CALL_TIMEOUT = 5.0


class SimulatorOperations:
    """Fault injection, frames, waits and counts of a running simulator (see the module docstring)."""

    def _call(self, factory: Callable[[SimCore], Coroutine[Any, Any, T]], timeout: float = CALL_TIMEOUT) -> T:
        """Run ``factory(core)`` on the loop thread and return its result (waits at most ``timeout``)."""
        raise NotImplementedError

    def _send_call(self, factory: Callable[[SimCore], Coroutine[Any, Any, T]]) -> T:
        """:meth:`_call` for work that sends on one session: it may wait up to ``send_timeout`` for a
        client that stopped reading (which is then dropped) before it returns."""
        raise NotImplementedError

    def inject(
        self,
        code_or_reason: ErrorCode | DisconnectReason | str | int,
        session_id: str | None = None,
        times: int = 1,
        **details: Any,
    ) -> int:
        """Inject a documented error code or disconnect reason where the real service produces it.

        ``code_or_reason``: an ``ErrorCode`` or its value (``"connection.timeout"``) or name
        (``"CONNECTION_TIMEOUT"``), a ``DisconnectReason`` or its name (``"SERVER_SHUTDOWN"``) or
        number (``3`` or ``"3"``).

        Connect-API codes answer the next ``times`` ``/connect`` calls (returns 0); they answer only a
        connect that is authenticated and well-formed. Other codes and every disconnect reason act at
        once on all live sessions, or on ``session_id`` (returns how many), each session on its own,
        so a client that stopped reading delays no other; this returns without waiting for the frames.
        Raises ValueError for unknown values and for codes only a client can produce.
        """
        limits.check_positive_int("times", times, bounds.MAX_INJECT_TIMES)
        fault = faults.resolve(code_or_reason, dict(details))
        if isinstance(fault, ConnectFault):
            async def queue(core: SimCore) -> int:
                core.add_connect_fault(fault, times)
                return 0

            return self._call(queue)
        live = fault
        return self._call(lambda core: core.inject_live(live, session_id, times))

    @property
    def sessions(self) -> list[SimSession]:
        """Live sessions (WebSocket open), oldest first."""
        async def snapshot(core: SimCore) -> list[SimSession]:
            return core.open_sessions()

        return self._call(snapshot)

    def stats(self) -> dict[str, Any]:
        """What the simulator holds, and its bounds, as ``GET /_sim/stats`` answers: ``sessions``
        ``{"open", "pending"}``, ``recent_sessions``, ``max_recent_sessions``, ``conversations``,
        ``max_conversations``, ``slots_in_use``, ``queued_connect_faults``, ``tasks``, ``send_timeout`` (s),
        ``livekit`` ``{"connections", "rooms"}`` (as :meth:`livekit_stats`; zeros without the LiveKit extra)."""
        async def read(core: SimCore) -> dict[str, Any]:
            return core.stats()

        return self._call(read)

    def slots_in_use(self, api_key: str | None = None) -> int:
        """Concurrency slots currently held (by ``api_key``, or by every key)."""
        async def count(core: SimCore) -> int:
            return core.accounts.slots_in_use(api_key)

        return self._call(count)

    def wait_for_slots(self, count: int, api_key: str | None = None, timeout: float = 5.0) -> None:
        """Wait until exactly ``count`` concurrency slots are held; raises TimeoutError."""
        self._call(lambda core: core.wait_slots(count, api_key, timeout), timeout + CALL_TIMEOUT)

    def wait_for_session(self, timeout: float = 5.0) -> SimSession:
        """The most recently opened live session, waiting up to ``timeout``; raises TimeoutError."""
        return self._call(lambda core: core.wait_open(timeout), timeout + CALL_TIMEOUT)

    def wait_for_received(self, session_id: str, msg_type: str, timeout: float = 5.0) -> Any:
        """The first client frame of ``msg_type`` the session received (waits; raises TimeoutError)."""
        return self._call(lambda core: core.wait_received(session_id, msg_type, timeout), timeout + CALL_TIMEOUT)

    def send_idle_warning(self, session_id: str, remaining_seconds: int) -> None:
        """Send ``user-idle-warning`` with ``remaining_seconds`` (the idle timer itself is unchanged)."""
        frame = wire.idle_warning(limits.check_int("remaining_seconds", remaining_seconds, 0,
                                                   int(limits.MAX_SECONDS)))
        self._send_call(lambda core: core.send_frame(session_id, frame))

    def send_usage_limit(
        self, session_id: str, quota_type: str = "interaction", *, message: str | None = None, close: bool = True
    ) -> None:
        """Send ``usage-limit-reached``; with ``close`` (default) then close 1008 as the real service does."""
        text = message if message is not None else faults.DEFAULT_USAGE_MESSAGE

        async def act(core: SimCore) -> None:
            if not close:
                await core.send_frame(session_id, wire.usage_limit_reached(quota_type, text))
                return
            session = core.sessions.get(session_id)
            if session is None or not session.is_open:
                raise ValueError(f"no live session with id {session_id!r}")
            await core.usage_limit_flow(session, quota_type, text)

        self._send_call(act)

    def livekit_stats(self) -> dict[str, int]:
        """What the LiveKit side holds right now: ``connections`` (participant connections), ``rooms``
        (remembered rooms, ended ones included) and ``tasks`` (the simulator's running tasks)."""
        async def read(core: SimCore) -> dict[str, int]:
            service = core.livekit
            return {"connections": 0 if service is None else service.connection_count(),
                    "rooms": 0 if service is None else service.room_count(),
                    "tasks": sum(1 for t in core.tasks if not t.done())}

        return self._call(read)

    def refuse_livekit_join(self, status: int, times: int = 1, detail: str | None = None) -> None:
        """Answer the next ``times`` LiveKit joins (``GET /rtc/v1``) with HTTP ``status`` (401, 403, 404 or
        429) and ``detail`` (default: a LiveKit-style text). Raises ValueError for other statuses, and
        RuntimeError when the LiveKit extra is not installed."""
        limits.check_positive_int("times", times, bounds.MAX_INJECT_TIMES)
        from simulator.carriers.livekit import faults as livekit_faults

        livekit_faults.refusal_text(status, detail)

        async def queue(core: SimCore) -> None:
            if core.livekit is None:
                from simulator.carriers import livekit

                raise RuntimeError(livekit.missing_extra_message())
            core.livekit.add_refusal(status, detail, times)

        self._call(queue)

    # ------------------------------------------------------------------ signals and raw frames

    def send_participant(
        self,
        session_id: str,
        joined: bool = True,
        participant_id: str | None = None,
        identity: str | None = None,
        display_name: str = "",
        participant_type: str | int = "character",
        *,
        is_local: bool = False,
        is_muted: bool = False,
    ) -> str:
        """Send ``room-participant-joined`` (or ``-left`` with ``joined=False``); returns the participant id.

        ``participant_type`` is ``"character"``, ``"remote_player"``, ``"local_player"``, ``"unknown"``
        (or its ``ParticipantType`` value); ``participant_id`` defaults to a fresh id, ``identity`` to it.
        """
        frame = signals.participant_frame(joined, participant_id, identity, display_name, participant_type,
                                          is_local, is_muted)
        self._send_call(lambda core: core.send_frame(session_id, frame))
        return str(frame["data"]["participant_id"])

    def send_rebind_state(self, session_id: str, outcome: int, **fields: Any) -> None:
        """Send ``room-ownership-rebind-state-changed`` with ``outcome`` (a RoomOwnershipRebindStatus value)
        and any of ``has_pending_reconnect``, ``session_state``, ``active_character_id``,
        ``requested_character_id``, ``reconnect_required``."""
        frame = signals.rebind_frame(outcome, **fields)
        self._send_call(lambda core: core.send_frame(session_id, frame))

    def send_frame(self, session_id: str, frame: wire.JsonDict | str) -> None:
        """Send one raw frame on a live session: a dict as JSON text, a str exactly as given."""
        text = signals.raw_frame(frame)
        self._send_call(lambda core: core.send_frame(session_id, text))
