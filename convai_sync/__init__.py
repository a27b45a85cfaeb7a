"""convai_sync: a blocking, thread-based Python SDK for Convai characters (no asyncio).

See README.md for the public API. Every name in ``__all__`` is importable from ``convai_sync``
directly; ``dir(convai_sync)`` lists exactly those names (the private modules stay importable,
e.g. ``convai_sync.testing``, but are not advertised).
"""

from __future__ import annotations

import logging

from .actions import ActionQueue
from .audio import AudioClip, AudioFrame
from .channels import ConvaiEvents, EventChannel
from .character import (
    ActionConfig,
    BlendshapeConfig,
    DynamicInfo,
    SceneCharacter,
    SceneObject,
    TurnDetectionConfig,
    VadParams,
)
from .client import ConvaiClient
from .config import ConvaiConfig
from .delivery import EventDeliveryPolicy
from .disconnect import DisconnectReason
from .errors import (
    CATALOG,
    ConcurrencyLimitError,
    ConfigurationError,
    ConvaiError,
    ConvaiTimeoutError,
    ErrorCode,
    InvalidStateError,
    SendQueueFullError,
    SessionError,
    SessionErrorStage,
    UsageLimitError,
)
from .events import (
    Action,
    ActionResponse,
    AudioData,
    AudioInterrupted,
    BehaviorTreeResponse,
    BlendshapeFrames,
    BotEmotion,
    BotLLMStarted,
    BotLLMStopped,
    BotReady,
    BotReply,
    BotStartedSpeaking,
    BotStoppedSpeaking,
    BotText,
    BotTTSStarted,
    BotTTSStopped,
    BotTTSText,
    BotTurnCompleted,
    Connected,
    Disconnected,
    EventQueueOverflow,
    FinalUserTranscription,
    HandlerError,
    InteractionCreated,
    LLMNoResponse,
    Metrics,
    MetricValue,
    ModerationResponse,
    NarrativeSectionChanged,
    ParticipantInfo,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantType,
    Reconnected,
    Reconnecting,
    RoomOwnershipRebindStateChanged,
    RoomOwnershipRebindStatus,
    ServerMessage,
    ServerResponse,
    SessionDurationWarning,
    SessionStateChanged,
    TurnTimings,
    UsageLimitReached,
    UserIdleTimeoutElapsed,
    UserIdleWarningReceived,
    UserStartedSpeaking,
    UserStoppedSpeaking,
    UserTranscription,
    VadSttEvent,
    Visemes,
    WaitingForSlot,
)
from .hub import EventHub, Subscription
from .lipsync import LipSync, LipSyncClip
from .replies import ReplyStream
from .retry import ReconnectPolicy, RetryPolicy, SlotWaitPolicy
from .session import PipelineSessionError
from .state import SessionState

__version__ = "0.1.0"

logging.getLogger("convai_sync").addHandler(logging.NullHandler())

__all__ = [
    "CATALOG", "Action", "ActionConfig", "ActionQueue", "ActionResponse", "AudioClip", "AudioData", "AudioFrame",
    "AudioInterrupted",
    "BehaviorTreeResponse", "BlendshapeConfig", "BlendshapeFrames",
    "BotEmotion", "BotLLMStarted", "BotLLMStopped", "BotReady", "BotReply", "BotStartedSpeaking",
    "BotStoppedSpeaking", "BotTTSStarted", "BotTTSStopped", "BotTTSText", "BotText",
    "BotTurnCompleted", "ConcurrencyLimitError", "ConfigurationError", "Connected", "ConvaiClient",
    "ConvaiConfig", "ConvaiError", "ConvaiEvents", "ConvaiTimeoutError", "Disconnected",
    "DisconnectReason", "DynamicInfo", "ErrorCode", "EventChannel", "EventDeliveryPolicy", "EventHub",
    "EventQueueOverflow", "FinalUserTranscription", "HandlerError", "InteractionCreated",
    "InvalidStateError", "LLMNoResponse", "LipSync", "LipSyncClip", "MetricValue", "Metrics",
    "ModerationResponse", "NarrativeSectionChanged", "ParticipantInfo",
    "ParticipantJoined", "ParticipantLeft", "ParticipantType", "PipelineSessionError",
    "ReconnectPolicy", "Reconnected", "Reconnecting", "ReplyStream", "RetryPolicy", "RoomOwnershipRebindStateChanged",
    "RoomOwnershipRebindStatus", "SceneCharacter", "SceneObject", "ServerMessage", "ServerResponse",
    "SessionDurationWarning",
    "SendQueueFullError", "SessionError", "SessionErrorStage", "SessionState", "SessionStateChanged", "SlotWaitPolicy",
    "Subscription", "TurnDetectionConfig", "TurnTimings", "UsageLimitError", "UsageLimitReached",
    "UserIdleTimeoutElapsed",
    "UserIdleWarningReceived", "UserStartedSpeaking", "UserStoppedSpeaking", "UserTranscription",
    "VadParams", "VadSttEvent", "Visemes", "WaitingForSlot", "__version__",
]


def __dir__() -> list[str]:
    """PEP 562: the public names only (not the submodules the imports above bind)."""
    return sorted(__all__)
