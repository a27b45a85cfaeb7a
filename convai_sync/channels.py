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
    """Typed channels of one client; ``raw`` is the underlying :class:`EventHub`."""

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
