"""Event payloads: one frozen dataclass per event.

Sources: Convai Unity SDK docs, "Session events" (docs.convai.com,
convai-unity-sdk/scripting-reference/session-events); Convai's Live API message glossary and
server-to-client messages.

Lifecycle events (``Connected``, ``Disconnected``, …) are produced by the session; conversation
traffic subclasses :class:`ServerMessage` and arrives on ``on_message``; a server message type
this SDK does not know arrives as a plain :class:`ServerMessage` (never dropped). Every
timestamp is an aware UTC datetime; every duration is in seconds.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .audio import AudioClip
from .delivery import EventDeliveryPolicy
from .disconnect import DisconnectReason
from .errors import ErrorCode, SessionError
from .lipsync import LipSyncClip
from .names import ReadableNames
from .state import SessionState


def utcnow() -> datetime:
    """Aware UTC now."""
    return datetime.now(timezone.utc)


_EMPTY: Mapping[str, Any] = {}


class ParticipantType(ReadableNames, enum.IntEnum):
    """Kind of room participant (Convai Unity ``ParticipantType``)."""

    UNKNOWN = 0
    LOCAL_PLAYER = 1
    REMOTE_PLAYER = 2
    CHARACTER = 3


class RoomOwnershipRebindStatus(ReadableNames, enum.IntEnum):
    """Outcome of a character ownership rebind (Convai Unity)."""

    DEFERRED_UNTIL_STARTUP = 0
    APPLIED_IMMEDIATELY = 1
    PENDING_RECONNECT = 2
    REJECTED_TRANSITION_STATE = 3
    REJECTED_INVALID_OWNERSHIP = 4


# ---- lifecycle -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Connected:
    """The session reached CONNECTED (transport joined and ``bot-ready`` received)."""

    session_id: str
    character_session_id: str | None
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class Disconnected:
    """The session reached DISCONNECTED. ``error`` is set when it ended because of one."""

    reason: DisconnectReason
    error: SessionError | None = None
    session_id: str | None = None
    timestamp: datetime = field(default_factory=utcnow)

    @property
    def message(self) -> str:
        """What happened, in words for a person: the error's message and code when the session
        ended because of one (``reason`` alone can mislead: a duration cap the SDK enforced is a
        ``CLIENT_INITIATED`` close), else the reason's meaning."""
        if self.error is not None:
            return f"{self.error.message} ({self.error.error_code.value})"
        return self.reason.message


@dataclass(frozen=True, kw_only=True)
class Reconnecting:
    """A dropped session is being restored; fires on the drop and before each attempt."""

    attempt: int
    max_attempts: int
    delay: float
    reason: DisconnectReason
    error: SessionError | None = None
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class Reconnected:
    """RECONNECTING -> CONNECTED."""

    session_id: str
    character_session_id: str | None
    attempts: int
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class SessionStateChanged:
    """Any state transition, with the Convai Unity SDK relay's flags (``IsReconnecting``…)."""

    old_state: SessionState
    new_state: SessionState
    session_id: str | None
    timestamp: datetime = field(default_factory=utcnow)
    error: SessionError | None = None

    @property
    def error_code(self) -> str:
        """The error's code when ``new_state`` is ERROR, else ``""``."""
        return self.error.error_code.value if self.error is not None else ""

    @property
    def is_error(self) -> bool:
        return self.new_state is SessionState.ERROR

    @property
    def is_reconnecting(self) -> bool:
        return self.old_state is SessionState.CONNECTED and self.new_state is SessionState.RECONNECTING

    @property
    def is_connection_established(self) -> bool:
        return self.old_state is SessionState.CONNECTING and self.new_state is SessionState.CONNECTED

    @property
    def is_reconnection_successful(self) -> bool:
        return self.old_state is SessionState.RECONNECTING and self.new_state is SessionState.CONNECTED

    @property
    def is_disconnected(self) -> bool:
        return self.new_state is SessionState.DISCONNECTED


@dataclass(frozen=True, kw_only=True)
class WaitingForSlot:
    """The plan's concurrency limit holds; the SDK waits ``retry_in`` s before trying again."""

    attempt: int
    waited: float
    retry_in: float
    error: SessionError | None = None
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class SessionDurationWarning:
    """``max_session_duration`` will end the session in ``remaining_seconds``."""

    remaining_seconds: float
    max_session_duration: float
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class UserIdleTimeoutElapsed:
    """Local deadline (warning time + ``remaining_seconds``) passed (Unity ``OnUserIdleTimeoutElapsed``)."""

    warning_received_at: datetime
    deadline: datetime
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class HandlerError:
    """An event handler raised; the SDK caught the exception and kept running.

    Produced by the :class:`~convai_sync.EventHub` on the thread where the handler ran (the
    session thread for IMMEDIATE, the ``convai-dispatch-<n>`` thread for BACKGROUND, the thread
    calling ``pump()`` for MAIN_THREAD). It is logged at ERROR with the traceback on the
    ``convai_sync`` logger, counted in ``diagnostics()["events"]["handler_errors"]``, passed to
    the hub's error handler (``EventHub.set_error_handler``) and published on
    ``client.events.on_handler_error`` (delivered under that subscription's own policy). When
    the application takes none of these (no error handler, no ``HandlerError`` subscription,
    no logging handler that would print the record, and ``strict_handlers`` off) the exception
    goes to :func:`threading.excepthook`, which prints it to stderr by default. A handler
    subscribed to ``HandlerError`` that raises is logged and reported the same way, but not
    published again (no recursion).

    Attributes:
        event: The event object (any payload type) the handler was called with.
        handler: The handler's qualified name, e.g. ``"mygame.on_text"``.
        exception: The exception it raised (traceback in ``exception.__traceback__``).
        policy: The :class:`~convai_sync.EventDeliveryPolicy` of the failing subscription.
        thread: Name of the thread the handler ran on.
        timestamp: Aware UTC datetime of the failure.
    """

    event: object
    handler: str
    exception: BaseException
    policy: EventDeliveryPolicy | None = None
    thread: str = ""
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class EventQueueOverflow:
    """A bounded delivery queue was full, so one delivery was dropped (never blocks the sender).

    The MAIN_THREAD queue fills when the host stops calling ``pump()``; the BACKGROUND queue
    when a BACKGROUND handler blocks. Each dropped delivery is logged at WARNING on the
    ``convai_sync`` logger, counted in ``diagnostics()["events"]["overflows"]`` and passed to the
    hub's error handler (``EventHub.set_error_handler``), on the publishing thread (usually the
    session thread: the error handler must not block). Raise
    ``ConvaiConfig.event_queue_size`` or pump more often.

    Attributes:
        policy: Which queue: ``"main_thread"`` or ``"background"``.
        dropped: Total deliveries this queue has dropped so far (1, 2, …).
        event: The event object (any payload type) that was not delivered.
        timestamp: Aware UTC datetime of the drop.
    """

    policy: str
    dropped: int
    event: object
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class AudioInterrupted:
    """The character's voice was interrupted (barge-in): stop playing it now (``on_audio_interrupted``).

    By the time this is delivered, the SDK has already dropped every frame of the voice it had not
    delivered yet, and drops the interrupted turn's later frames; a player drops what it has
    buffered (``convai_sync.devices.Speaker`` does).

    Attributes:
        turn_id: The interrupted turn (``AudioFrame.turn_id``): the one speaking, else the latest
            (whose queued frames were dropped); None before any turn.
        source: The signal: ``"client"`` (``client.interrupt()``), ``"server"`` (Pipecat's
            ``InterruptionFrame`` on the WebSocket), ``"bot-turn-completed"`` (``was_interrupted``)
            or ``"neurosync-blendshapes-cancel"`` (``reason: "interruption"``).
        dropped: Undelivered audio frames the SDK dropped from its queues.
        timestamp: Aware UTC datetime.
    """

    turn_id: int | None
    source: str
    dropped: int = 0
    timestamp: datetime = field(default_factory=utcnow)


# ---- server signals that have their own channel --------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BotReady:
    """``bot-ready``: the character's pipeline is ready for input."""

    version: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class ServerResponse:
    """``server-response``: the server's acknowledgement of one client message (§1.10).

    ``status`` is ``"success"``, ``"error"``, ``"processing"`` or ``"pending"``. For
    ``context-update`` the ``extras`` carry the token budget (``token_count``,
    ``remaining_tokens``, ``max_tokens``…).
    """

    event_type: str
    status: str
    message: str | None = None
    extras: Mapping[str, Any] | None = None
    timestamp: datetime = field(default_factory=utcnow)

    @property
    def is_error(self) -> bool:
        return self.status == "error"

    @property
    def is_final(self) -> bool:
        """False for the non-terminal ``processing``/``pending`` statuses."""
        return self.status not in ("processing", "pending")

    @property
    def token_count(self) -> int | None:
        return _int_or_none((self.extras or _EMPTY).get("token_count"))

    @property
    def remaining_tokens(self) -> int | None:
        return _int_or_none((self.extras or _EMPTY).get("remaining_tokens"))

    @property
    def max_tokens(self) -> int | None:
        return _int_or_none((self.extras or _EMPTY).get("max_tokens"))


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, kw_only=True)
class LLMNoResponse:
    """``llm-no-response``: the LLM deliberately chose not to reply (not an error)."""

    reason: str | None = None
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class UsageLimitReached:
    """``usage-limit-reached``: a quota is exhausted; the session cannot continue."""

    quota_type: str
    message: str
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class UserIdleWarningReceived:
    """``user-idle-warning``: the server will close the session after ``remaining_seconds``."""

    remaining_seconds: int
    message: str
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class ParticipantInfo:
    """A room participant (Convai Unity ``ParticipantInfo``)."""

    participant_id: str
    identity: str = ""
    display_name: str = ""
    participant_type: ParticipantType = ParticipantType.UNKNOWN
    is_local: bool = False
    is_muted: bool = False
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class ParticipantJoined(ParticipantInfo):
    """A participant joined (delivered on ``on_participant_joined``)."""


@dataclass(frozen=True, kw_only=True)
class ParticipantLeft(ParticipantInfo):
    """A participant left (delivered on ``on_participant_left``)."""


@dataclass(frozen=True, kw_only=True)
class RoomOwnershipRebindStateChanged:
    """Active character ownership rebinding changed state (Convai Unity)."""

    outcome: RoomOwnershipRebindStatus
    has_pending_reconnect: bool = False
    session_state: SessionState = SessionState.DISCONNECTED
    active_character_id: str = ""
    requested_character_id: str = ""
    reconnect_required: bool = False
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class PipelineError:
    """Internal carrier: RTVI ``error`` frame (mapped to ``server.error``/``server.fatal_error``)."""

    error: str
    fatal: bool


@dataclass(frozen=True, kw_only=True)
class ProtocolFault:
    """Internal carrier: a frame that could not be decoded (``protocol.*`` code)."""

    code: ErrorCode
    detail: str
    raw: str


#: Characters of a reply's text ``repr(BotReply)`` shows before shortening it with "…".
REPR_TEXT_CHARS = 80


# ---- conversation traffic (on_message) ------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ServerMessage:
    """Any server message on ``on_message``; an unknown ``type`` arrives as exactly this class.

    Attributes:
        type: The normalised event type (Form B messages use the inner ``data.type``).
        data: The payload as received (read-only view; do not mutate).
    """

    type: str
    data: Mapping[str, Any] = field(default_factory=dict, compare=False)
    timestamp: datetime = field(default_factory=utcnow, compare=False)


@dataclass(frozen=True, kw_only=True)
class BotLLMStarted(ServerMessage):
    """``bot-llm-started``: the character is thinking."""


@dataclass(frozen=True, kw_only=True)
class BotText(ServerMessage):
    """``bot-llm-text``: one chunk of the reply; concatenate in order."""

    text: str


@dataclass(frozen=True, kw_only=True)
class BotLLMStopped(ServerMessage):
    """``bot-llm-stopped``: generation finished."""


@dataclass(frozen=True, kw_only=True)
class BotTTSStarted(ServerMessage):
    """``bot-tts-started``."""


@dataclass(frozen=True, kw_only=True)
class BotTTSStopped(ServerMessage):
    """``bot-tts-stopped``."""


@dataclass(frozen=True, kw_only=True)
class BotTTSText(ServerMessage):
    """``bot-tts-text`` / ``bot-transcription``: spoken text."""

    text: str


@dataclass(frozen=True, kw_only=True)
class UserTranscription(ServerMessage):
    """``user-transcription``: interim (``final=False``) or final user speech-to-text."""

    text: str
    final: bool
    user_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class FinalUserTranscription(ServerMessage):
    """``final-user-transcription``: the final user utterance (echoes a typed ``message_id``)."""

    text: str
    message_id: str | None = None
    speaker_id: str | None = None
    speaker_name: str | None = None
    participant_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class UserStartedSpeaking(ServerMessage):
    """``user-started-speaking``."""


@dataclass(frozen=True, kw_only=True)
class UserStoppedSpeaking(ServerMessage):
    """``user-stopped-speaking``."""


@dataclass(frozen=True, kw_only=True)
class BotStartedSpeaking(ServerMessage):
    """``bot-started-speaking``: bot audio begins."""

    response_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class BotStoppedSpeaking(ServerMessage):
    """``bot-stopped-speaking``: bot audio ends."""

    response_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class BotTurnCompleted(ServerMessage):
    """``bot-turn-completed``: terminal for the turn."""

    was_interrupted: bool = False
    was_aborted: bool = False
    error_reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class InteractionCreated(ServerMessage):
    """``interaction-created``: a new interaction id for this connect."""

    interaction_id: str
    character_session_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class BotEmotion(ServerMessage):
    """``bot-emotion``: turn-level emotion; ``scale`` 1 subtle, 2 moderate, 3 intense."""

    emotion: str
    scale: int | None = None


@dataclass(frozen=True)
class Action:
    """One action of an ``action-response``."""

    name: str
    target: str | None = None


@dataclass(frozen=True, kw_only=True)
class ActionResponse(ServerMessage):
    """``action-response``: ordered actions to run (empty = no-op)."""

    actions: tuple[Action, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ModerationResponse(ServerMessage):
    """``moderation-response``: ``result`` True means the input passed."""

    result: bool
    user_input: str | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class BehaviorTreeResponse(ServerMessage):
    """``behavior-tree-response``: the narrative section changed."""

    bt_code: str | None = None
    bt_constants: str | None = None
    narrative_section_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class NarrativeSectionChanged:
    """The character's narrative section changed (``on_narrative_section_changed``; Convai Unity
    ``NarrativeSectionChanged``, from ``behavior-tree-response``, Convai "Narrative design").

    Published on the session thread right after the ``behavior-tree-response`` that carried a
    ``narrative_section_id``; ``client.narrative_section_id`` holds the id from then on.

    Attributes:
        section_id: The new section's id (``str``).
        previous_section_id: The section before it this session (None for the first one).
        bt_code: The behaviour-tree code of the section, if the server sent one.
        bt_constants: Its constants, if sent.
        timestamp: Aware UTC datetime.
    """

    section_id: str
    previous_section_id: str | None = None
    bt_code: str | None = None
    bt_constants: str | None = None
    timestamp: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class Visemes(ServerMessage):
    """``visemes``: lip-sync weights (15 keys, 0..1), passed through as data."""

    visemes: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class BlendshapeFrames(ServerMessage):
    """``neurosync-blendshapes`` / ``chunked-neurosync-blendshapes`` / ``…-cancel`` /
    ``blendshape-turn-stats`` (``type`` tells which; Convai Live API "server-to-client messages").

    Attributes:
        frames: For the two frame messages, each frame's values in order (``float``; 251 for
            ``mha``, 61 ``arkit``, 170 ``cc4_extended``, 15 ``visemes``); ``()`` otherwise.
        valid_through_frame_index: For ``neurosync-blendshapes-cancel``: frames of the turn up to
            this index (0-based, counted from the turn's first frame) stay valid; None = discard
            every buffered frame.
        reason: The cancel's ``reason`` (``"interruption"``), if any.
        data: The payload as received.
    """

    frames: tuple[tuple[float, ...], ...] = field(default=(), repr=False)
    valid_through_frame_index: int | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class VadSttEvent(ServerMessage):
    """``vad-stt-started`` / ``vad-stt-stopped``."""


@dataclass(frozen=True, kw_only=True)
class AudioData(ServerMessage):
    """``audio-data``: the character's voice as data messages (LiveKit ``audio_config.output``
    ``audio_routing`` ``"data_only"``/``"both"``; Convai Realtime API "audio-data event").

    The session turns each one into an :class:`~convai_sync.audio.AudioFrame` on ``on_audio``
    (tagged with its turn like track audio); it is not published on ``on_message``.

    Attributes:
        pcm: PCM16 little-endian, interleaved (decoded from base64; a WAV header removed).
        sample_rate: Hz (from the message, or from its WAV header when it has one).
        num_channels: Channels (``channels``; 1 when absent).
        data: The payload as received.
    """

    pcm: bytes = field(default=b"", repr=False)
    sample_rate: int = 0
    num_channels: int = 1

    def __repr__(self) -> str:
        # ``data`` holds the base64 audio: sizes only.
        return f"AudioData({self.sample_rate} Hz, {self.num_channels} ch, {len(self.pcm)} bytes of PCM16)"


@dataclass(frozen=True)
class MetricValue:
    """One measurement of a ``metrics`` message: ``value`` seconds for ``processor`` (and ``model``)."""

    processor: str
    value: float
    model: str | None = None


@dataclass(frozen=True, kw_only=True)
class Metrics(ServerMessage):
    """``metrics``: the server's per-processor timings, sent only when ``ConvaiConfig.debug`` is
    True (Convai Live API "metrics"), on ``on_metrics`` and ``on_message``.

    Attributes:
        ttfb: Time to first byte per processor (STT, LLM, TTS…), in seconds.
        processing: Processing time per processor, in seconds.
        data: The payload as received (other keys such as token usage stay here).
    """

    ttfb: tuple[MetricValue, ...] = ()
    processing: tuple[MetricValue, ...] = ()


@dataclass(frozen=True)
class TurnTimings:
    """When each stage of one reply happened, in seconds on the client's monotonic clock
    (``time.monotonic()``, or the ``clock`` given to ``ConvaiClient``); None for a stage that
    did not happen (no voice, no text…).

    Attributes:
        sent: The question was written to the transport.
        llm_started: ``bot-llm-started`` arrived.
        first_text: The first ``bot-llm-text`` chunk arrived.
        first_audio: The first frame of the character's voice arrived.
        completed: ``bot-turn-completed`` (or ``llm-no-response``) arrived.
    """

    sent: float
    llm_started: float | None = None
    first_text: float | None = None
    first_audio: float | None = None
    completed: float | None = None

    def since_sent(self, stage: str) -> float | None:
        """Seconds from ``sent`` to ``stage`` (``"llm_started"``, ``"first_text"``, ``"first_audio"``,
        ``"completed"``), or None when it did not happen."""
        at = getattr(self, stage)
        return None if at is None else at - self.sent


@dataclass(frozen=True, kw_only=True)
class BotReply:
    """The character's whole reply to one :meth:`ConvaiClient.ask`.

    Attributes:
        text: All ``bot-llm-text`` chunks joined in order.
        emotion: The turn's ``bot-emotion`` if one came.
        emotion_scale: Its scale (1..3) if one came.
        actions: The actions of every ``action-response`` of the turn, in order.
        chunks: Each chunk as received.
        no_response: True when the LLM chose not to reply (``llm-no-response``).
        was_interrupted: True when the turn ended interrupted.
        message_id: The id sent with the question (echoed by ``final-user-transcription``).
        audio: The character's voice for this turn (PCM16, as an ``AudioClip``) when the session
            receives audio and the reply was spoken; for an interrupted reply, the voice that came
            before the interruption. None when no voice came for this turn: the session does not
            receive audio (``ConvaiConfig.receive_audio=False``; or the WebSocket transport without
            the ``audio`` extra's protobuf; or a server that sends no voice on the WebSocket, e.g. the
            simulator unless started with ``Simulator(websocket_audio=True)``), text-to-speech is off
            (``tts_enabled=False``), or the LLM did not reply. The SDK logs one line per session
            (logger ``convai_sync``) when a spoken reply ends without any voice, saying which.
        lipsync: The turn's lip-sync frames (:class:`~convai_sync.LipSyncClip`) when
            ``ConvaiConfig.blendshape_config`` asked for them and frames came (a cancel on
            interruption already applied); None otherwise.
        timings: When each stage of the turn happened (:class:`TurnTimings`).

    ``repr()``/``print()`` show the text (shortened), the emotion and the audio's duration and size,
    never the audio's bytes.
    """

    text: str
    emotion: str | None = None
    emotion_scale: int | None = None
    actions: tuple[Action, ...] = ()
    chunks: tuple[str, ...] = ()
    no_response: bool = False
    was_interrupted: bool = False
    message_id: str | None = None
    audio: AudioClip | None = None
    lipsync: LipSyncClip | None = None
    timings: TurnTimings | None = None

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= REPR_TEXT_CHARS else self.text[:REPR_TEXT_CHARS - 1] + "…"
        parts = [f"text={text!r}"]
        if self.emotion is not None:
            parts.append(f"emotion={self.emotion!r}" + (f" ({self.emotion_scale})" if self.emotion_scale else ""))
        if self.actions:
            parts.append(f"actions={[a.name for a in self.actions]!r}")
        parts.append(f"chunks={len(self.chunks)}")
        if self.no_response:
            parts.append("no_response=True")
        if self.was_interrupted:
            parts.append("was_interrupted=True")
        parts.append(f"audio={self.audio!r}")
        return f"BotReply({', '.join(parts)})"
