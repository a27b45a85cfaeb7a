"""Shared helpers for the threaded unit tests (no network): a fake connect API, a scripted
in-memory server, a FakeClock that can wait for a specific sleeper, and thread checks.

Nothing here sleeps to synchronise: every wait is on a Condition/Event with a timeout.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from convai_sync import ConvaiClient, ConvaiConfig, ErrorCode, SessionError
from convai_sync.connect import ConnectFailed, Endpoint
from convai_sync.testing import FakeClock, MemoryServer, MemoryTransport
from convai_sync.transports.base import TransportListener

BOT_READY: dict[str, Any] = {"label": "rtvi-ai", "type": "bot-ready", "data": {}}
WAIT = 5.0  # generous upper bound for every cross-thread wait


# ---------------------------------------------------------------------------- threads


def convai_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("convai-") and t.is_alive()]


def assert_no_convai_threads(grace: float = 2.0) -> None:
    """Join every ``convai-*`` thread briefly, then assert none is alive."""
    for thread in convai_threads():
        thread.join(grace)
    alive = [t.name for t in convai_threads()]
    assert not alive, f"convai- threads still alive: {alive}"


@pytest.fixture
def no_convai_threads_after() -> Iterator[None]:
    """After the test (and its fixtures' teardown), no ``convai-`` thread may survive."""
    yield
    assert_no_convai_threads()


def run_async(fn: Callable[[], Any], name: str = "test-helper") -> Future[Any]:
    """Run ``fn`` on a plain helper thread (not ``convai-``); its result/exception in a Future."""
    fut: Future[Any] = Future()

    def body() -> None:
        try:
            fut.set_result(fn())
        except BaseException as exc:
            fut.set_exception(exc)

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    fut.thread = thread  # type: ignore[attr-defined]
    return fut


# ---------------------------------------------------------------------------- clock


class SteppingClock(FakeClock):
    """A FakeClock that can wait until the session loop sleeps towards a given deadline.

    ``FakeClock.wait`` takes a *relative* timeout, so advancing while the loop is between
    computing its timeout and registering its wait would be lost. Waiting for the exact
    sleeper first (``step``) makes every advance land on a registered waiter.
    """

    def wait_for_deadline(self, at: float, timeout: float = WAIT) -> None:
        def ready() -> bool:
            return any(d == at or abs(d - at) < 1e-6 for d, _ in self._waiters)
        with self._lock:
            if not self._lock.wait_for(ready, timeout):
                pending = sorted(d for d, _ in self._waiters)
                raise TimeoutError(f"no sleeper with deadline {at} (now {self._now}); sleepers: {pending}")

    def wait_for_idle_sleeper(self, timeout: float = WAIT) -> None:
        """Wait until a thread sleeps with no deadline (no timer pending in the session)."""
        self.wait_for_deadline(float("inf"), timeout)

    def step(self, seconds: float, timeout: float = WAIT) -> None:
        """Wait for the sleeper due ``seconds`` from now, then advance by ``seconds``."""
        self.wait_for_deadline(self.monotonic() + seconds, timeout)
        self.advance(seconds)


# ---------------------------------------------------------------------------- connect API


Outcome = ErrorCode | None  # None = success


class FakeApi:
    """Stands in for ``ConnectApi``.

    ``script`` gives the outcome of successive connect calls (``None`` = success, an
    ``ErrorCode`` = ``ConnectFailed`` with the catalog's HTTP status); once spent, ``then``
    is used for every further call.
    """

    def __init__(self, script: Iterable[Outcome] = (), then: Outcome = None,
                 character_session_id: str = "csid-1") -> None:
        self.script: collections.deque[Outcome] = collections.deque(script)
        self.then = then
        self.csid = character_session_id
        self.calls: list[tuple[str | None, float]] = []
        self.disconnects: list[str] = []
        self.closed = 0
        self._cond = threading.Condition()

    def connect(self, character_session_id: str | None, timeout: float, canceller: Any = None,
                credential: Any = None) -> Endpoint:
        with self._cond:
            self.calls.append((character_session_id, timeout))
            n = len(self.calls)
            outcome = self.script.popleft() if self.script else self.then
            self._cond.notify_all()
        if outcome is not None:
            from convai_sync.errors import CATALOG
            raise ConnectFailed(SessionError.of(outcome, http_status_code=CATALOG[outcome].http_status))
        return Endpoint(session_id=f"sess-{n}", room_url="memory://room",
                        character_session_id=character_session_id or self.csid)

    def disconnect(self, session_id: str, timeout: float | None = None, canceller: Any = None) -> bool:
        with self._cond:
            self.disconnects.append(session_id)
            self._cond.notify_all()
        return True

    def close(self) -> None:
        self.closed += 1

    @property
    def call_count(self) -> int:
        with self._cond:
            return len(self.calls)

    def wait_calls(self, n: int, timeout: float = WAIT) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.calls) >= n, timeout):
                raise TimeoutError(f"{len(self.calls)} of {n} connect calls")

    def wait_disconnects(self, n: int = 1, timeout: float = WAIT) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.disconnects) >= n, timeout):
                raise TimeoutError(f"{len(self.disconnects)} of {n} disconnect calls")


class GateApi(FakeApi):
    """A FakeApi whose connect blocks until ``gate`` is set (an in-flight POST /connect)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def connect(self, character_session_id: str | None, timeout: float, canceller: Any = None,
                credential: Any = None) -> Endpoint:
        self.entered.set()
        self.gate.wait(WAIT)
        return super().connect(character_session_id, timeout, canceller)


# ---------------------------------------------------------------------------- server / transport


Responder = Callable[[dict[str, Any]], Iterable[str | bytes | dict[str, Any]]]


class ScriptedServer(MemoryServer):
    """A MemoryServer that counts transport opens and can answer client messages.

    ``responders[msg_type](msg)`` returns frames pushed back synchronously inside the client's
    ``send`` (they go through the session inbox, so ordering stays that of a real server).
    """

    def __init__(self) -> None:
        super().__init__()
        self.opens = 0
        self.responders: dict[str, Responder] = {}

    def opened(self) -> None:
        with self._cond:
            self.opens += 1
            self._cond.notify_all()

    def wait_open(self, n: int = 1, timeout: float = WAIT) -> None:
        """Block until the client has opened its ``n``-th transport (listener set)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.opens >= n, timeout):
                raise TimeoutError(f"{self.opens} of {n} transport opens")

    def record(self, data: str) -> None:
        super().record(data)
        msg = json.loads(data)
        responder = self.responders.get(msg.get("type"))
        if responder is not None:
            for frame in responder(msg):
                self.push(frame)

    def count_sent(self, msg_type: str) -> int:
        with self._cond:
            return sum(1 for raw in self.sent if json.loads(raw).get("type") == msg_type)


class NotifyingTransport(MemoryTransport):
    """MemoryTransport that tells its ScriptedServer when it is open."""

    def __init__(self, server: ScriptedServer) -> None:
        super().__init__(server)
        self._server = server

    def open(self, endpoint: Endpoint, listener: TransportListener, *, timeout: float,
             canceller: Any = None) -> None:
        super().open(endpoint, listener, timeout=timeout, canceller=canceller)
        self._server.opened()


# ---------------------------------------------------------------------------- harness


def make_config(**overrides: Any) -> ConvaiConfig:
    # No keepalive by default: its timer would be one more sleeper for the stepping clock.
    values: dict[str, Any] = {"api_key": "test-key", "character_id": "char-1", "close_timeout": 2.0,
                              "http_timeout": 2.0, "keepalive_interval": None}
    values.update(overrides)
    return ConvaiConfig(**values)


class Harness:
    """One client wired to a ScriptedServer and a FakeApi."""

    def __init__(self, config: ConvaiConfig | None = None, *, clock: FakeClock | None = None,
                 api: FakeApi | None = None) -> None:
        self.server = ScriptedServer()
        self.api = api or FakeApi()
        self.clock = clock
        self.client = ConvaiClient(config or make_config(), clock=clock,
                                   transport_factory=lambda: NotifyingTransport(self.server),
                                   connect_api=self.api)
        self._helpers: list[Future[Any]] = []

    def connect_async(self, timeout: float | None = WAIT) -> Future[None]:
        fut = run_async(lambda: self.client.connect(timeout=timeout), "test-connect")
        self._helpers.append(fut)
        return fut

    def connect(self, opens: int = 1) -> None:
        """connect() on a helper thread; push bot-ready once the transport is open."""
        fut = self.connect_async()
        self.server.wait_open(opens)
        self.server.push(BOT_READY)
        fut.result(WAIT)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            for fut in self._helpers:
                thread = getattr(fut, "thread", None)
                if thread is not None:
                    thread.join(WAIT)


def reply_frames(chunks: Iterable[str], emotion: str | None = None,
                 message_id: str | None = None) -> list[dict[str, Any]]:
    """A complete bot turn as the server streams it."""
    frames: list[dict[str, Any]] = []
    if message_id is not None:
        frames.append({"label": "rtvi-ai", "type": "server-message",
                       "data": {"type": "final-user-transcription", "text": "q", "message_id": message_id}})
    frames.append({"label": "rtvi-ai", "type": "bot-llm-started", "data": {}})
    for chunk in chunks:
        frames.append({"label": "rtvi-ai", "type": "bot-llm-text", "data": {"text": chunk}})
    if emotion is not None:
        frames.append({"label": "rtvi-ai", "type": "server-message",
                       "data": {"type": "bot-emotion", "emotion": emotion, "scale": 2}})
    frames.append({"label": "rtvi-ai", "type": "bot-llm-stopped", "data": {}})
    frames.append({"label": "rtvi-ai", "type": "bot-turn-completed", "data": {}})
    return frames


def ack(event_type: str, status: str = "success", message: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "server-response", "event_type": event_type, "status": status}
    if message is not None:
        frame["message"] = message
    return frame


def pump_until(client: ConvaiClient, done: Callable[[], bool], timeout: float = WAIT) -> None:
    """Play the host's tick: pump MAIN_THREAD events until ``done()`` (bounded)."""
    gate = threading.Event()
    deadline = threading.Timer(timeout, gate.set)
    deadline.daemon = True
    deadline.start()
    try:
        while True:
            client.pump()
            if done():
                return
            if gate.wait(0.01):
                client.pump()
                if done():
                    return
                raise TimeoutError("condition not met while pumping")
    finally:
        deadline.cancel()
