"""The server end of one participant's WebRTC peer connection (aiortc), with loopback-only ICE by default.

The client always offers (LiveKit single peer connection, ``/rtc/v1``); :meth:`PeerLink.answer` answers every
offer, renegotiations included: it attaches the character's voice to an audio m-line the client receives on,
gives that sender LiveKit's media stream id ``PA_…|TR_…`` (the client matches remote tracks by it), and
rejects the client's video m-lines (port 0 in the answer, per RFC 8843 outside the BUNDLE group), so the client
starts no video decoders.

A rejected m-line may be recycled by the offerer for its next new transceiver (JSEP, RFC 8829 section 5.2.2):
libwebrtc does so when the client publishes a track later (a microphone republished in a new format takes the
place of a rejected video m-line, with a new mid). aiortc cannot follow that: it keeps the rejected transceiver
at that index and answers with it ("Media sections in answer do not match offer"), after which the simulator
heard the user no more. :meth:`PeerLink.answer` first forgets every transceiver whose mid the offer no longer
has (only a recycled m-line loses its mid), so the new transceiver takes the index.

ICE: ``RTCConfiguration(iceServers=[])`` (no STUN/TURN server is contacted) and only the configured host
addresses are gathered. aioice gathers every host address except 127.0.0.1 (``aioice.ice.get_host_addresses``);
:func:`_scoped_host_addresses` replaces that function once per process with a wrapper that returns the
simulator's addresses while one of *its* peer connections gathers (a context variable set around the offer/
answer) and otherwise calls aioice's own function, so other aiortc users in the process are unaffected. The
wrapper, the sender's ``_stream_id`` attribute and the peer connection's transceiver list depend on aiortc 1.16 /
aioice 0.13 internals: both are pinned in ``setup.py``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import aioice.ice
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceTransport,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from simulator.core.carrier import within

logger = logging.getLogger("simulator.livekit.peer")

#: The data channel the client creates for reliable packets (LiveKit ``RELIABLE_DC_LABEL``).
RELIABLE_LABEL = "_reliable"
DATA_LABELS = ("_reliable", "_lossy")
#: How often :meth:`PeerLink.drain` looks at the channel's buffer (aiortc has no "drained" event).
DRAIN_POLL = 0.01
#: Flow control of the reliable channel: bytes it may hold that SCTP has not handed on (its
#: ``bufferedAmount``, which grows while the client does not acknowledge) before a send waits, and the level at
#: which a waiting send resumes. aiortc itself buffers without bound.
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
#: Seconds closing a peer connection may take.
CLOSE_TIMEOUT = 2.0

_HOST_ADDRESSES: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "simulator_livekit_host_addresses", default=None)
_aioice_host_addresses = aioice.ice.get_host_addresses


def _scoped_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    scoped = _HOST_ADDRESSES.get()
    if scoped is None:
        return _aioice_host_addresses(use_ipv4, use_ipv6)
    return [a for a in scoped if (use_ipv6 if ":" in a else use_ipv4)]


def _install_scoped_host_addresses() -> None:
    if aioice.ice.get_host_addresses is not _scoped_host_addresses:
        aioice.ice.get_host_addresses = _scoped_host_addresses


def _sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    head: list[str] = []
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            head.append(line)
    return head, sections


def _attribute(section: list[str], name: str) -> str | None:
    prefix = f"a={name}:"
    for line in section:
        if line.startswith(prefix):
            return line[len(prefix):]
    return None


def _join(head: list[str], sections: list[list[str]]) -> str:
    return "\r\n".join(head + [line for section in sections for line in section]) + "\r\n"


def receiving_mids(offer_sdp: str) -> set[str]:
    """Mids of the offer's audio m-lines on which the offerer receives (``recvonly`` / ``sendrecv``)."""
    mids = set()
    for section in _sections(offer_sdp)[1]:
        if not section[0].startswith("m=audio") or section[0].split(" ")[1] == "0":
            continue
        direction = next((line[2:] for line in section if line in ("a=recvonly", "a=sendrecv", "a=sendonly",
                                                                    "a=inactive")), "a=sendrecv")
        mid = _attribute(section, "mid")
        if mid is not None and direction in ("recvonly", "sendrecv"):
            mids.add(mid)
    return mids


def track_ids(offer_sdp: str) -> dict[str, str]:
    """Mid -> the offerer's track id (second ``a=msid`` field; LiveKit clients use their AddTrackRequest cid)."""
    ids = {}
    for section in _sections(offer_sdp)[1]:
        mid, msid = _attribute(section, "mid"), _attribute(section, "msid")
        if mid is not None and msid is not None and " " in msid:
            ids[mid] = msid.split(" ")[1]
    return ids


def reject_video(answer_sdp: str) -> str:
    """``answer_sdp`` with every video m-line rejected (port 0) and removed from the BUNDLE group."""
    head, sections = _sections(answer_sdp)
    rejected = set()
    for section in sections:
        parts = section[0].split(" ")
        if parts[0] == "m=video":
            parts[1] = "0"
            section[0] = " ".join(parts)
            mid = _attribute(section, "mid")
            if mid is not None:
                rejected.add(mid)
    for index, line in enumerate(head):
        if line.startswith("a=group:BUNDLE"):
            head[index] = " ".join(item for item in line.split(" ") if item not in rejected)
    return _join(head, sections)


class PeerLink:
    """One aiortc peer connection answering a LiveKit client (loop thread only).

    Args:
        host_addresses: addresses gathered and advertised as ICE host candidates.
        on_data: called with every data packet (bytes) the client sends on ``_reliable`` or ``_lossy``.
        on_track: called with every remote media track (the user's microphone).
        on_ready: called once the client's ``_reliable`` data channel is open.
        spawn: runs a coroutine as a task the simulator tracks (and waits for at shutdown).
    """

    def __init__(
        self,
        host_addresses: Iterable[str],
        on_data: Callable[[bytes], None],
        on_track: Callable[[MediaStreamTrack], None],
        on_ready: Callable[[], None],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    ) -> None:
        _install_scoped_host_addresses()
        self._hosts = tuple(host_addresses)
        self._on_data = on_data
        self._on_track = on_track
        self._on_ready = on_ready
        self._reliable: RTCDataChannel | None = None
        self._voice: RTCRtpTransceiver | None = None
        self._track_ids: dict[str, str] = {}
        self._spawn = spawn
        self._closing: asyncio.Task[None] | None = None
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.on("datachannel", self._datachannel)
        self.pc.on("track", self._track)
        self.pc.on("connectionstatechange", self._state_changed)

    @property
    def ready(self) -> bool:
        """True while the client's reliable data channel is open."""
        return self._reliable is not None and self._reliable.readyState == "open"

    def _datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label not in DATA_LABELS:
            return

        def message(data: bytes | str) -> None:
            if isinstance(data, str):
                logger.warning("text message on data channel %s ignored (LiveKit sends binary packets)",
                               channel.label)
                return
            self._on_data(data)

        channel.on("message", message)
        if channel.label != RELIABLE_LABEL:
            return
        self._reliable = channel
        channel.bufferedAmountLowThreshold = LOW_WATER
        if channel.readyState == "open":
            self._on_ready()
        else:
            channel.on("open", self._on_ready)

    def _track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._on_track(track)

    def _state_changed(self) -> None:
        logger.debug("peer connection %s", self.pc.connectionState)

    async def answer(self, offer_sdp: str, voice: MediaStreamTrack | None, stream_id: str) -> tuple[str, list[str]]:
        """Answer one client offer; returns the answer SDP and the mids that carry ``voice``.

        ``voice`` is attached (once) to the first audio m-line the client receives on.
        """
        self._track_ids.update(track_ids(offer_sdp))
        self._forget_recycled(offer_sdp)
        scope = _HOST_ADDRESSES.set(self._hosts)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            if voice is not None and self._voice is None:
                self._attach_voice(voice, stream_id, receiving_mids(offer_sdp))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        finally:
            _HOST_ADDRESSES.reset(scope)
        local = self.pc.localDescription
        voice_mids = [self._voice.mid] if self._voice is not None and self._voice.mid is not None else []
        return reject_video(local.sdp), voice_mids

    def _forget_recycled(self, offer_sdp: str) -> None:
        """Drop the transceivers whose m-line the offer recycled (module docstring)."""
        offered = {_attribute(section, "mid") for section in _sections(offer_sdp)[1]}
        # aiortc 1.16 has no API to remove a transceiver; its list is private (pinned in setup.py).
        transceivers: list[RTCRtpTransceiver] = self.pc._RTCPeerConnection__transceivers  # type: ignore[attr-defined]
        for transceiver in list(transceivers):
            if transceiver.mid is not None and transceiver.mid not in offered:
                logger.debug("the client recycled m-line %s (mid %s) for a new transceiver",
                             transceiver._get_mline_index(), transceiver.mid)
                transceivers.remove(transceiver)

    def _attach_voice(self, voice: MediaStreamTrack, stream_id: str, mids: set[str]) -> None:
        for transceiver in self.pc.getTransceivers():
            sending: MediaStreamTrack | None = transceiver.sender.track
            if transceiver.kind == "audio" and transceiver.mid in mids and sending is None:
                transceiver.sender.replaceTrack(voice)
                transceiver.direction = "sendrecv"
                # aiortc has no public API for the media stream id; LiveKit clients match tracks by it.
                transceiver.sender._stream_id = stream_id
                self._voice = transceiver
                return
        logger.warning("the client offered no audio m-line to receive the character's voice on")

    def client_track_id(self, track: MediaStreamTrack) -> str | None:
        """The client's own id (its AddTrackRequest ``cid``) of a remote ``track``, from the offer's msid."""
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track and transceiver.mid is not None:
                return self._track_ids.get(transceiver.mid)
        return None

    def send(self, packet: bytes) -> bool:
        """Send one packet on the client's reliable channel; False when it is not open.

        Raises:
            ValueError: the packet is larger than the client's SDP ``max-message-size``.
        """
        channel = self._reliable
        if channel is None or channel.readyState != "open":
            return False
        channel.send(packet)
        return True

    async def writable(self, timeout: float) -> bool:
        """When the reliable channel holds more than :data:`HIGH_WATER` bytes, wait until it holds at most
        :data:`LOW_WATER` (or closes), for at most ``timeout`` seconds.

        Returns False when the channel stayed full for ``timeout`` (the client stopped acknowledging), True
        otherwise (at once in the common case).
        """
        channel = self._reliable
        if channel is None or channel.readyState != "open" or channel.bufferedAmount <= HIGH_WATER:
            return True
        resumed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not resumed.done():
                resumed.set_result(None)

        # aiortc emits "bufferedamountlow" when bufferedAmount falls to bufferedAmountLowThreshold (LOW_WATER).
        channel.on("bufferedamountlow", wake)
        channel.on("close", wake)
        try:
            await within(resumed, timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            channel.remove_listener("bufferedamountlow", wake)
            channel.remove_listener("close", wake)
        return True

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until the reliable channel has handed everything to SCTP."""
        channel = self._reliable
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while channel is not None and channel.readyState == "open" and channel.bufferedAmount > 0:
            if loop.time() >= deadline:
                logger.warning("data channel still holds %d bytes at the end", channel.bufferedAmount)
                return
            await asyncio.sleep(DRAIN_POLL)

    async def withhold(self) -> None:
        """Stop answering connectivity checks, silently (the client's ICE consent then fails)."""
        for transport in self._ice_transports():
            await transport.stop()
        await self.close()

    def _ice_transports(self) -> list[RTCIceTransport]:
        seen: list[RTCIceTransport] = []
        sctp = self.pc.sctp
        candidates = [t.receiver.transport.transport for t in self.pc.getTransceivers()]
        if sctp is not None:
            candidates.append(sctp.transport.transport)
        for transport in candidates:
            if transport not in seen:
                seen.append(transport)
        return seen

    async def close(self) -> None:
        """Close the peer connection (idempotent; bounded by :data:`CLOSE_TIMEOUT`).

        Every caller waits for the one close, and a caller that is cancelled does not interrupt it: a
        half-closed aiortc connection would leave its ICE, DTLS and RTCP tasks running.
        """
        if self._closing is None:
            self._closing = self._spawn(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        try:
            await asyncio.wait_for(self.pc.close(), CLOSE_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError) as exc:
            logger.warning("closing a peer connection failed: %s", exc)
