"""A LiveKit participant for load generation that does no media work: aiortc signalling, data, and RTP timing.

The capacity row measures the simulator, so its load generator must cost far less than the simulator it
loads. The real ``livekit`` client does not on a 2-core machine: its libwebrtc receive pipeline (a jitter
buffer, decoding and mixing every subscribed stream every 10 ms on its "synthetic audio device" thread)
costs about 0.01 core per session whether or not anything reads the audio. This participant speaks the same
protocol as that client (``GET /rtc/v1`` with a ``WrappedJoinRequest`` carrying the publisher offer, LiveKit's
single peer connection, ``_reliable``/``_lossy`` data channels, a receive-only audio m-line, answering
``media_sections_requirement``, pings) through aiortc, and notes each RTP packet of the character's voice
as it arrives (time, RTP timestamp, payload size) instead of decoding it.

What it records per packet is what the row needs: the first packet of the reply's voice (the simulator sends
no RTP between utterances, and Opus packs silence in a few bytes, so a payload over ``VOICED_BYTES`` is
voiced audio) and whether the packets arrived in real time (arrival span against RTP-timestamp span).
The real client's view (decoded audio through NetEq) is in the ``LiveKit`` rows of ``bench/run.py``.

One event loop, one thread (the generator's); aiortc and aioice work on it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import aioice.ice
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from livekit.protocol import models, rtc

from bench.rows_livekit import Inbox

#: An Opus payload (bytes) above which a 20 ms packet carries voice rather than silence.
VOICED_BYTES = 20
OPUS_RATE = 48_000
WAIT = 30.0


def loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """aioice's host addresses for this process: 127.0.0.1 only (aioice leaves loopback out, and the
    simulator, which binds 127.0.0.1, offers nothing else)."""
    return ["127.0.0.1"] if use_ipv4 else []


aioice.ice.get_host_addresses = loopback_only

#: What each receiver heard: (arrival on time.monotonic(), RTP timestamp, payload bytes) per packet.
_HEARD: dict[int, list[tuple[float, int, int]]] = {}


async def _note_packet(self: RTCRtpReceiver, packet: Any, arrival_time_ms: int) -> None:
    """Replaces aiortc's per-packet receive (jitter buffer and decoder thread): note, never decode."""
    _HEARD.setdefault(id(self), []).append((time.monotonic(), packet.timestamp, len(packet.payload)))


RTCRtpReceiver._handle_rtp_packet = _note_packet  # type: ignore[method-assign]


@dataclass
class WireRoom(Inbox):
    """One participant: its peer connection, signal WebSocket, data messages and voice packets."""

    #: The voice's packets are noted without waking anyone (see ``_note_packet``), so waits re-check.
    poll = 0.05

    pc: RTCPeerConnection = field(default_factory=RTCPeerConnection)
    messages: list[tuple[float, str]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    http: aiohttp.ClientSession | None = None
    ws: aiohttp.ClientWebSocketResponse[bool] | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    reliable: Any = None
    receiver: RTCRtpReceiver | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def packets(self) -> list[tuple[float, int, int]]:
        return _HEARD.setdefault(id(self.receiver), []) if self.receiver is not None else []

    async def connect(self, room_url: str, token: str) -> None:
        self.reliable = self.pc.createDataChannel("_reliable")
        self.pc.createDataChannel("_lossy", ordered=False, maxRetransmits=0)
        self.reliable.on("message", self._data)
        self.receiver = self.pc.addTransceiver("audio", direction="recvonly").receiver
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = rtc.SessionDescription(type="offer", sdp=self.pc.localDescription.sdp, id=1)
        join = rtc.JoinRequest(publisher_offer=offer)
        wrapped = rtc.WrappedJoinRequest(join_request=join.SerializeToString())
        query = urlencode({"access_token": token, "auto_subscribe": "1", "sdk": "python", "protocol": "16",
                           "join_request": base64.urlsafe_b64encode(wrapped.SerializeToString()).decode()})
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=WAIT))
        self.ws = await self.http.ws_connect(f"{room_url.rstrip('/')}/rtc/v1?{query}", max_msg_size=1 << 22)
        self.tasks.append(asyncio.ensure_future(self._signals()))
        await asyncio.wait_for(self.answered.wait(), WAIT)

    async def _signals(self) -> None:
        assert self.ws is not None
        ping_interval = 5.0
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.BINARY:
                continue
            signal = rtc.SignalResponse.FromString(message.data)
            which = signal.WhichOneof("message")
            if which == "join":
                ping_interval = float(signal.join.ping_interval or 5)
                self.tasks.append(asyncio.ensure_future(self._ping(ping_interval)))
            elif which == "answer":
                await self.pc.setRemoteDescription(RTCSessionDescription(signal.answer.sdp, "answer"))
                self.answered.set()
            elif which == "media_sections_requirement":
                # The character joined after the first offer: offer again so it can attach its voice.
                await self.pc.setLocalDescription(await self.pc.createOffer())
                await self._send(rtc.SignalRequest(offer=rtc.SessionDescription(
                    type="offer", sdp=self.pc.localDescription.sdp, id=2)))
            elif which == "leave":
                break

    async def _ping(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            now = int(time.time() * 1000)
            await self._send(rtc.SignalRequest(ping_req=rtc.Ping(timestamp=now)))

    async def _send(self, request: rtc.SignalRequest) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.send_bytes(request.SerializeToString())

    def _data(self, raw: bytes | str) -> None:
        if isinstance(raw, str):
            return
        packet = models.DataPacket.FromString(raw)
        frame = json.loads(packet.user.payload)
        data = frame.get("data")
        kind = data.get("type") if frame.get("type") == "server-message" and isinstance(data, dict) else None
        self.messages.append((time.monotonic(), str(kind or frame.get("type"))))
        self.changed.set()

    def send(self, msg_type: str, data: dict[str, Any]) -> None:
        packet = models.DataPacket(kind=models.DataPacket.RELIABLE)
        packet.user.payload = json.dumps({"label": "rtvi-ai", "type": msg_type, "data": data}).encode()
        self.reliable.send(packet.SerializeToString())

    async def close(self) -> None:
        await self._send(rtc.SignalRequest(leave=rtc.LeaveRequest(reason=models.DisconnectReason.CLIENT_INITIATED)))
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()
        await self.pc.close()
        _HEARD.pop(id(self.receiver), None)


async def ask(room: WireRoom) -> dict[str, float]:
    """One spoken reply, in seconds from sending: the ack, ``bot-started-speaking``, the first voiced packet;
    how far the voiced packets' arrival outran real time (``stall``); and the turn's end after the last one."""
    mark, packet_mark = len(room.messages), len(room.packets)
    sent = time.monotonic()
    room.send("user_text_message", {"text": "hello"})
    acked = await room.wait(lambda: room.index_of("server-response", mark))
    spoke = await room.wait(lambda: room.index_of("bot-started-speaking", mark))
    await room.wait(lambda: any(size > VOICED_BYTES for _, _, size in room.packets[packet_mark:]))
    ended = await room.wait(lambda: room.index_of("bot-turn-completed", mark))
    voiced = [p for p in room.packets[packet_mark:] if p[2] > VOICED_BYTES]
    first, last = voiced[0], voiced[-1]
    span = ((last[1] - first[1]) % 2**32) / OPUS_RATE  # the RTP clock: what real time would take
    return {"ack": room.messages[acked][0] - sent, "speaking": room.messages[spoke][0] - sent,
            "audio": first[0] - sent, "stall": (last[0] - first[0]) - span,
            "done": room.messages[ended][0] - last[0]}
