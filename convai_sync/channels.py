"""``ConvaiEvents``: one typed channel per event (after the Convai Unity SDK's ``ConvaiEvents`` hub,
documented on docs.convai.com, Unity SDK scripting reference "Session events")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from . import events as ev
from .audio import AudioFrame
from .delivery import EventDeliveryPolicy
from .errors import SessionError
from .hub import EventHub, Subscription
from .lipsync import LipSync

T = TypeVar("T")


#: When each channel fires: the third column of the channel table (:func:`channel_table`), which
#: README.md and :class:`ConvaiEvents`' docstring carry and tests/test_channel_table.py checks.
WHEN: dict[str, str] = {
    "on_connected": "the session reached CONNECTED: transport joined and `bot-ready` received",
    "on_disconnected": "the session reached DISCONNECTED (`error` is set when a failure ended it)",
    "on_reconnecting": "a dropped session is being restored: on the drop and before each attempt",
    "on_reconnected": "RECONNECTING -> CONNECTED",
    "on_session_state_changed": "every state transition",
    "on_session_error": "the session reports an error (a failed connect attempt, a server `error`, …)",
    "on_pipeline_error": "an error from the server's processing pipeline (RTVI `error`); also on `on_session_error`",
    "on_usage_limit_reached": "`usage-limit-reached`: a quota is exhausted, the session cannot continue",
    "on_user_idle_warning": "`user-idle-warning`: the server closes the session after `remaining_seconds`",
    "on_user_idle_timeout": "the idle warning's deadline passed (measured locally)",
    "on_participant_joined": "a participant joined the room (LiveKit)",
    "on_participant_left": "a participant left the room (LiveKit)",
    "on_room_ownership_rebind_state_changed": "the character's room-ownership rebinding changed state",
    "on_server_response": "`server-response`: the server acknowledged one client message",
    "on_llm_no_response": "`llm-no-response`: the LLM chose not to reply (not an error)",
    "on_bot_ready": "`bot-ready`: the character's pipeline is ready for input",
    "on_message": "every conversation message (`bot-llm-text`, `bot-emotion`, …; an unknown type as `ServerMessage`)",
    "on_bot_text": "each `bot-llm-text` chunk of a reply, as it streams in",
    "on_audio": "each piece of the character's voice (PCM16) as it arrives",
    "on_audio_interrupted": "the character's voice was interrupted (barge-in): stop playing it now",
    "on_waiting_for_slot": "the plan's concurrency limit holds; `SlotWaitPolicy` retries in `retry_in` s",
    "on_session_duration_warning": "`max_session_duration` ends the session in `remaining_seconds`",
    "on_actions": "`action-response`: the actions the character will take, in order (`[]`: none)",
    "on_narrative_section_changed": "`behavior-tree-response`: the story moved to another narrative section",
    "on_metrics": "`metrics` (only with `debug=True`): per-processor ttfb and processing times, in seconds",
    "on_lipsync": "a turn's lip-sync timeline (`LipSync`) started: its first blendshape frames arrived",
    "on_handler_error": "an event handler raised (subscribing here takes over handler errors)",
}


class EventChannel(Generic[T]):
    """One event channel. Also usable as a decorator: ``@client.events.on_connected``."""

    def __init__(self, hub: EventHub, event_type: type[T], name: str) -> None:
        self._hub = hub
        self.event_type = event_type
        self.name = name

    def subscribe(self, handler: Callable[[T], Any],
                  policy: EventDeliveryPolicy | None = None) -> Subscription[T]:
        """Subscribe ``handler(event: T)``; ``policy`` defaults to ``ConvaiConfig.delivery_policy``.

        Returns:
            A :class:`Subscription` (``unsubscribe()``; also a context manager).
        """
        return self._hub.subscribe(self.event_type, handler, policy)

    def once(self, handler: Callable[[T], Any], policy: EventDeliveryPolicy | None = None) -> Subscription[T]:
        """Subscribe for the next event only."""
        return self._hub.once(self.event_type, handler, policy)

    def __call__(self, handler: Callable[[T], Any]) -> Callable[[T], Any]:
        self.subscribe(handler)
        return handler

    def __repr__(self) -> str:
        return f"EventChannel({self.name}: {self.event_type.__name__})"


class ConvaiEvents:
    """Typed channels of one client (``client.events``); ``raw`` is the underlying :class:`EventHub`.

    Subscribe with ``client.events.on_x.subscribe(handler, policy)`` (or use the channel as a decorator);
    ``handler(payload)`` runs under the subscription's delivery policy. Every channel, in table order
    (:meth:`channels`; the same table is in README.md, and a test checks both against :meth:`channels`):

    | channel | payload | fires when |
    |---|---|---|
    | `on_connected` | `Connected` | the session reached CONNECTED: transport joined and `bot-ready` received |
    | `on_disconnected` | `Disconnected` | the session reached DISCONNECTED (`error` is set when a failure ended it) |
    | `on_reconnecting` | `Reconnecting` | a dropped session is being restored: on the drop and before each attempt |
    | `on_reconnected` | `Reconnected` | RECONNECTING -> CONNECTED |
    | `on_session_state_changed` | `SessionStateChanged` | every state transition |
    | `on_session_error` | `SessionError` | the session reports an error (a failed connect attempt, a server `error`, …) |
    | `on_pipeline_error` | `PipelineSessionError` | an error from the server's processing pipeline (RTVI `error`); also on `on_session_error` |
    | `on_usage_limit_reached` | `UsageLimitReached` | `usage-limit-reached`: a quota is exhausted, the session cannot continue |
    | `on_user_idle_warning` | `UserIdleWarningReceived` | `user-idle-warning`: the server closes the session after `remaining_seconds` |
    | `on_user_idle_timeout` | `UserIdleTimeoutElapsed` | the idle warning's deadline passed (measured locally) |
    | `on_participant_joined` | `ParticipantJoined` | a participant joined the room (LiveKit) |
    | `on_participant_left` | `ParticipantLeft` | a participant left the room (LiveKit) |
    | `on_room_ownership_rebind_state_changed` | `RoomOwnershipRebindStateChanged` | the character's room-ownership rebinding changed state |
    | `on_server_response` | `ServerResponse` | `server-response`: the server acknowledged one client message |
    | `on_llm_no_response` | `LLMNoResponse` | `llm-no-response`: the LLM chose not to reply (not an error) |
    | `on_bot_ready` | `BotReady` | `bot-ready`: the character's pipeline is ready for input |
    | `on_message` | `ServerMessage` | every conversation message (`bot-llm-text`, `bot-emotion`, …; an unknown type as `ServerMessage`) |
    | `on_bot_text` | `BotText` | each `bot-llm-text` chunk of a reply, as it streams in |
    | `on_audio` | `AudioFrame` | each piece of the character's voice (PCM16) as it arrives |
    | `on_audio_interrupted` | `AudioInterrupted` | the character's voice was interrupted (barge-in): stop playing it now |
    | `on_waiting_for_slot` | `WaitingForSlot` | the plan's concurrency limit holds; `SlotWaitPolicy` retries in `retry_in` s |
    | `on_session_duration_warning` | `SessionDurationWarning` | `max_session_duration` ends the session in `remaining_seconds` |
    | `on_actions` | `ActionResponse` | `action-response`: the actions the character will take, in order (`[]`: none) |
    | `on_narrative_section_changed` | `NarrativeSectionChanged` | `behavior-tree-response`: the story moved to another narrative section |
    | `on_metrics` | `Metrics` | `metrics` (only with `debug=True`): per-processor ttfb and processing times, in seconds |
    | `on_lipsync` | `LipSync` | a turn's lip-sync timeline (`LipSync`) started: its first blendshape frames arrived |
    | `on_handler_error` | `HandlerError` | an event handler raised (subscribing here takes over handler errors) |
    """  # noqa: E501 (a Markdown table's rows cannot wrap)

    def __init__(self, hub: EventHub, pipeline_error_type: type[SessionError]) -> None:
        self.raw = hub
        self.on_connected = EventChannel(hub, ev.Connected, "on_connected")
        self.on_disconnected = EventChannel(hub, ev.Disconnected, "on_disconnected")
        self.on_reconnecting = EventChannel(hub, ev.Reconnecting, "on_reconnecting")
        self.on_reconnected = EventChannel(hub, ev.Reconnected, "on_reconnected")
        self.on_session_state_changed = EventChannel(hub, ev.SessionStateChanged, "on_session_state_changed")
        self.on_session_error = EventChannel(hub, SessionError, "on_session_error")
        self.on_pipeline_error = EventChannel(hub, pipeline_error_type, "on_pipeline_error")
        self.on_usage_limit_reached = EventChannel(hub, ev.UsageLimitReached, "on_usage_limit_reached")
        self.on_user_idle_warning = EventChannel(hub, ev.UserIdleWarningReceived, "on_user_idle_warning")
        self.on_user_idle_timeout = EventChannel(hub, ev.UserIdleTimeoutElapsed, "on_user_idle_timeout")
        self.on_participant_joined = EventChannel(hub, ev.ParticipantJoined, "on_participant_joined")
        self.on_participant_left = EventChannel(hub, ev.ParticipantLeft, "on_participant_left")
        self.on_room_ownership_rebind_state_changed = EventChannel(
            hub, ev.RoomOwnershipRebindStateChanged, "on_room_ownership_rebind_state_changed")
        self.on_server_response = EventChannel(hub, ev.ServerResponse, "on_server_response")
        self.on_llm_no_response = EventChannel(hub, ev.LLMNoResponse, "on_llm_no_response")
        self.on_bot_ready = EventChannel(hub, ev.BotReady, "on_bot_ready")
        self.on_message = EventChannel(hub, ev.ServerMessage, "on_message")
        self.on_bot_text = EventChannel(hub, ev.BotText, "on_bot_text")
        self.on_audio = EventChannel(hub, AudioFrame, "on_audio")
        self.on_audio_interrupted = EventChannel(hub, ev.AudioInterrupted, "on_audio_interrupted")
        self.on_waiting_for_slot = EventChannel(hub, ev.WaitingForSlot, "on_waiting_for_slot")
        self.on_session_duration_warning = EventChannel(hub, ev.SessionDurationWarning,
                                                        "on_session_duration_warning")
        #: ``action-response`` (:class:`~convai_sync.events.ActionResponse`): actions to run, in order.
        self.on_actions = EventChannel(hub, ev.ActionResponse, "on_actions")
        #: The narrative section changed (:class:`~convai_sync.events.NarrativeSectionChanged`).
        self.on_narrative_section_changed = EventChannel(hub, ev.NarrativeSectionChanged,
                                                         "on_narrative_section_changed")
        #: ``metrics`` (:class:`~convai_sync.events.Metrics`), sent only with ``ConvaiConfig.debug``.
        self.on_metrics = EventChannel(hub, ev.Metrics, "on_metrics")
        #: A new turn's lip-sync timeline (:class:`~convai_sync.LipSync`), when its first frames arrive.
        self.on_lipsync = EventChannel(hub, LipSync, "on_lipsync")
        #: An event handler raised (:class:`~convai_sync.events.HandlerError`). Subscribing here
        #: takes control of handler errors: they are no longer sent to ``threading.excepthook``.
        self.on_handler_error = EventChannel(hub, ev.HandlerError, "on_handler_error")

    def channels(self) -> list[EventChannel[Any]]:
        """Every channel, in table order."""
        return [v for v in vars(self).values() if isinstance(v, EventChannel)]


def channel_table(events: ConvaiEvents) -> str:
    """The channel table as Markdown: one row per channel of ``events`` (channel, payload type, when it fires).

    A channel without a :data:`WHEN` entry shows ``?`` there (and fails the test that checks the table).
    """
    lines = ["| channel | payload | fires when |", "|---|---|---|"]
    for channel in events.channels():
        lines.append(f"| `{channel.name}` | `{channel.event_type.__name__}` | {WHEN.get(channel.name, '?')} |")
    return "\n".join(lines)
