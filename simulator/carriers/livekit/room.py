"""One session's LiveKit room: its SIDs and the protobuf messages that describe it (pure; no I/O).

SIDs carry LiveKit's prefixes (``RM_`` room, ``PA_`` participant, ``TR_`` track): the Rust client parses
them and rejects malformed ones (``livekit`` ``ParticipantSid``/``TrackSid``). Message shapes follow
``livekit/protocol`` ``livekit_rtc.proto`` and ``livekit_models.proto``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from livekit.protocol import models, rtc

#: Seconds between the client's pings, and without a pong before it declares the signal lost.
PING_INTERVAL = 5
PING_TIMEOUT = 15
SERVER_VERSION = "1.9.0"
#: LiveKit signalling protocol version the simulator speaks (``ServerInfo.protocol``).
SERVER_PROTOCOL = 16
#: MIME type of the character's voice track.
VOICE_MIME = "audio/opus"


def sid(prefix: str) -> str:
    """A fresh SID such as ``PA_3f9c1a2b4d5e``."""
    return f"{prefix}_{secrets.token_hex(6)}"


def _permission(info: models.ParticipantInfo) -> None:
    info.permission.can_subscribe = True
    info.permission.can_publish = True
    info.permission.can_publish_data = True


@dataclass
class RoomState:
    """The room of one LiveKit session: who is in it and which tracks they publish."""

    name: str
    character_id: str
    user_identity: str
    room_sid: str = field(default_factory=lambda: sid("RM"))
    user_sid: str = field(default_factory=lambda: sid("PA"))
    character_sid: str = field(default_factory=lambda: sid("PA"))
    voice_sid: str = field(default_factory=lambda: sid("TR"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    #: True once the character has joined (at once, or at ``bot-ready`` with a ``bot_ready_delay``).
    character_joined: bool = False
    #: The user's published tracks: TR_ sid -> TrackInfo, and the client's track ids (``cid``) -> TR_ sid.
    user_tracks: dict[str, models.TrackInfo] = field(default_factory=dict)
    user_track_cids: dict[str, str] = field(default_factory=dict)

    @property
    def voice_stream_id(self) -> str:
        """The media stream id the client matches the voice track by (``PA_…|TR_…``)."""
        return f"{self.character_sid}|{self.voice_sid}"

    def room_info(self) -> models.Room:
        return models.Room(sid=self.room_sid, name=self.name, creation_time=self.created_at, empty_timeout=300,
                           max_participants=2, num_participants=2 if self.character_joined else 1)

    def user_info(self) -> models.ParticipantInfo:
        info = models.ParticipantInfo(sid=self.user_sid, identity=self.user_identity, name=self.user_identity,
                                      state=models.ParticipantInfo.JOINED, kind=models.ParticipantInfo.STANDARD,
                                      joined_at=int(time.time()))
        _permission(info)
        info.tracks.extend(self.user_tracks.values())
        return info

    def character_info(
        self, state: models.ParticipantInfo.State = models.ParticipantInfo.ACTIVE
    ) -> models.ParticipantInfo:
        """The character as a participant: kind AGENT, identity = the character id, one voice track."""
        info = models.ParticipantInfo(sid=self.character_sid, identity=self.character_id, name=self.character_id,
                                      state=state, kind=models.ParticipantInfo.AGENT, joined_at=self.created_at,
                                      is_publisher=True)
        _permission(info)
        info.tracks.append(models.TrackInfo(sid=self.voice_sid, type=models.AUDIO, name="character-voice",
                                            source=models.TrackSource.MICROPHONE, mime_type=VOICE_MIME))
        return info

    def join_response(self) -> rtc.SignalResponse:
        """The ``join`` message: the room, the user, the character when it is already there."""
        join = rtc.JoinResponse(room=self.room_info(), participant=self.user_info(), ping_interval=PING_INTERVAL,
                                ping_timeout=PING_TIMEOUT, server_version=SERVER_VERSION,
                                server_info=models.ServerInfo(edition=models.ServerInfo.Standard,
                                                              version=SERVER_VERSION, protocol=SERVER_PROTOCOL,
                                                              node_id="convai-simulator"))
        if self.character_joined:
            join.other_participants.append(self.character_info())
        return rtc.SignalResponse(join=join)

    def character_update(
        self, state: models.ParticipantInfo.State = models.ParticipantInfo.ACTIVE
    ) -> rtc.SignalResponse:
        """A ``ParticipantUpdate`` announcing (or, with ``DISCONNECTED``, removing) the character."""
        return rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=[self.character_info(state)]))

    def add_user_track(self, request: rtc.AddTrackRequest) -> rtc.SignalResponse:
        """Register a track the user asked to publish; the ``track_published`` answer echoes its ``cid``."""
        info = models.TrackInfo(sid=sid("TR"), type=request.type, name=request.name, source=request.source,
                                muted=request.muted, mime_type="audio/opus" if request.type == models.AUDIO else "",
                                stream=request.stream)
        self.user_tracks[info.sid] = info
        self.user_track_cids[request.cid] = info.sid
        return rtc.SignalResponse(track_published=rtc.TrackPublishedResponse(cid=request.cid, track=info))


def track_subscribed(track_sid: str) -> rtc.SignalResponse:
    """Tells the publisher its track now has a subscriber (the character hears it)."""
    return rtc.SignalResponse(track_subscribed=rtc.TrackSubscribed(track_sid=track_sid))


def leave(reason: int, action: int = rtc.LeaveRequest.DISCONNECT) -> rtc.SignalResponse:
    """A ``leave`` telling the client why it must go (``DisconnectReason`` value) and what to do next."""
    return rtc.SignalResponse(leave=rtc.LeaveRequest(reason=reason, action=action,  # type: ignore[arg-type]
                                                     can_reconnect=action != rtc.LeaveRequest.DISCONNECT))


def pong(ping: rtc.Ping) -> rtc.SignalResponse:
    return rtc.SignalResponse(pong_resp=rtc.Pong(last_ping_timestamp=ping.timestamp,
                                                 timestamp=int(time.time() * 1000)))


def data_packet(payload: bytes, identity: str, participant_sid: str) -> bytes:
    """A reliable ``DataPacket{user: UserPacket{payload, topic=""}}`` from ``identity``, serialised."""
    packet = models.DataPacket(kind=models.DataPacket.RELIABLE, participant_identity=identity,
                               participant_sid=participant_sid)
    packet.user.payload = payload
    packet.user.participant_identity = identity
    packet.user.participant_sid = participant_sid
    return packet.SerializeToString()
