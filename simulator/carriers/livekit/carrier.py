"""The LiveKit carrier of one session: one participant connection (signal WebSocket + peer connection).

RTVI JSON goes out as reliable ``DataPacket{user: UserPacket{payload, topic=""}}`` from the character's
identity on the client's ``_reliable`` data channel; client packets are accepted whatever their topic and
channel. Until the channel is open and the character has joined, outgoing messages wait in a bounded queue.
The character's voice is this connection's :class:`~simulator.carriers.livekit.media.VoiceTrack`; the user's
microphone is heard by a :class:`~simulator.carriers.livekit.media.Listener`. A client data packet becomes an
RTVI message for the core here (:meth:`LiveKitCarrier._read_inbox` -> ``simulator.core.messages.handle_text``).
:class:`LiveKitSession` (a session's room, settings and current connection) lives here too, beside the carrier
that reads it, so that the carrier needs nothing from :mod:`.service`. Loop thread only.

Send deadlines (as on the ``/chat`` WebSocket, ``simulator.core.carrier``): a client that stops reading cannot
stall other sessions. Its data channel is flow-controlled: once the reliable channel holds more than
:data:`~simulator.carriers.livekit.peer.HIGH_WATER` bytes the client has not acknowledged, a send waits for it to drain,
for at most ``send_timeout`` seconds, and then the session is dropped as a slow consumer. A signal message
(``pong``, ``answer``, ``leave``, ...) that waits longer than ``send_timeout`` for the client to read its
signal WebSocket drops the session the same way. A slow consumer's connection is dropped without a goodbye
(signal WebSocket aborted, peer connection closed): it would not read one. A message larger than the
client's SDP ``max-message-size`` cannot travel on a data channel; it is dropped with a warning.

Inbound, at most :data:`INBOX_LIMIT_BYTES` of the client's data packets wait to be handled (the message core
handles them one at a time, with the same text bounds as ``/chat`` frames); packets beyond that are dropped
with a warning.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, web
from aiortc import MediaStreamTrack
from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc

from simulator.carriers.livekit import faults, media
from simulator.carriers.livekit.faults import Ending, Plan
from simulator.carriers.livekit.peer import HIGH_WATER, PeerLink
from simulator.carriers.livekit.room import RoomState, data_packet, leave, track_subscribed
from simulator.carriers.toxiclink import ToxicLink, pause_transport, reset_transport
from simulator.core import messages, speech, wire
from simulator.core.carrier import SlowConsumer, send_bounded
from simulator.core.sessions import Phase, SimSession

if TYPE_CHECKING:
    from collections.abc import Callable

    from simulator.core.state import SimCore

logger = logging.getLogger("simulator.livekit.carrier")

#: Messages kept while the data channel is not open yet (oldest dropped beyond this, with a warning).
PENDING_LIMIT = 1000
#: Bound on waiting for the last messages (e.g. ``usage-limit-reached``) to leave before a ``leave``, and the
#: head start they get over it: data packets and the leave travel on different connections.
DRAIN_TIMEOUT = 0.5
LEAVE_HEAD_START = 0.02
#: Bytes of client data packets waiting to be handled (the ``/chat`` WebSocket's 16 MB message bound).
INBOX_LIMIT_BYTES = 16 * 1024 * 1024


@dataclass
class LiveKitSession:
    """A LiveKit session's room and settings (the session itself is the core's :class:`SimSession`)."""

    session: SimSession
    room: RoomState
    #: Effective ``audio_config.output`` (see ``simulator.carriers.livekit.check_audio_config``).
    output: dict[str, Any]
    #: The connection currently carrying the session (None before the join and after the end).
    carrier: LiveKitCarrier | None = None
    #: Why the session ended, for clients that try to resume it afterwards.
    end_plan: faults.Plan | None = None
    connections: int = 0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def ended(self) -> bool:
        return self.session._phase is Phase.ENDED


class PacketInbox:
    """Client data packets waiting to be handled, at most ``limit_bytes`` of them (loop thread only)."""

    def __init__(self, limit_bytes: int) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._bytes = 0
        self._limit = limit_bytes
        #: Packets refused because the inbox was full.
        self.dropped = 0

    def put(self, raw: bytes) -> bool:
        """Queue ``raw``; False (and counted in :attr:`dropped`) when it would take the inbox over its limit."""
        if self._bytes + len(raw) > self._limit:
            self.dropped += 1
            return False
        self._bytes += len(raw)
        self._queue.put_nowait(raw)
        return True

    def close(self) -> None:
        """Wake the reader with None (queued behind the packets already waiting)."""
        self._queue.put_nowait(None)

    async def get(self) -> bytes | None:
        """The oldest waiting packet, or None once closed."""
        raw = await self._queue.get()
        if raw is not None:
            self._bytes -= len(raw)
        return raw


class LiveKitCarrier:
    """One participant connection carrying a LiveKit session (see the module docstring)."""

    kind = "livekit"

    def __init__(self, core: SimCore, carriers: set[LiveKitCarrier], lk: LiveKitSession, ws: web.WebSocketResponse,
                 transport: asyncio.Transport | None) -> None:
        self._carriers = carriers  # the service's open connections; this one leaves it when disposed
        self._lk = lk
        self._core = core
        self._ws = ws
        self._transport = transport
        self._pending: collections.deque[bytes] = collections.deque()
        self._inbox = PacketInbox(INBOX_LIMIT_BYTES)
        self._send_timeout = self._core.config.send_timeout
        self._tasks: set[asyncio.Task[Any]] = set()
        self._close_code: int | None = None
        self._disposed = False
        self.detached = False
        self.voice = media.VoiceTrack(self._voice_sent)
        self.link = PeerLink(self._core.config.livekit_host_addresses, self._received, self._user_track,
                             self.flush, self._core.spawn, self._core.config.ice_servers)
        #: The network faults acting on this connection (``simulator.carriers.toxiclink``).
        self.toxics = ToxicLink(self._core.toxics, lk.session.session_id, self.kind, self, self._core.loop)
        self._spawn(self._read_inbox())

    def _voice_sent(self, seconds: float) -> None:
        self._lk.session.sent_voice_seconds += seconds

    def __repr__(self) -> str:
        return f"LiveKitCarrier(room={self._lk.room.name!r}, session={self._lk.session.session_id!r})"

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self._core.spawn(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ Carrier

    @property
    def close_code(self) -> int | None:
        return self._close_code

    async def send_text(self, text: str) -> bool:
        if self._disposed or self.detached:
            return False
        room = self._lk.room
        packet = data_packet(text.encode("utf-8"), room.character_id, room.character_sid)
        toxics = self.toxics
        if toxics.active:
            if toxics.oversized(len(packet)):
                logger.info("session %s: a %d-byte data packet dropped (oversized_data toxic)",
                            self._lk.session.session_id, len(packet))
                return True
            return await toxics.outbound(packet, None, lambda: self._send_data(packet))
        return await self._send_data(packet)

    async def _send_data(self, packet: bytes) -> bool:
        if self._disposed or self.detached:
            return False
        room = self._lk.room
        if self._pending or not room.character_joined or not self._send_packet(packet):
            if len(self._pending) >= PENDING_LIMIT:
                self._pending.popleft()
                logger.warning("session %s: data channel not open; oldest queued message dropped",
                               self._lk.session.session_id)
            self._pending.append(packet)
            return True
        if not await self.link.writable(self._send_timeout):
            raise SlowConsumer(f"the data channel held over {HIGH_WATER} unacknowledged bytes for "
                               f"{self._send_timeout:g} s")
        return True

    def _send_packet(self, packet: bytes) -> bool:
        """Hand one packet to the data channel; False while it is not open (an oversize packet is dropped)."""
        try:
            return self.link.send(packet)
        except ValueError as exc:  # over the client's max-message-size: it could never arrive
            logger.warning("session %s: message dropped: %s", self._lk.session.session_id, exc)
            return True

    def flush(self) -> None:
        """Send queued messages once the channel is open and the character is in the room."""
        if not self._lk.room.character_joined:
            return
        while self._pending and self._send_packet(self._pending[0]):
            self._pending.popleft()

    async def speak(self, text: str, stop: Callable[[], bool]) -> None:
        voice = await speech.synthesize(self._core, self._lk.session, text)
        if voice is None:
            return
        pcm, rate = voice
        await media.speak(pcm, rate, self._lk.output, self.voice, self._lk.session._send,
                          lambda: stop() or self._disposed)

    async def close(self, code: int, reason: str) -> None:
        if self.toxics.active:
            await self.toxics.before_close()
        plan = faults.for_close(code, reason)
        self._lk.end_plan = plan
        await self.end(plan)

    def abort(self, reason: str) -> None:
        plan = faults.for_abort(reason)
        self._lk.end_plan = plan
        self._spawn(self.end(plan))

    # ------------------------------------------------------------------ simulator.carriers.toxiclink.Wire

    def reset_connection(self) -> None:
        """A toxic resets the connection: the signal WebSocket's TCP gets RST and the peer connection closes,
        as when the server's host vanishes (the client resumes, and is told to rejoin)."""
        reset_transport(self._transport)
        self._spawn(self.link.close())

    def drop_connection(self) -> None:
        """A toxic drops the connection: the signal WebSocket without a close frame, the peer connection
        closed, no ``leave``."""
        self.drop_signal()
        self._spawn(self.link.close())

    def pause_reading(self, paused: bool) -> None:
        """Stop (True) or restart (False) reading the signal WebSocket (data packets wait in the inbox)."""
        pause_transport(self._transport, paused)

    def leave(self, action: str) -> None:
        """Send ``leave{reason: SERVER_SHUTDOWN, action}`` as LiveKit's ``SimulateScenario`` server leave does;
        ``action`` is ``"resume"``, ``"reconnect"`` or ``"disconnect"``."""
        value = {"resume": rtc.LeaveRequest.RESUME, "reconnect": rtc.LeaveRequest.RECONNECT,
                 "disconnect": rtc.LeaveRequest.DISCONNECT}[action]
        self._spawn(self.send_signal(leave(models.DisconnectReason.SERVER_SHUTDOWN, value)))

    # ------------------------------------------------------------------ endings

    async def end(self, plan: Plan) -> None:
        """Carry out ``plan`` on this connection."""
        logger.info("session %s: LiveKit %s (%s)", self._lk.session.session_id, plan.ending.value, plan.reason.name)
        if plan.ending is Ending.LEAVE:
            await self.link.drain(DRAIN_TIMEOUT)
            await asyncio.sleep(LEAVE_HEAD_START)
            await self.send_signal(leave(int(plan.reason)))
            await self.dispose()
        elif plan.ending is Ending.WITHHOLD:
            await self.link.withhold()
        elif plan.ending is Ending.CLOSE_PEER:
            await self.link.close()
        elif plan.ending is Ending.DROP_SIGNAL:
            self.drop_signal()
        else:
            self.drop_signal()
            await self.link.close()

    async def send_signal(self, message: rtc.SignalResponse) -> bool:
        """Send one signal message within the send deadline; False when it could not be sent (a client that
        did not read it in time is dropped as a slow consumer)."""
        ws = self._ws
        if ws.closed:
            return False
        data = message.SerializeToString()
        try:
            await send_bounded(self._transport, lambda: ws.send_bytes(data), len(data) + 16, self._send_timeout)
        except SlowConsumer:
            self._signal_stalled()
            return False
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("signal send failed: %s", exc)
            return False
        return True

    def _signal_stalled(self) -> None:
        session = self._lk.session
        if self._lk.carrier is self and not self.detached and session._phase is Phase.OPEN:
            session._slow_consumer()  # ends the session; its abort drops this connection
        else:
            logger.warning("room %s: a signal message waited more than %.1f s for the client to read; dropping "
                           "the connection", self._lk.room.name, self._send_timeout)
        self.drop_signal()

    def drop_signal(self) -> None:
        """Drop the signal connection without a close frame (also when a graceful close is pending)."""
        transport = self._transport
        if transport is not None:
            # abort() also discards data a stalled client never read; close() would wait for it forever.
            transport.abort()

    async def detach(self, reason: int | None) -> None:
        """Stop carrying the session (a newer connection took it over); ``reason`` is sent as a leave."""
        self.detached = True
        if reason is not None:
            await self.send_signal(leave(reason))
        await self.dispose()

    async def dispose(self) -> None:
        """Close the signal WebSocket and the peer connection and stop this connection's tasks (idempotent)."""
        if self._disposed:
            return
        self._disposed = True
        self.toxics.close()
        self.voice.stop()
        self._inbox.close()
        if not self._ws.closed:
            try:
                await asyncio.wait_for(self._ws.close(code=WSCloseCode.OK), 1.0)
            except (asyncio.TimeoutError, ConnectionError, RuntimeError) as exc:
                logger.debug("signal close failed: %s", exc)
                self.drop_signal()
        await self.link.close()
        current = asyncio.current_task()
        for task in [t for t in self._tasks if t is not current]:
            task.cancel()
        self._carriers.discard(self)

    def client_left(self, reason: int) -> None:
        """The client sent ``leave`` (its DisconnectReason ``reason``)."""
        self._close_code = faults.REASON_CLOSE_BASE + reason

    # ------------------------------------------------------------------ inbound

    def _received(self, raw: bytes) -> None:
        """A data packet from the client (called by aiortc); queued for :meth:`_read_inbox`, within bounds."""
        if self.toxics.active and self.toxics.oversized(len(raw)):
            logger.info("session %s: a %d-byte client data packet dropped (oversized_data toxic)",
                        self._lk.session.session_id, len(raw))
            return
        inbox = self._inbox
        if not inbox.put(raw) and (inbox.dropped == 1 or inbox.dropped % 1000 == 0):
            logger.warning("session %s: %d client data packets dropped: over %d bytes wait to be handled",
                           self._lk.session.session_id, inbox.dropped, INBOX_LIMIT_BYTES)

    async def _read_inbox(self) -> None:
        session = self._lk.session
        while True:
            raw = await self._inbox.get()
            if raw is None or session._phase is Phase.ENDED or self.detached:
                return
            if self.toxics.active and not await self.toxics.inbound(len(raw)):
                continue
            try:
                packet = models.DataPacket.FromString(raw)
            except DecodeError:
                logger.warning("session %s: undecodable data packet ignored", session.session_id)
                continue
            if packet.WhichOneof("value") != "user":
                continue
            try:
                text = packet.user.payload.decode("utf-8")
            except UnicodeDecodeError:
                await session._send(wire.parse_error_ack())
                continue
            await messages.handle_text(self._core, session, text)

    def _user_track(self, track: MediaStreamTrack) -> None:
        listener = media.Listener(self._heard_audio, self._speech_started, self._utterance)
        self._spawn(listener.run(track))
        # The client's msid track id is the AddTrackRequest cid; tell it the character now listens.
        cid = self.link.client_track_id(track)
        sid = None if cid is None else self._lk.room.user_track_cids.get(cid)
        if sid is not None:
            self._spawn(self.send_signal(track_subscribed(sid)))

    def _heard_audio(self, seconds: float) -> None:
        self._lk.session.received_audio_seconds += seconds

    async def _speech_started(self) -> None:
        await speech.heard_started(self._lk.session)

    async def _utterance(self, pcm: bytes, rate: int, channels: int) -> None:
        await speech.heard_utterance(self._core, self._lk.session, pcm, rate, channels)
