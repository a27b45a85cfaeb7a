"""The per-attempt transport listener: the session's ear on the transport's reader thread.

:class:`AttemptListener` decodes each frame, completes acknowledgements and ``ask()`` replies at
once (the :class:`~convai_sync.turns.AckTracker` and :class:`~convai_sync.turns.TurnTracker`
own their locks), tags the character's voice with its turn (the
:class:`~convai_sync.voice.VoiceTracker`), then posts every event to the session thread for state
changes and publishing. A waiting caller thus wakes one thread hand-off after its answer arrives.

Thread notes: every ``on_transport_*`` method runs on the transport's own thread and never blocks;
``active`` is written by the session thread when it drops this transport (its late frames then
complete nothing) and read here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from . import events as ev
from . import protocol
from .audio import check_format
from .lipsync_feed import LipSyncFeed
from .transports.base import Transport, TransportClosed, TransportFault
from .turns import AckTracker, TurnTracker
from .voice import VoiceTracker

log = logging.getLogger("convai_sync")

#: Events waiting for the session thread beyond this are dropped (and logged and counted), so a
#: blocked session thread cannot make memory grow without bound. Commands are never dropped.
MAX_INBOX_FRAMES = 10_000


class SessionSide(Protocol):
    """What the listener needs from the session (implemented by :class:`~convai_sync.session.Session`)."""

    acks: AckTracker
    turns: TurnTracker
    voice: VoiceTracker
    lipsync: LipSyncFeed
    stats: dict[str, Any]

    @property
    def audio_routing(self) -> str: ...

    def post(self, fn: Callable[[], None]) -> None: ...

    def inbox_pending(self) -> int: ...

    def transport_event(self, attempt_id: int, transport: Transport, event: object) -> None: ...

    def transport_closed(self, attempt_id: int, transport: Transport, closed: TransportClosed) -> None: ...

    def transport_reconnecting(self, attempt_id: int, transport: Transport) -> None: ...

    def transport_reconnected(self, attempt_id: int, transport: Transport) -> None: ...


class AttemptListener:
    """Listens to the transport of one connect attempt (see the module docstring)."""

    __slots__ = ("_session", "_attempt_id", "active")

    def __init__(self, session: SessionSide, attempt_id: int) -> None:
        self._session = session
        self._attempt_id = attempt_id
        self.active = True

    def is_active(self) -> bool:
        return self.active

    def on_transport_message(self, transport: Transport, data: str | bytes | TransportFault) -> None:
        s, aid = self._session, self._attempt_id
        s.stats["frames_received"] += 1
        if isinstance(data, TransportFault):
            event: object = ev.ProtocolFault(code=data.code, detail=data.detail, raw="")
        else:
            decoded = protocol.decode(data)
            if decoded is None:
                return
            event = decoded
        if isinstance(event, ev.AudioData):
            # The voice as data messages; with audio_routing "both" the track carries the same voice.
            if self.active and s.audio_routing != "both":
                s.voice.receive(event.pcm, event.sample_rate, event.num_channels, self.is_active)
            return
        if self.active:
            if isinstance(event, ev.ServerResponse):
                s.acks.resolve(event)
                s.turns.acked(event)
            else:
                s.turns.feed(event)
                s.voice.on_event(event)
                s.lipsync.on_event(event)
        if s.inbox_pending() >= MAX_INBOX_FRAMES:
            s.stats["frames_dropped"] += 1
            log.warning("session inbox full (%d items; the session thread is blocked, e.g. by a slow "
                        "IMMEDIATE handler): dropped a %s event (total dropped: %d)",
                        MAX_INBOX_FRAMES, type(event).__name__, s.stats["frames_dropped"])
            return
        s.post(lambda: s.transport_event(aid, transport, event))

    def on_transport_audio(self, transport: Transport, pcm: bytes, sample_rate: int, num_channels: int) -> None:
        if not self.active:
            return
        try:
            pcm = check_format(pcm, sample_rate, num_channels)
        except ValueError as exc:
            log.warning("audio from the %s transport dropped: %s", transport.kind, exc)
            return
        self._session.voice.receive(pcm, sample_rate, num_channels, self.is_active)

    def on_transport_interruption(self, transport: Transport) -> None:
        if self.active:
            self._session.voice.interrupt("server")

    def on_transport_closed(self, transport: Transport, closed: TransportClosed) -> None:
        s, aid = self._session, self._attempt_id
        s.post(lambda: s.transport_closed(aid, transport, closed))

    def on_transport_reconnecting(self, transport: Transport) -> None:
        s, aid = self._session, self._attempt_id
        s.post(lambda: s.transport_reconnecting(aid, transport))

    def on_transport_reconnected(self, transport: Transport) -> None:
        s, aid = self._session, self._attempt_id
        s.post(lambda: s.transport_reconnected(aid, transport))

    def on_transport_participant(self, transport: Transport, event: ev.ParticipantJoined | ev.ParticipantLeft
                                 ) -> None:
        s, aid = self._session, self._attempt_id
        s.post(lambda: s.transport_event(aid, transport, event))
