"""The transport seam: a small interface the session drives.

A transport owns its I/O thread(s) and reports to a :class:`TransportListener` from them.
Reconnect logic lives in the session, not here, so every transport shares one tested policy.

The contract every transport keeps (and ``tests/test_transport_contract.py`` checks):

* ``open()`` blocks at most ``timeout`` seconds, and returns at once after ``canceller.abort()``.
* ``send()`` never blocks on the network: it writes or queues the frame, or raises.
* ``close()`` is idempotent, callable from any thread including the listener's, returns within
  its ``timeout`` whatever the peer does, and leaves no thread of the transport running (when
  called on the transport's own thread, that thread exits right after).
* The listener hears ``on_transport_closed`` exactly once per successful ``open()``, and nothing
  after it; a failed ``open()`` reports nothing.
* A transport that recovers its link by itself (LiveKit's resume) reports it with
  ``on_transport_reconnecting`` / ``on_transport_reconnected``; the session decides whether to
  wait for it (the only reconnect policy is the session's).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Literal, Protocol

from ..connect import Endpoint
from ..disconnect import DisconnectReason
from ..errors import ErrorCode, SessionError
from ..events import ParticipantJoined, ParticipantLeft
from ..netio import Canceller

Initiator = Literal["client", "server", "network"]

#: Seconds the character's audio may trail the data message that ends it on a transport whose
#: audio travels apart from its messages (an RTC audio track's jitter buffer); see
#: :attr:`Transport.audio_lag` and ``convai_sync.voice``.
DEFAULT_AUDIO_LAG = 0.5


class MicrophoneUnheard(ConnectionError):
    """``send_audio``: the server does not listen to the user's audio (it never subscribed to the
    microphone track), so none was sent; the client raises it as ``audio.mic_publish_failed``."""


@dataclass(frozen=True)
class TransportClosed:
    """How a transport ended.

    Attributes:
        code: WebSocket close code (1006 when no close frame came), or a LiveKit reason value.
        reason: Close reason text.
        initiator: ``"client"`` (we closed), ``"server"`` (close frame, or a LiveKit leave) or
            ``"network"`` (the link failed).
        error: Underlying exception for network failures.
        disconnect_reason: Set by transports that carry LiveKit's ``DisconnectReason`` natively
            (``code`` is then its value, 0..16, not a WebSocket close code).
    """

    code: int | None
    reason: str
    initiator: Initiator
    error: BaseException | None = None
    disconnect_reason: DisconnectReason | None = None


@dataclass(frozen=True)
class TransportFault:
    """A message the transport refused before handing it on (oversized, not UTF-8).

    Attributes:
        code: ``protocol.message_invalid`` (too large) or ``protocol.parse_failed`` (bad text).
        detail: What was wrong, without the message content.
    """

    code: ErrorCode
    detail: str


class TransportListener(Protocol):
    """Implemented by the session; called on the transport's thread. Must not block."""

    def on_transport_message(self, transport: Transport, data: str | bytes | TransportFault) -> None: ...

    def on_transport_audio(self, transport: Transport, pcm: bytes, sample_rate: int, num_channels: int) -> None:
        """The character's voice: PCM16 little-endian ``pcm`` (interleaved), ``sample_rate`` Hz."""
        ...

    def on_transport_interruption(self, transport: Transport) -> None:
        """The server interrupted the character (e.g. Pipecat's ``InterruptionFrame``): drop the
        voice not played yet."""
        ...

    def on_transport_closed(self, transport: Transport, closed: TransportClosed) -> None: ...

    def on_transport_reconnecting(self, transport: Transport) -> None:
        """The transport's own link recovery started (LiveKit ``reconnecting``); the link is down."""
        ...

    def on_transport_reconnected(self, transport: Transport) -> None:
        """The transport's own link recovery succeeded (LiveKit ``reconnected``)."""
        ...

    def on_transport_participant(self, transport: Transport, event: ParticipantJoined | ParticipantLeft) -> None:
        """A room participant joined or left (LiveKit rooms; the local participant included)."""
        ...


class TransportOpenError(Exception):
    """``open()`` failed; ``error`` is the classified :class:`SessionError`."""

    def __init__(self, error: SessionError) -> None:
        super().__init__(error.message)
        self.error = error


class Transport(abc.ABC):
    """One live connection to a session's room."""

    kind: str = "abstract"

    @abc.abstractmethod
    def open(self, endpoint: Endpoint, listener: TransportListener, *, timeout: float,
             canceller: Canceller | None = None) -> None:
        """Block until open (at most ``timeout`` s; at once after ``canceller.abort()``).

        Raises:
            TransportOpenError: with ``connection.timeout`` / ``connection.network_error`` / …
        """

    @abc.abstractmethod
    def send(self, data: str) -> None:
        """Send one text message. Thread-safe; never blocks on the network.

        Raises:
            ConnectionError: the transport is not open, or its send queue is full
                (:class:`~convai_sync.transports.outbox.OutboxFull`).
        """

    @abc.abstractmethod
    def close(self, code: int = 1000, reason: str = "", *, timeout: float = 1.0) -> None:
        """Close within ``timeout`` seconds whatever the peer does (see the module docstring)."""

    @property
    def supports_audio(self) -> bool:
        """True when :meth:`send_audio` works on this transport."""
        return False

    @property
    def audio_lag(self) -> float:
        """Seconds the character's audio (``on_transport_audio``) may arrive after the message that
        ends it (``bot-stopped-speaking``): :data:`DEFAULT_AUDIO_LAG` for a transport whose audio
        travels apart from its messages; 0 where both share one ordered stream."""
        return DEFAULT_AUDIO_LAG

    def send_audio(self, pcm: bytes, sample_rate: int, num_channels: int, *, timeout: float | None) -> None:
        """Send the user's voice (PCM16 little-endian, interleaved), within ``timeout`` seconds.

        Blocks only for back-pressure (a bounded send queue), never longer than ``timeout``.

        Raises:
            NotImplementedError: the transport carries no audio.
            OutboxFull: the audio could not be queued within ``timeout`` (every transport raises
                this one error for it; the client turns it into ``SendQueueFullError``).
            MicrophoneUnheard: the server does not listen to the audio (nothing was sent).
            ConnectionError: not open.
        """
        raise NotImplementedError(f"the {self.kind} transport carries no audio")

    def ping(self) -> None:  # noqa: B027 - optional: transports without pings keep the default
        """Send a keepalive ping if the transport has one (never blocks)."""

    def abort(self, reason: str) -> None:
        """Drop the connection as lost (keepalive timeout); the listener hears a network close."""
        self.close(1006, reason, timeout=0.0)

    @property
    def last_received(self) -> float | None:
        """``time.monotonic()`` of the last frame of any kind received, or None if unknown."""
        return None

    @property
    def unsent(self) -> int:
        """Frames accepted by :meth:`send` that were still queued when the transport closed."""
        return 0

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
