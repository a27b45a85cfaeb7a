"""LiveKit transport (extra ``livekit``): a Convai session's LiveKit room through ``livekit.rtc``.

``livekit`` is imported when a transport opens, never at import time; without it ``open()`` fails
with ``transport.livekit_error`` naming the extra (``pip install 'convai-sync[livekit]'``).

Thread ownership: each transport owns one thread, ``convai-livekit-<n>``
(:class:`~convai_sync.transports.aioloop.LoopThread`), running a private asyncio loop that owns
the ``rtc.Room`` (built inside a coroutine on that loop), its event handlers, the publisher task,
the voice readers and the microphone. Every listener callback runs on that thread. Public methods
hand work over to the loop and wait with deadlines measured from the call; ``send()`` never waits.
Underneath, the ``livekit`` library runs native threads of its own (its Rust runtime and
libwebrtc: measured with ``livekit`` 1.2.1, 2 before the first room, 13-14 with a connected room,
and 12-13 that stay for the life of the process after the last room has left, shared by every
room and not growing with rooms or reconnects). They are not the SDK's to stop.

Wire (Convai Web SDK 1.2.0, Unity ``RTVIHandler``, LiveKit ``livekit_models.proto``):

* Join: ``room.connect(endpoint.room_url, endpoint.token)`` with ``RoomOptions(auto_subscribe=
  receive_audio, rtc_config=RtcConfiguration(ice_transport_type=…))``: ``ice_transport_policy``
  ``"relay"`` is TURN only (as the Web SDK joins), ``"all"`` LiveKit's default.
* RTVI JSON out: see :mod:`~convai_sync.transports.livekit_data` (reliable, no topic, in order,
  bounded by ``send_queue_bytes``). In: every ``data_received`` payload, whatever its topic,
  handed on as received (``bytes``).
* Participants: those in the room at join (the local one as ``LOCAL_PLAYER``) and every later
  ``participant_connected`` / ``participant_disconnected`` are reported as ``ParticipantJoined``
  / ``ParticipantLeft`` through ``listener.on_transport_participant`` (kind AGENT = the
  character, ``CHARACTER``; STANDARD = ``REMOTE_PLAYER``).
* Audio: see :mod:`~convai_sync.transports.livekit_audio` (every decoded 20 ms frame of the
  character's track is delivered, silence between turns included).

Ends: a server leave ``disconnected(reason)`` is a ``TransportClosed(initiator="server")`` whose
``code`` and ``disconnect_reason`` are LiveKit's ``DisconnectReason``; when LiveKit's own link
recovery was under way (a ``reconnecting`` came first) the end is ``initiator="network"``.

Reconnects: there is one reconnect policy, the session's. LiveKit's own recovery (a signal resume
or a full rejoin of the same room, which keeps the Convai session and its character) is allowed
to run as the session's *first* reconnect attempt: ``reconnecting`` and ``reconnected`` go to the
listener (``on_transport_reconnecting`` / ``on_transport_reconnected``), which moves the session
to RECONNECTING and back to CONNECTED, bounds the attempt by ``connection_timeout`` and counts it
against ``ReconnectPolicy.max_attempts``. When it fails (the server refuses the resume: the
simulator always does, answering ``STATE_MISMATCH`` or the reason the session ended with) or runs
out of time, the session's next attempts make a new ``POST /connect`` resuming
``character_session_id``. With ``max_attempts=0`` the session ends the room at the first
``reconnecting`` instead.

A join in flight is never cancelled: ``livekit`` 1.2.x cannot abort ``room.connect()``, and a
cancelled one leaves its Rust core waiting for a handshake that never comes, after which the
library kills the whole process ("FFI Panic: timed out waiting for ReadyForRoomEventRequest after
ConnectCallback"; fixed upstream only in later rust-sdks, livekit/rust-sdks issue 1340). So an
``open()`` aborted by its canceller or its timeout returns at once, while the loop thread lets the
join settle (bounded by LiveKit's per-attempt ``connect_timeout`` and libwebrtc's ICE timeout),
leaves the room if it joined, and then exits; ``close()`` during a join does the same and returns
at its deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
import time
from typing import Any

from ..audio import check_format
from ..connect import Endpoint
from ..disconnect import DisconnectReason
from ..errors import ErrorCode
from ..events import ParticipantJoined, ParticipantLeft
from ..netio import Canceller
from .aioloop import LoopStopped, LoopThread
from .base import Initiator, MicrophoneUnheard, Transport, TransportClosed, TransportFault, TransportListener
from .ice import no_ice_candidate_hint
from .livekit_audio import Microphone, read_voice
from .livekit_data import DataPublisher
from .livekit_join import join_failure, load_rtc, open_error, room_options
from .livekit_map import KIND_AGENT, TRACK_AUDIO, participant_event
from .outbox import OutboxFull

log = logging.getLogger("convai_sync")
_ids = itertools.count(1)

DEFAULT_SEND_QUEUE_BYTES = 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: The rate the character's voice is delivered at when ``audio_sample_rate`` is None (Opus's own).
DEFAULT_VOICE_RATE = 48_000
#: Seconds ``send_audio(timeout=None)`` allows beyond the audio's own duration (it is paced at real time).
AUDIO_TIMEOUT_MARGIN = 5.0
#: Longest wait for ``room.disconnect()`` when nobody is waiting on close().
LEAVE_TIMEOUT = 2.0


def _reason(value: int) -> DisconnectReason:
    try:
        return DisconnectReason(value)
    except ValueError:  # a newer LiveKit reason this SDK does not know
        return DisconnectReason.UNKNOWN_REASON


class LiveKitTransport(Transport):
    """A Convai session's LiveKit room (see the module docstring).

    Args:
        ice_transport_policy: ``"all"`` or ``"relay"`` (TURN only).
        receive_audio: Subscribe to the character's voice and deliver it; False joins without
            subscribing to any track (data only).
        audio_sample_rate: Hz of the delivered voice (LiveKit resamples); None = 48000.
        max_message_bytes: Larger inbound data packets are refused (``protocol.message_invalid``).
        send_queue_bytes: Bound of the data waiting to be published; beyond it ``send`` raises.
    """

    kind = "livekit"

    def __init__(self, *, ice_transport_policy: str = "all", receive_audio: bool = True,
                 audio_sample_rate: int | None = None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 send_queue_bytes: int = DEFAULT_SEND_QUEUE_BYTES) -> None:
        if ice_transport_policy not in ("all", "relay"):
            raise ValueError(f"ice_transport_policy must be 'all' or 'relay', not {ice_transport_policy!r}")
        self._relay = ice_transport_policy == "relay"
        self._receive_audio = receive_audio
        self._voice_rate = audio_sample_rate or DEFAULT_VOICE_RATE
        self._max_message = max_message_bytes
        self._queue_limit = send_queue_bytes
        # -- shared state, guarded by _lock --
        self._lock = threading.Lock()
        self._loop: LoopThread | None = None
        self._listener: TransportListener | None = None
        self._outcome: str | None = None  # None while open() decides, then "open" or "failed"
        self._closing = False
        self._close_requested = False
        self._pending_close: TransportClosed | None = None
        self._reported = False
        self._publisher: DataPublisher | None = None
        # -- loop-thread state --
        self._rtc: Any = None
        self._room: Any = None
        self._join_task: asyncio.Task[None] | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._readers: set[asyncio.Task[None]] = set()
        self._mic: Microphone | None = None
        self._interrupted = False

    @property
    def thread(self) -> threading.Thread | None:
        """The loop thread (``convai-livekit-<n>``), once opened."""
        return self._loop.thread if self._loop is not None else None

    # ------------------------------------------------------------------ open

    def open(self, endpoint: Endpoint, listener: TransportListener, *, timeout: float,
             canceller: Canceller | None = None) -> None:
        """Join the room ``endpoint`` names; returns once the room is connected.

        Returns within ``timeout`` seconds, and at once after ``canceller.abort()``.

        Raises:
            TransportOpenError: ``transport.livekit_error`` (no ``livekit`` package, or an
                unexpected library error), ``connection.timeout`` (timeout or abort),
                ``connection.failed`` (no token), or a join failure classified by
                :func:`~convai_sync.transports.livekit_map.join_error_code`.
        """
        rtc = load_rtc()
        if not endpoint.token:
            raise open_error(ErrorCode.CONNECTION_FAILED, "invalid room details: /connect gave no LiveKit token")
        canceller = canceller or Canceller("LiveKit join")
        hint = no_ice_candidate_hint()
        if hint:
            log.warning("%s", hint)
        with self._lock:
            if self._loop is not None:
                raise RuntimeError("a LiveKit transport opens once")
            self._listener = listener
            self._loop = loop = LoopThread(f"convai-livekit-{next(_ids)}")
            self._publisher = DataPublisher(loop, self._queue_limit, self._publish_failed)
        loop.start()
        wake = threading.Event()
        joined = loop.submit(self._join(rtc, endpoint, max(timeout, 0.001)))
        joined.add_done_callback(lambda _future: wake.set())
        canceller.add_callback(wake.set)
        try:
            wake.wait(max(timeout, 0.001))
        finally:
            canceller.release()
        with self._lock:
            ok = joined.done() and not joined.cancelled() and not canceller.aborted and joined.exception() is None
            self._outcome = "open" if ok else "failed"
            pending, self._pending_close = self._pending_close, None
        if ok:
            log.info("LiveKit: joined room %s", endpoint.room_name or "?")
            if pending is not None and not loop.call_soon(self._report, pending):
                self._report(pending)
            return
        if canceller.aborted:
            error = open_error(ErrorCode.CONNECTION_TIMEOUT, f"{canceller.what} aborted: {canceller.reason}")
        elif not joined.done():
            message = f"The LiveKit join did not complete within {timeout:g} s."
            error = open_error(ErrorCode.CONNECTION_TIMEOUT, f"{message} {hint}" if hint else message)
        else:
            error = join_failure(None if joined.cancelled() else joined.exception(), rtc, endpoint.token)
        loop.call_soon(self._begin_shutdown, None, LEAVE_TIMEOUT)  # leaves once the join settles
        if joined.done() and not canceller.aborted:
            loop.join(LEAVE_TIMEOUT)  # the join has settled: the thread is about to exit
        raise error

    async def _join(self, rtc: Any, endpoint: Endpoint, timeout: float) -> None:
        self._rtc = rtc
        self._join_task = asyncio.current_task()
        room = rtc.Room(loop=asyncio.get_running_loop())
        self._room = room
        room.on("data_received", self._on_data)
        room.on("disconnected", self._on_disconnected)
        room.on("reconnecting", self._on_reconnecting)
        room.on("reconnected", self._on_reconnected)
        room.on("participant_connected", lambda p: self._participant(ParticipantJoined, p, is_local=False))
        room.on("participant_disconnected", lambda p: self._participant(ParticipantLeft, p, is_local=False))
        room.on("track_subscribed", self._on_track)
        options = room_options(rtc, relay=self._relay, receive_audio=self._receive_audio, timeout=timeout)
        await room.connect(endpoint.room_url, endpoint.token, options)
        if self._shutdown_task is not None:
            return  # abandoned while joining: the shutdown leaves the room
        assert self._publisher is not None
        self._publisher.start(room.local_participant)
        self._participant(ParticipantJoined, room.local_participant, is_local=True)
        for remote in list(room.remote_participants.values()):
            self._participant(ParticipantJoined, remote, is_local=False)

    # ------------------------------------------------------------------ room events (loop thread)

    def _live_listener(self) -> TransportListener | None:
        if self._shutdown_task is not None or self._outcome == "failed":
            return None
        return self._listener

    def _on_data(self, packet: Any) -> None:
        listener = self._live_listener()
        if listener is None:
            return
        data = bytes(packet.data)
        if len(data) > self._max_message:
            listener.on_transport_message(self, TransportFault(
                ErrorCode.PROTOCOL_MESSAGE_INVALID,
                f"data packet of {len(data)} bytes exceeds max_message_bytes={self._max_message}"))
            return
        listener.on_transport_message(self, data)

    def _participant(self, cls: type[ParticipantJoined] | type[ParticipantLeft], participant: Any, *,
                     is_local: bool) -> None:
        listener = self._live_listener()
        if listener is not None:
            listener.on_transport_participant(self, participant_event(cls, participant, is_local=is_local))

    def _on_track(self, track: Any, publication: Any, participant: Any) -> None:
        rtc = self._rtc
        if not self._receive_audio or self._shutdown_task is not None:
            return
        if int(track.kind) != TRACK_AUDIO or int(participant.kind) != KIND_AGENT:
            return  # only the character's voice is delivered
        log.info("LiveKit: receiving the character's voice (track %s) at %d Hz", track.sid, self._voice_rate)
        task = asyncio.get_running_loop().create_task(read_voice(rtc, track, self._voice_rate, self._deliver_audio))
        self._readers.add(task)
        task.add_done_callback(self._reader_done)

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        self._readers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("LiveKit: reading the character's voice failed: %r", task.exception())

    def _deliver_audio(self, pcm: bytes, sample_rate: int, num_channels: int) -> None:
        listener = self._live_listener()
        if listener is not None:
            listener.on_transport_audio(self, pcm, sample_rate, num_channels)

    def _on_reconnecting(self) -> None:
        self._interrupted = True
        log.info("LiveKit: link lost; LiveKit is recovering it")
        listener = self._live_listener()
        if listener is not None and self._outcome == "open":
            listener.on_transport_reconnecting(self)

    def _on_reconnected(self) -> None:
        self._interrupted = False
        log.info("LiveKit: link recovered")
        listener = self._live_listener()
        if listener is not None and self._outcome == "open":
            listener.on_transport_reconnected(self)

    def _on_disconnected(self, value: int) -> None:
        if self._shutdown_task is not None:
            return  # our own leave
        reason = _reason(int(value))
        initiator: Initiator = "network" if self._interrupted else "server"
        log.info("LiveKit: disconnected (%s, %s)", reason.name, initiator)
        self._begin_shutdown(TransportClosed(int(value), f"LiveKit disconnected: {reason.name}", initiator,
                                             disconnect_reason=reason), 0.0)

    # ------------------------------------------------------------------ sending

    def send(self, data: str) -> None:
        """Publish one RTVI message as a reliable data packet (queued; never blocks).

        Raises:
            OutboxFull: ``send_queue_bytes`` of messages are already waiting.
            ConnectionError: the room is not open.
        """
        payload = data.encode("utf-8")
        with self._lock:
            publisher = self._publisher
            if self._outcome != "open" or self._closing or publisher is None:
                raise ConnectionError("LiveKit room is not open")
            publisher.send(payload)  # under the lock: a close cannot slip in between

    def _publish_failed(self, size: int, exc: Exception) -> None:
        # The caller's send() had returned: say it where it is seen (e.g. a message larger than
        # the data channel's negotiated maximum, 64 kB on the simulator).
        listener = self._live_listener()
        if listener is not None:
            listener.on_transport_message(self, TransportFault(
                ErrorCode.PROTOCOL_MESSAGE_INVALID, f"an outgoing message of {size} bytes was not published: {exc}"))

    @property
    def unsent(self) -> int:
        return self._publisher.unsent if self._publisher is not None else 0

    # ------------------------------------------------------------------ audio

    @property
    def supports_audio(self) -> bool:
        return True

    def send_audio(self, pcm: bytes, sample_rate: int, num_channels: int, *, timeout: float | None) -> None:
        """Send the user's voice on the microphone track (published on first use).

        Args:
            pcm: PCM16 little-endian, interleaved, any length (framed into 20 ms frames).
            sample_rate: Hz; num_channels: channels. The track is published in the first call's
                format; later audio in another format is converted to it (see
                :mod:`~convai_sync.transports.livekit_audio`), never republished.
            timeout: Seconds to wait for the audio to be accepted (it is paced at real time
                beyond ~1 s of buffer); None = the audio's duration plus 5 s.

        Raises:
            ValueError: not whole PCM16 frames, or a bad rate/channel count.
            OutboxFull: the audio was not accepted within ``timeout`` (what was accepted by then
                is sent; the rest is dropped): the same error as the WebSocket transport's full
                send queue, which the client raises as ``SendQueueFullError``.
            MicrophoneUnheard: the server did not subscribe to the microphone track within 3 s
                (nothing was sent; the next call waits for it again).
            ConnectionError: not open, called on the transport's own thread, or the track could
                not be published.
        """
        pcm = check_format(pcm, sample_rate, num_channels)
        duration = len(pcm) / (2 * num_channels * sample_rate)
        budget = duration + AUDIO_TIMEOUT_MARGIN if timeout is None else max(0.0, timeout)
        with self._lock:
            loop = self._loop
            if self._outcome != "open" or self._closing or loop is None:
                raise ConnectionError("LiveKit room is not open")
        if loop.on_thread():
            raise ConnectionError("send_audio cannot wait on the LiveKit transport's own thread")
        if not pcm:
            return
        progress = [0.0]
        future = loop.submit(self._send_audio(pcm, sample_rate, num_channels, progress))
        try:
            future.result(budget)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise OutboxFull(f"send_audio: {progress[0]:.2f} of {duration:.2f} s of audio accepted within "
                                  f"{budget:g} s (the microphone is paced at real time)") from None
        except concurrent.futures.CancelledError:
            raise ConnectionError("send_audio: the LiveKit room closed") from None
        except MicrophoneUnheard:
            raise
        except LoopStopped as exc:
            raise ConnectionError(f"send_audio: {exc}") from None
        except Exception as exc:
            raise ConnectionError(f"send_audio failed: {type(exc).__name__}: {exc}") from exc

    async def _send_audio(self, pcm: bytes, sample_rate: int, num_channels: int, progress: list[float]) -> None:
        if self._shutdown_task is not None or self._room is None:
            raise ConnectionError("LiveKit room is not open")
        if self._mic is None:
            self._mic = Microphone(self._rtc, self._room)
        await self._mic.send(pcm, sample_rate, num_channels, progress)

    # ------------------------------------------------------------------ tests

    def simulate_scenario(self, name: str, timeout: float = 5.0) -> None:
        """Ask LiveKit to simulate a network scenario (tests only): ``name`` is a
        ``livekit.rtc.SimulateScenarioKind`` without its ``SIMULATE_`` prefix, e.g.
        ``"SIGNAL_RECONNECT"`` (a resume) or ``"FULL_RECONNECT"``.

        Raises:
            ConnectionError: not open, or LiveKit refused within ``timeout``.
        """
        loop = self._loop
        if loop is None or self._outcome != "open":
            raise ConnectionError("LiveKit room is not open")

        async def run() -> None:
            kind = self._rtc.SimulateScenarioKind.Value(f"SIMULATE_{name}")
            await self._room.simulate_scenario(kind)

        try:
            loop.submit(run()).result(timeout)
        except Exception as exc:
            raise ConnectionError(f"simulate_scenario({name}) failed: {exc!r}") from exc

    # ------------------------------------------------------------------ closing

    def close(self, code: int = 1000, reason: str = "", *, timeout: float = 1.0) -> None:
        """Leave the room and stop the loop thread within ``timeout`` seconds.

        Idempotent and callable from any thread; on the loop thread itself (a listener
        callback) it returns at once and the thread exits right after. A join still in flight
        cannot be cancelled (module docstring): the thread then exits once it settles.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            loop = self._loop
            first = not self._close_requested
            self._close_requested = True
            self._closing = True
        if loop is None:
            return
        if first:
            closed = TransportClosed(int(DisconnectReason.CLIENT_INITIATED), reason, "client",
                                     disconnect_reason=DisconnectReason.CLIENT_INITIATED)
            loop.call_soon(self._begin_shutdown, closed, max(0.05, timeout))
        if loop.on_thread():
            return
        if not loop.join(deadline - time.monotonic()):
            log.warning("%s did not exit within %.2f s (%s)", loop.name, timeout,
                        "a join is still in flight" if self._outcome is None else "the room is slow to leave")

    def abort(self, reason: str) -> None:
        """Drop the room as lost: the listener hears a network close (then the thread exits)."""
        with self._lock:
            loop = self._loop
            if loop is None or self._closing:
                return
            self._closing = True
        log.info("LiveKit: dropping the room: %s", reason)
        loop.call_soon(self._begin_shutdown, TransportClosed(
            int(DisconnectReason.UNKNOWN_REASON), reason, "network",
            disconnect_reason=DisconnectReason.UNKNOWN_REASON), LEAVE_TIMEOUT)

    def _begin_shutdown(self, closed: TransportClosed | None, leave_timeout: float) -> None:
        if self._shutdown_task is not None:
            return
        with self._lock:
            self._closing = True
        self._shutdown_task = asyncio.get_running_loop().create_task(self._shutdown(closed, leave_timeout))

    async def _shutdown(self, closed: TransportClosed | None, leave_timeout: float) -> None:
        try:
            if closed is not None and closed.initiator != "client":
                self._report(closed)  # the room is already gone: say so before cleaning up
            join = self._join_task
            if join is not None and not join.done():
                await asyncio.wait({join})  # never cancelled (module docstring)
            await self._stop_tasks()
            room = self._room
            if room is not None and room.isconnected():
                try:
                    await asyncio.wait_for(room.disconnect(), leave_timeout)
                except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - leaving is best effort
                    log.info("LiveKit: leaving the room did not complete: %r", exc)
            if closed is not None and closed.initiator == "client":
                self._report(closed)
        finally:
            loop = self._loop
            if loop is not None:
                loop.stop()

    async def _stop_tasks(self) -> None:
        if self._publisher is not None:
            await self._publisher.stop()
        tasks = list(self._readers)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._mic is not None:
            try:
                await asyncio.wait_for(self._mic.close(), LEAVE_TIMEOUT)
            except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - teardown goes on
                log.debug("LiveKit: closing the microphone failed: %r", exc)

    def _report(self, closed: TransportClosed) -> None:
        with self._lock:
            if self._reported or self._outcome == "failed":
                return
            if self._outcome is None:
                self._pending_close = closed  # open() decides whether it is heard
                return
            self._reported = True
            listener = self._listener
        if listener is not None:
            listener.on_transport_closed(self, closed)
