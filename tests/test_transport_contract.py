"""The Transport contract (``convai_sync/transports/base.py``), one suite for every transport.

Parametrised over the WebSocket transport against the simulator, the in-memory transport, and the
LiveKit transport (the real ``livekit`` client) against the simulator's LiveKit side. Each test
drives a transport directly with a recording listener, no session in between.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from convai_sync import ConvaiClient, ConvaiConfig, InvalidStateError, ReconnectPolicy, RetryPolicy, SendQueueFullError
from convai_sync.connect import ConnectApi, Endpoint
from convai_sync.disconnect import DisconnectReason
from convai_sync.errors import ErrorCode
from convai_sync.events import ParticipantJoined, ParticipantLeft, ParticipantType
from convai_sync.netio import Canceller
from convai_sync.transports import create
from convai_sync.transports.base import Transport, TransportClosed, TransportFault, TransportOpenError
from convai_sync.transports.memory import MemoryServer, MemoryTransport
from simulator import Simulator
from tests.support.hanging import HangingServer
from tests.support.peers import Peer

#: Generous bounds: "returned before a deadline", never a tight wall-clock figure.
PROMPT = 3.0
WAIT = 10.0
#: A LiveKit join cannot be cancelled (convai_sync.transports.livekit); against a server that never
#: answers, the abandoned join settles after LiveKit's own retries (~2.5 s for a 2 s budget).
SETTLE = 20.0

JSON = dict[str, Any]


class Recorder:
    """A TransportListener that records everything, with the thread each callback ran on."""

    def __init__(self) -> None:
        self.messages: list[JSON] = []
        self.closed: list[TransportClosed] = []
        self.participants: list[ParticipantJoined | ParticipantLeft] = []
        self.audio_frames = 0
        self.threads: set[str] = set()
        self.on_message: Callable[[Transport, JSON], None] | None = None
        self._cond = threading.Condition()

    def _note(self) -> None:
        self.threads.add(threading.current_thread().name)

    def on_transport_message(self, transport: Transport, data: str | bytes | TransportFault) -> None:
        self._note()
        assert not isinstance(data, TransportFault), data
        message = json.loads(data)
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()
        if self.on_message is not None:
            self.on_message(transport, message)

    def on_transport_audio(self, transport: Transport, pcm: bytes, sample_rate: int, num_channels: int) -> None:
        self.audio_frames += 1

    def on_transport_closed(self, transport: Transport, closed: TransportClosed) -> None:
        self._note()
        with self._cond:
            self.closed.append(closed)
            self._cond.notify_all()

    def on_transport_interruption(self, transport: Transport) -> None:
        self._note()

    def on_transport_reconnecting(self, transport: Transport) -> None:
        self._note()

    def on_transport_reconnected(self, transport: Transport) -> None:
        self._note()

    def on_transport_participant(self, transport: Transport, event: ParticipantJoined | ParticipantLeft) -> None:
        with self._cond:
            self.participants.append(event)
            self._cond.notify_all()

    def wait(self, check: Callable[[], object], timeout: float = WAIT) -> None:
        with self._cond:
            assert self._cond.wait_for(check, timeout), "condition not met in time"

    def wait_type(self, msg_type: str, after: int = 0) -> JSON:
        def find() -> JSON | None:
            return next((m for m in self.messages[after:] if etype(m) == msg_type), None)
        self.wait(lambda: find() is not None)
        found = find()
        assert found is not None
        return found


def etype(frame: JSON) -> str:
    data = frame.get("data")
    if frame.get("type") == "server-message" and isinstance(data, dict) and data.get("type"):
        return str(data["type"])
    return str(frame.get("type"))


def rtvi(msg_type: str, data: JSON | None = None) -> str:
    return json.dumps({"label": "rtvi-ai", "type": msg_type, "data": data or {}})


@dataclass
class Harness:
    """One transport under test and the server end behind it."""

    name: str
    sim: Simulator | None = None
    memory: MemoryServer | None = None
    endpoints: list[Endpoint] = field(default_factory=list)

    def transport(self) -> Transport:
        if self.memory is not None:
            self.memory = MemoryServer()
            return MemoryTransport(self.memory)
        assert self.sim is not None
        return create(self.sim.client_config(transport=self.name))

    def endpoint(self) -> Endpoint:
        if self.memory is not None:
            return Endpoint(session_id="memory", room_url="memory://")
        assert self.sim is not None
        api = ConnectApi(self.sim.client_config(transport=self.name))
        try:
            endpoint = api.connect(None, timeout=WAIT)
        finally:
            api.close()
        self.endpoints.append(endpoint)
        return endpoint

    def hanging_endpoint(self, server: HangingServer) -> Endpoint:
        if self.name == "livekit":
            return Endpoint(session_id="hang", room_url=f"ws://127.0.0.1:{server.port}", token="a.b.c",
                            transport="livekit")
        return Endpoint(session_id="hang", room_url=f"ws://127.0.0.1:{server.port}/chat?session_id=hang")

    def started(self, transport: Transport) -> None:
        """After open(): the server side says bot-ready (the simulator does so by itself)."""
        if self.memory is not None:
            self.memory.push({"label": "rtvi-ai", "type": "bot-ready", "data": {"version": "1.0.0"}})

    def answer(self, sent: list[str]) -> None:
        """The server acknowledges what was sent (the simulator does so by itself)."""
        if self.memory is not None:
            for raw in sent:
                self.memory.push({"type": "server-response", "event_type": json.loads(raw)["type"],
                                  "status": "success"})

    def server_close(self, endpoint: Endpoint) -> None:
        """The server ends the session (a room deletion / a close frame)."""
        if self.memory is not None:
            self.memory.close(4005, "room deleted")
            return
        assert self.sim is not None
        assert self.sim.inject(DisconnectReason.ROOM_DELETED, session_id=endpoint.session_id) == 1

    def release(self) -> None:
        if self.sim is None:
            return
        api = ConnectApi(self.sim.client_config(transport=self.name))
        try:
            for endpoint in self.endpoints:
                api.disconnect(endpoint.session_id, timeout=WAIT)
        finally:
            api.close()
        self.endpoints.clear()


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator() as server:
        yield server


@pytest.fixture(params=["websocket", "memory", "livekit"])
def harness(request: pytest.FixtureRequest, sim: Simulator) -> Iterator[Harness]:
    name = request.param
    h = Harness(name, memory=MemoryServer()) if name == "memory" else Harness(name, sim=sim)
    yield h
    h.release()


def _convai_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("convai-") and t.is_alive()}


def assert_threads_end(before: set[threading.Thread], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    for thread in _convai_threads() - before:
        thread.join(max(0.0, deadline - time.monotonic()))
        assert not thread.is_alive(), f"{thread.name} outlived the transport"


def opened(h: Harness, recorder: Recorder) -> tuple[Transport, Endpoint]:
    transport = h.transport()
    endpoint = h.endpoint()
    transport.open(endpoint, recorder, timeout=WAIT)
    h.started(transport)
    recorder.wait_type("bot-ready")
    return transport, endpoint


@pytest.mark.timeout(40)
def test_open_send_receive_in_order(harness: Harness) -> None:
    before = _convai_threads()
    recorder = Recorder()
    transport, _endpoint = opened(harness, recorder)
    mark = len(recorder.messages)
    kinds = ["reset-idle-timer", "tts-toggle", "update-template-keys"] * 4
    payloads: dict[str, JSON] = {"tts-toggle": {"enabled": True}, "update-template-keys": {"template_keys": {"k": "v"}}}
    sent = [rtvi(kind, payloads.get(kind)) for kind in kinds]
    for raw in sent:
        transport.send(raw)
    harness.answer(sent)
    recorder.wait(lambda: sum(etype(m) == "server-response" for m in recorder.messages[mark:]) >= len(kinds))
    acks = [m["event_type"] for m in recorder.messages[mark:] if etype(m) == "server-response"]
    assert acks == kinds  # acknowledgements come back in send order: FIFO end to end
    if harness.name == "livekit":
        kinds_seen = {(p.participant_type, p.is_local) for p in recorder.participants}
        assert kinds_seen == {(ParticipantType.LOCAL_PLAYER, True), (ParticipantType.CHARACTER, False)}
    transport.close(timeout=PROMPT)
    assert [c.initiator for c in recorder.closed] == ["client"]
    assert_threads_end(before)


@pytest.mark.timeout(40)
def test_close_is_idempotent_bounded_and_heard_once(harness: Harness) -> None:
    before = _convai_threads()
    recorder = Recorder()
    transport, _endpoint = opened(harness, recorder)
    others = [threading.Thread(target=transport.close, kwargs={"timeout": PROMPT}, name=f"closer-{i}")
              for i in range(3)]
    started = time.monotonic()
    for thread in others:
        thread.start()
    transport.close(timeout=PROMPT)
    transport.close(timeout=PROMPT)
    for thread in others:
        thread.join(WAIT)
    assert time.monotonic() - started < PROMPT + 2.0
    recorder.wait(lambda: recorder.closed)
    assert_threads_end(before)
    assert len(recorder.closed) == 1 and recorder.closed[0].initiator == "client"


@pytest.mark.timeout(40)
def test_close_from_the_listeners_thread(harness: Harness) -> None:
    before = _convai_threads()
    recorder = Recorder()
    returned: list[tuple[str, float]] = []

    def close_here(transport: Transport, message: JSON) -> None:
        if etype(message) == "server-response" and not returned:
            started = time.monotonic()
            transport.close(timeout=PROMPT)
            returned.append((threading.current_thread().name, time.monotonic() - started))

    transport, _endpoint = opened(harness, recorder)
    recorder.on_message = close_here
    transport.send(rtvi("reset-idle-timer"))
    harness.answer([rtvi("reset-idle-timer")])
    recorder.wait(lambda: returned and recorder.closed)
    (thread_name, seconds), = returned
    assert seconds < PROMPT
    if harness.name != "memory":
        assert thread_name.startswith("convai-")  # it really ran on the transport's own thread
    assert_threads_end(before)
    assert len(recorder.closed) == 1 and recorder.closed[0].initiator == "client"


@pytest.mark.timeout(40)
def test_send_after_close_raises(harness: Harness) -> None:
    recorder = Recorder()
    transport, _endpoint = opened(harness, recorder)
    transport.close(timeout=PROMPT)
    with pytest.raises(ConnectionError):
        transport.send(rtvi("reset-idle-timer"))
    if transport.supports_audio:
        with pytest.raises(ConnectionError):
            transport.send_audio(b"\0\0" * 320, 16000, 1, timeout=1.0)
    never_opened = harness.transport()
    with pytest.raises(ConnectionError):
        never_opened.send(rtvi("reset-idle-timer"))
    never_opened.close(timeout=PROMPT)  # closing a transport that never opened is a no-op


@pytest.mark.timeout(40)
def test_server_close_is_heard_once(harness: Harness) -> None:
    before = _convai_threads()
    recorder = Recorder()
    transport, endpoint = opened(harness, recorder)
    harness.server_close(endpoint)
    recorder.wait(lambda: recorder.closed)
    (closed,) = recorder.closed
    assert closed.initiator == "server"
    if harness.name == "livekit":
        assert closed.disconnect_reason is DisconnectReason.ROOM_DELETED and closed.code == 5
    transport.close(timeout=PROMPT)  # after a server close: nothing more is heard
    assert_threads_end(before)
    assert len(recorder.closed) == 1
    with pytest.raises(ConnectionError):
        transport.send(rtvi("reset-idle-timer"))


@pytest.mark.timeout(60)
def test_open_aborted_by_its_canceller_returns_promptly(harness: Harness) -> None:
    before = _convai_threads()
    recorder = Recorder()
    transport = harness.transport()
    canceller = Canceller("contract open")
    with HangingServer() as server:
        endpoint = harness.hanging_endpoint(server)
        if harness.memory is not None:
            canceller.abort("aborted before open")
        else:
            threading.Timer(0.3, canceller.abort, args=("aborted by the test",)).start()
        started = time.monotonic()
        with pytest.raises(TransportOpenError) as failed:
            transport.open(endpoint, recorder, timeout=2.0 if harness.name == "livekit" else WAIT,
                           canceller=canceller)
        assert time.monotonic() - started < PROMPT
        assert failed.value.error.error_code is ErrorCode.CONNECTION_TIMEOUT
        assert "abort" in failed.value.error.message
        if harness.memory is None:
            assert server.requests, "the transport never reached the server"
        assert_threads_end(before, SETTLE)
    transport.close(timeout=PROMPT)
    assert recorder.closed == [] and recorder.messages == []  # a failed open() reports nothing


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["websocket", "livekit"])
def test_audio_not_accepted_within_its_timeout_is_send_queue_full_on_every_transport(
        kind: str, sim: Simulator, peer_factory: Callable[..., Peer]) -> None:
    """Issue 20.4: the same condition (the server takes the user's audio more slowly than it is
    sent, until ``timeout``) raises the same documented error on both transports: the transport's
    ``OutboxFull``, which the client raises as ``SendQueueFullError``. On LiveKit it was a plain
    ConnectionError (the client's InvalidStateError)."""
    if kind == "websocket":
        peer = peer_factory(after_ready="stall")  # stops reading: the TCP buffers and the queue fill
        config = ConvaiConfig(api_key="k", character_id="c", url=peer.url, send_queue_bytes=64 * 1024,
                              retry_policy=RetryPolicy(max_attempts=1),
                              reconnect_policy=ReconnectPolicy(max_attempts=0))
    else:  # the microphone takes audio at real time: 5 s of it cannot be accepted in 0.3 s
        config = sim.client_config(transport="livekit")
    five_seconds = bytes(2 * 16000 * 5)
    with ConvaiClient(config) as client:
        client.connect(timeout=WAIT)
        with pytest.raises(SendQueueFullError) as info:
            for _ in range(100):  # far more than the kernel buffers and the queue hold
                started = time.monotonic()
                client.send_audio(five_seconds, 16000, timeout=0.3)
        assert time.monotonic() - started < 0.3 + PROMPT
        assert "audio not sent" in str(info.value)
        assert isinstance(info.value, InvalidStateError)  # catchable as documented
