"""The LiveKit side against clients that stop reading and against oversized signalling input.

A LiveKit session has two wires a client can stop reading: its data channel (the reliable ``_reliable``
channel carrying RTVI messages) and its signal WebSocket. Either one stalling must drop that session as a
slow consumer after ``send_timeout`` (slot freed, connection dropped) without holding up other sessions,
injections or ``Simulator.stop()``, exactly as a stalled ``/chat`` WebSocket (``test_simulator_hardening``).

The data-channel peer is the real ``livekit`` client in a child process frozen with ``SIGSTOP``
(``tests/support/idle_participant.py``): a hung or suspended client, which stops acknowledging SCTP data and
reading its signal socket at once. The signal-only peer is a raw WebSocket client that joins and then never
reads. Deadlines are generous: a test asserts that something happens before a deadline, never how fast.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from livekit.protocol import models, rtc

from simulator import Simulator
from simulator.carriers.livekit.carrier import PacketInbox
from tests.livekit_helpers import HTTP_TIMEOUT, Participant, connect_info
from tests.sim_helpers import assert_connection_ended, close_all_sockets, open_session, recv, recv_until, send

pytestmark = pytest.mark.timeout(30)

JSON = dict[str, Any]
PARTICIPANT = Path(__file__).parent / "support" / "idle_participant.py"
JOIN_WAIT = 30.0
#: The reliable channel's documented high-water mark (simulator.carriers.livekit.peer), written out.
HIGH_WATER = 1024 * 1024
#: An RTVI message well under a data channel's 64 KiB default max-message-size; 30 of them exceed HIGH_WATER.
PAD = 50_000
#: A receive buffer the kernel rounds up to a few KiB: the client's window closes almost at once.
TINY_RCVBUF = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    close_all_sockets()


def assert_still_talking(ws: websocket.WebSocket, text: str) -> None:
    send(ws, "user_text_message", {"text": text})
    assert recv(ws)["status"] == "success"
    frames = recv_until(ws, "bot-turn-completed")
    assert f"You said: {text}" in "".join(f["data"]["text"] for f in frames if f.get("type") == "bot-llm-text")


def slow_consumer_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "slow consumer" in r.getMessage()]


# ============================================================== a frozen client: its data channel fills


class FrozenParticipant:
    """The real client in a child process, joined, then frozen (SIGSTOP) until :meth:`kill`."""

    def __init__(self, info: JSON) -> None:
        self.process = subprocess.Popen([sys.executable, str(PARTICIPANT), info["room_url"], info["token"]],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], JOIN_WAIT)
        line = self.process.stdout.readline().strip() if ready else ""
        if line != "joined":
            self.kill()
            raise AssertionError(f"the child client did not join within {JOIN_WAIT} s (said {line!r})")
        os.kill(self.process.pid, signal.SIGSTOP)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)  # also ends a stopped process
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def padded(n: int) -> JSON:
    return {"type": "server-message", "data": {"type": "padding", "n": n, "pad": "p" * PAD}}


def test_a_frozen_livekit_client_is_dropped_as_a_slow_consumer(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="simulator"), Simulator(send_timeout=0.5) as sim:
        _, healthy = open_session(sim)
        info = connect_info(sim)
        frozen = FrozenParticipant(info)
        try:
            session = next(s for s in sim.sessions if s.session_id == info["session_id"])
            sent = 0
            with pytest.raises(ValueError, match="no live session"):
                # Each send returns at once until the channel holds HIGH_WATER bytes the client never
                # acknowledged; the next one waits send_timeout and the session is dropped.
                for sent in range(4 * HIGH_WATER // PAD):
                    sim.send_frame(info["session_id"], padded(sent))
            assert sent * PAD >= HIGH_WATER  # no send waited before the channel held HIGH_WATER bytes
            sim.wait_for_slots(1, timeout=10.0)  # the frozen session's slot is freed
            assert sim.stats()["sessions"] == {"open": 1, "pending": 0}
            assert (session.close_code, session.close_reason) == (1006, "slow consumer")
            assert_still_talking(healthy, "still there?")
        finally:
            frozen.kill()
    dropped = slow_consumer_warnings(caplog)
    assert len(dropped) == 1 and "waited more than 0.5 s" in dropped[0]


def test_a_frozen_livekit_client_does_not_stall_others_inject_or_stop() -> None:
    sim = Simulator(send_timeout=30.0).start()  # long enough that the client stays stalled throughout
    frozen: FrozenParticipant | None = None
    try:
        info = connect_info(sim)
        frozen = FrozenParticipant(info)  # first, so every fan-out meets it before the healthy session
        _, healthy = open_session(sim)
        for n in range(2 * HIGH_WATER // PAD):  # twice the data channel's high-water mark
            error = f"{n:04d}" + "e" * PAD
            assert sim.inject("server.error", error=error) == 2
            assert recv_until(healthy, "error")[-1]["data"] == {"error": error, "fatal": False}
        assert_still_talking(healthy, "healthy")
        assert sim.stats()["sessions"]["open"] == 2  # the frozen one is still waiting, not yet dropped
        started = time.monotonic()
        sim.stop()
        assert time.monotonic() - started < 10.0
    finally:
        sim.stop()
        if frozen is not None:
            frozen.kill()


# ============================================================== a client that stops reading its signal WebSocket


def join_query(join: rtc.JoinRequest, *, compressed: bool = False) -> str:
    body = join.SerializeToString()
    wrapped = rtc.WrappedJoinRequest(join_request=gzip.compress(body) if compressed else body,
                                     compression=rtc.WrappedJoinRequest.GZIP if compressed else
                                     rtc.WrappedJoinRequest.NONE)
    return base64.urlsafe_b64encode(wrapped.SerializeToString()).decode().rstrip("=")


def a_join() -> rtc.JoinRequest:
    """A join without a publisher offer: the simulator answers ``join`` and opens the session."""
    return rtc.JoinRequest(client_info=models.ClientInfo(sdk=models.ClientInfo.PYTHON, protocol=16))


def signal_client(info: JSON, *, compressed: bool = False, **options: Any) -> websocket.WebSocket:
    """A raw signal WebSocket joined to the session's room; its first message (``join``) is read."""
    query = join_query(a_join(), compressed=compressed)
    ws = websocket.create_connection(f"{info['room_url']}/rtc/v1?join_request={query}",
                                     header=[f"Authorization: Bearer {info['token']}"], timeout=2.0, **options)
    assert signal_message(ws).WhichOneof("message") == "join"
    return ws


def signal_message(ws: websocket.WebSocket) -> rtc.SignalResponse:
    data = ws.recv()
    assert isinstance(data, bytes)
    return rtc.SignalResponse.FromString(data)


def add_track(n: int, size: int = 10) -> bytes:
    request = rtc.AddTrackRequest(cid=f"{n}-" + "c" * size, name="n" * size, type=models.AUDIO)
    return rtc.SignalRequest(add_track=request).SerializeToString()


def stall_signal(ws: websocket.WebSocket) -> None:
    """Ask for more answers than can be in flight to a client that does not read: 16 ``track_published``
    echoing a 500 KB ``cid`` and ``name`` each, 16 MB in all, against a socket send buffer Linux grows to
    4 MiB at most (``tcp_wmem``), asyncio's 64 KiB write buffer and this client's few KiB receive buffer. The
    client's own sends may block or fail once the server stops reading or drops it; that ends the flood."""
    for n in range(16):
        try:
            ws.send_binary(add_track(n, 500_000))
        except (websocket.WebSocketTimeoutException, websocket.WebSocketConnectionClosedException, OSError):
            return


def test_a_stalled_signal_websocket_is_dropped_as_a_slow_consumer(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="simulator"), Simulator(send_timeout=0.5) as sim:
        _, healthy = open_session(sim)
        stalled = signal_client(connect_info(sim), sockopt=TINY_RCVBUF)
        try:
            stall_signal(stalled)
            sim.wait_for_slots(1, timeout=10.0)
            assert sim.stats()["sessions"] == {"open": 1, "pending": 0}
            assert_connection_ended(stalled)
            assert_still_talking(healthy, "still there?")
        finally:
            stalled.shutdown()  # type: ignore[no-untyped-call]
    dropped = slow_consumer_warnings(caplog)
    assert len(dropped) == 1 and "waited more than 0.5 s" in dropped[0]


def test_a_stalled_signal_websocket_does_not_stall_others_or_stop() -> None:
    sim = Simulator(send_timeout=30.0).start()
    stalled = signal_client(connect_info(sim), sockopt=TINY_RCVBUF)
    try:
        _, healthy = open_session(sim)
        stall_signal(stalled)
        assert sim.inject("server.error", error="to everyone") == 2
        assert recv_until(healthy, "error")[-1]["data"] == {"error": "to everyone", "fatal": False}
        assert_still_talking(healthy, "healthy")
        started = time.monotonic()
        sim.stop()
        assert time.monotonic() - started < 10.0
        assert_connection_ended(stalled)
    finally:
        sim.stop()
        stalled.shutdown()  # type: ignore[no-untyped-call]


# ============================================================== bounded signalling input


@pytest.mark.timeout(30)
def test_a_participant_publishes_at_most_16_tracks(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="simulator"), Simulator() as sim:
        ws = signal_client(connect_info(sim))
        for n in range(17):
            ws.send_binary(add_track(n))
        ws.send_binary(rtc.SignalRequest(ping_req=rtc.Ping(timestamp=7)).SerializeToString())
        answers = [signal_message(ws) for _ in range(17)]  # handled in order: 16 publications, then the pong
        assert [a.track_published.cid.split("-")[0] for a in answers[:16]] == [str(n) for n in range(16)]
        assert answers[16].WhichOneof("message") == "pong_resp"
        assert answers[16].pong_resp.last_ping_timestamp == 7
        ws.close()
    assert any("add_track ignored" in r.getMessage() for r in caplog.records)


@pytest.mark.timeout(30)
def test_a_compressed_join_request_is_bounded_when_decompressed() -> None:
    with Simulator() as sim:
        info = connect_info(sim)
        headers = {"Authorization": f"Bearer {info['token']}"}
        url = f"{sim.url}/rtc/v1"
        bomb = a_join()
        bomb.client_info.os = "x" * (2 * 1024 * 1024)  # 2 MiB of text that gzips to a few KiB
        refused = requests.get(url, params={"join_request": join_query(bomb, compressed=True)}, headers=headers,
                               timeout=HTTP_TIMEOUT)
        assert refused.status_code == 400 and "decompresses to more than 1048576 bytes" in refused.text
        truncated = rtc.WrappedJoinRequest(join_request=gzip.compress(a_join().SerializeToString())[:-4],
                                           compression=rtc.WrappedJoinRequest.GZIP)
        query = base64.urlsafe_b64encode(truncated.SerializeToString()).decode()
        answer = requests.get(url, params={"join_request": query}, headers=headers, timeout=HTTP_TIMEOUT)
        assert answer.status_code == 400 and "undecodable join_request" in answer.text
        # A small compressed join is accepted: the session opens.
        signal_client(info, compressed=True).close()
        sim.wait_for_session()


@pytest.mark.timeout(10)
def test_the_data_packet_inbox_is_bounded_in_bytes() -> None:
    async def scenario() -> None:
        inbox = PacketInbox(limit_bytes=10)
        assert inbox.put(b"12345") and inbox.put(b"6789")
        assert not inbox.put(b"ab")  # 11 bytes would wait: refused, counted
        assert inbox.dropped == 1
        assert await inbox.get() == b"12345"
        assert inbox.put(b"ab")  # room again once one was handled
        inbox.close()
        assert [await inbox.get() for _ in range(3)] == [b"6789", b"ab", None]

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_a_message_over_the_clients_max_message_size_is_dropped_and_the_session_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(sim: Simulator) -> None:
        info = connect_info(sim)
        client = Participant()
        try:
            await client.join(info)
            await client.wait_message("bot-ready")
            # libwebrtc offers a max-message-size of 256 KiB: this error frame cannot travel on a data channel.
            assert sim.inject("server.error", session_id=info["session_id"], error="x" * 300_000) == 1
            assert sim.inject("server.error", session_id=info["session_id"], error="small") == 1
            error = await client.wait_message("error")
            assert error["data"] == {"error": "small", "fatal": False}
            assert sim.stats()["sessions"]["open"] == 1
        finally:
            await client.close()

    with caplog.at_level(logging.WARNING, logger="simulator"), Simulator() as sim:
        asyncio.run(scenario(sim))
    dropped = [r.getMessage() for r in caplog.records if "message dropped" in r.getMessage()]
    assert len(dropped) == 1 and "up to 262144 bytes" in dropped[0], dropped
