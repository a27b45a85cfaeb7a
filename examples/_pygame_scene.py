"""The scene's state and how SDK events and player input change it (no drawing here: see ``_pygame_view``).

Every SDK handler is subscribed with ``EventDeliveryPolicy.MAIN_THREAD``: the SDK only queues the
event, and the host's one ``client.pump()`` per frame runs the handler on the main thread, where it
may touch the scene (and pygame). Every handler goes through the :class:`ThreadGuard`, which
records the thread it ran on.

The three session-event displays follow Convai's "Session events" documentation (Unity SDK
scripting reference, docs.convai.com), with the concurrency "Please wait…" banner asked for on the
Convai forum ("UX when Character Session Concurrency is reached"):

1. proctor HUD: dims while the session is not CONNECTED, brightens on ``on_connected`` /
   ``on_reconnected``;
2. session error banner with the recoverability branch: ``SessionError.is_recoverable`` ->
   "reconnecting…", otherwise "reload" (F5); "Please wait…" while ``SlotWaitPolicy`` waits for a
   concurrency slot (``on_waiting_for_slot``);
3. idle-warning countdown from ``on_user_idle_warning``; any key press answers it with
   ``reset_idle_timer()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pygame
from _main_thread import ThreadGuard
from _pygame_stage import Stage
from _pygame_workers import Connector, MicStream

from convai_sync import (
    ActionQueue,
    AudioClip,
    AudioFrame,
    AudioInterrupted,
    BotLLMStarted,
    BotStartedSpeaking,
    BotStoppedSpeaking,
    BotText,
    BotTurnCompleted,
    Connected,
    ConvaiClient,
    ConvaiError,
    Disconnected,
    DisconnectReason,
    EventDeliveryPolicy,
    FinalUserTranscription,
    HandlerError,
    NarrativeSectionChanged,
    Reconnected,
    Reconnecting,
    SessionError,
    SessionState,
    SessionStateChanged,
    UsageLimitReached,
    UserIdleTimeoutElapsed,
    UserIdleWarningReceived,
    WaitingForSlot,
)
from convai_sync.pygame_voice import VoicePlayer

log = logging.getLogger("examples.pygame_scene")
MAIN = EventDeliveryPolicy.MAIN_THREAD
#: HUD brightness while the character is unavailable (1.0 = full), and how fast it fades (per second).
HUD_DIM = 0.35
HUD_FADE_PER_SECOND = 5.0
#: How long a recoverable error that did not end the session stays on the banner (seconds).
TRANSIENT_BANNER_SECONDS = 4.0
MAX_INPUT = 200
#: The narrative triggers F6 fires, in turn (the shopkeeper's story: simulator/characters/shopkeeper.json).
STORY_TRIGGERS = ("enter_shop", "show_sword", "deal_done")


@dataclass(frozen=True)
class Banner:
    """What the banner shows: ``kind`` is ``"please_wait"``, ``"recoverable"`` or ``"fatal"``."""

    kind: str
    text: str
    since: float
    transient: bool = False


class Scene:
    """The scene's state. Touch it from the main thread only (handlers run there via ``pump()``)."""

    def __init__(self, client: ConvaiClient, player: VoicePlayer | None, guard: ThreadGuard,
                 voice_clip: AudioClip | None = None, clock: Callable[[], float] = time.monotonic,
                 triggers: tuple[str, ...] = STORY_TRIGGERS) -> None:
        self.client = client
        self.player = player
        self.guard = guard
        self.voice_clip = voice_clip
        self.clock = clock
        self.connector = Connector(client)
        self.running = True
        self.state = SessionState.DISCONNECTED
        self.hud_target = HUD_DIM
        self.hud_brightness = HUD_DIM
        self.banner: Banner | None = None
        self.idle_deadline: float | None = None  # monotonic seconds
        self.idle_total = 0.0  # the warning's remaining_seconds, for the countdown ring
        self.idle_message = ""
        self.subtitle = ""
        self.user_line = ""
        self.note = ""
        self.thinking = False
        self.speaking = False
        self.input_text = ""
        self.mic: MicStream | None = None
        self.turns_completed = 0
        self.slot_waits = 0
        self.reconnects = 0
        self.interrupted_turns = 0
        self.handler_errors: list[str] = []
        self._new_turn = True
        self._last_tick = clock()
        # The game: the character's body in the shop, the actions it is handed, the story's section.
        self.stage = Stage()
        self.actions = ActionQueue(client)  # its handler only appends (IMMEDIATE); drained in tick()
        self.section: str | None = None
        self.section_changes = 0
        self.triggers = triggers
        self.triggers_fired = 0
        self._subscribe()

    # ------------------------------------------------------------------ subscriptions

    def _subscribe(self) -> None:
        ev = self.client.events
        raw = ev.raw
        table: list[tuple[Any, str, Callable[[Any], None]]] = [
            (ev.on_session_state_changed, "on_session_state_changed", self.on_state_changed),
            (ev.on_connected, "on_connected", self.on_connected),
            (ev.on_reconnecting, "on_reconnecting", self.on_reconnecting),
            (ev.on_reconnected, "on_reconnected", self.on_reconnected),
            (ev.on_disconnected, "on_disconnected", self.on_disconnected),
            (ev.on_session_error, "on_session_error", self.on_session_error),
            (ev.on_waiting_for_slot, "on_waiting_for_slot", self.on_waiting_for_slot),
            (ev.on_usage_limit_reached, "on_usage_limit_reached", self.on_usage_limit),
            (ev.on_user_idle_warning, "on_user_idle_warning", self.on_idle_warning),
            (ev.on_user_idle_timeout, "on_user_idle_timeout", self.on_idle_timeout),
            (ev.on_bot_text, "on_bot_text", self.on_bot_text),
            (ev.on_audio, "on_audio", self.on_audio),
            (ev.on_audio_interrupted, "on_audio_interrupted", self.on_audio_interrupted),
            (ev.on_handler_error, "on_handler_error", self.on_handler_error),
            (ev.on_narrative_section_changed, "on_narrative_section_changed", self.on_section_changed),
        ]
        for channel, name, handler in table:
            channel.subscribe(self.guard.wrap(name, handler), MAIN)
        conversation: list[tuple[type[Any], str, Callable[[Any], None]]] = [
            (BotLLMStarted, "BotLLMStarted", self.on_llm_started),
            (BotStartedSpeaking, "BotStartedSpeaking", self.on_started_speaking),
            (BotStoppedSpeaking, "BotStoppedSpeaking", self.on_stopped_speaking),
            (BotTurnCompleted, "BotTurnCompleted", self.on_turn_completed),
            (FinalUserTranscription, "FinalUserTranscription", self.on_user_transcription),
        ]
        for event_type, name, handler in conversation:
            raw.subscribe(event_type, self.guard.wrap(name, handler), MAIN)

    # ------------------------------------------------------------------ session handlers

    def on_state_changed(self, event: SessionStateChanged) -> None:
        self.state = event.new_state
        if not event.new_state.can_accept_input():
            self.hud_target = HUD_DIM

    def on_connected(self, _event: Connected) -> None:
        self.hud_target = 1.0
        self.banner = None
        self.note = ""

    def on_reconnecting(self, event: Reconnecting) -> None:
        self.hud_target = HUD_DIM
        self.reconnects += 1
        if self.player is not None:
            self.player.interrupt()  # the link dropped mid-reply: that audio will not continue
        self._show("recoverable", f"Connection lost ({event.reason.message}) — reconnecting… "
                                  f"(attempt {event.attempt}/{event.max_attempts})")

    def on_reconnected(self, _event: Reconnected) -> None:
        self.hud_target = 1.0
        self.banner = None

    def on_disconnected(self, event: Disconnected) -> None:
        self.hud_target = HUD_DIM
        self.idle_deadline = None
        if self.player is not None:
            self.player.interrupt()
        if event.reason is DisconnectReason.CLIENT_INITIATED and event.error is None:
            return
        if self.banner is None or self.banner.kind != "fatal":
            self._show("fatal", f"Session ended: {event.message} — press F5 to reload")

    def on_session_error(self, error: SessionError) -> None:
        if error.is_recoverable:
            # The session goes on (or the SDK is already reconnecting): say so, briefly.
            transient = self.state is SessionState.CONNECTED
            self._show("recoverable", f"{error.message} [{error.error_code.value}] — reconnecting…",
                       transient=transient)
        else:
            self._show("fatal", f"{error.message} [{error.error_code.value}] — press F5 to reload")

    def on_waiting_for_slot(self, event: WaitingForSlot) -> None:
        self.slot_waits += 1
        self._show("please_wait", f"Please wait… every character slot is busy (attempt {event.attempt}, "
                                  f"waited {event.waited:.1f} s, next try in {event.retry_in:.1f} s)")

    def on_usage_limit(self, event: UsageLimitReached) -> None:
        self._show("fatal", f"Usage limit reached ({event.quota_type}): {event.message}")

    def on_idle_warning(self, event: UserIdleWarningReceived) -> None:
        self.idle_deadline = self.clock() + event.remaining_seconds
        self.idle_total = float(event.remaining_seconds)
        self.idle_message = event.message

    def on_idle_timeout(self, _event: UserIdleTimeoutElapsed) -> None:
        self.idle_deadline = None
        self.note = "Idle timeout: Convai will close the session"

    def on_section_changed(self, event: NarrativeSectionChanged) -> None:
        self.section = event.section_id
        self.section_changes += 1

    def on_handler_error(self, event: HandlerError) -> None:
        self.handler_errors.append(f"{event.handler}: {event.exception!r}")

    # ------------------------------------------------------------------ conversation handlers

    def on_llm_started(self, _event: BotLLMStarted) -> None:
        self.thinking = True
        self._new_turn = True

    def on_bot_text(self, event: BotText) -> None:
        if self._new_turn:
            self.subtitle = ""
            self._new_turn = False
        self.thinking = False
        self.subtitle += event.text

    def on_audio(self, frame: AudioFrame) -> None:
        if self.player is not None:
            self.player.feed(frame)

    def on_audio_interrupted(self, event: AudioInterrupted) -> None:
        # The SDK has dropped the voice it had not delivered; drop what the player holds too.
        self.interrupted_turns += 1
        if self.player is not None:
            self.player.interrupt(event.turn_id)

    def on_started_speaking(self, _event: BotStartedSpeaking) -> None:
        self.speaking = True

    def on_stopped_speaking(self, _event: BotStoppedSpeaking) -> None:
        self.speaking = False

    def on_turn_completed(self, _event: BotTurnCompleted) -> None:
        self.thinking = False
        self._new_turn = True
        self.turns_completed += 1

    def on_user_transcription(self, event: FinalUserTranscription) -> None:
        self.user_line = f"You: {event.text}"  # what the character heard (typed, or transcribed speech)

    # ------------------------------------------------------------------ the player's input

    def handle(self, event: pygame.event.Event) -> None:
        """One pygame input event (main thread)."""
        self.guard.check("Scene.handle")
        if event.type == pygame.QUIT:
            self.running = False
        elif event.type == pygame.TEXTINPUT:
            self.input_text = (self.input_text + event.text)[:MAX_INPUT]
        elif event.type == pygame.KEYDOWN:
            if self.idle_deadline is not None:
                self._answer_idle_warning()
            self._key(event.key)
        elif event.type == pygame.MOUSEBUTTONDOWN and self.banner is not None:
            self.banner = None  # the banner is dismissible

    def _key(self, key: int) -> None:
        if key == pygame.K_ESCAPE:
            self.running = False
        elif key in (pygame.K_RETURN, pygame.K_KP_ENTER):
            self.send_line()
        elif key == pygame.K_BACKSPACE:
            self.input_text = self.input_text[:-1]
        elif key == pygame.K_F2:
            self.send_voice_clip()
        elif key == pygame.K_F3:
            self.interrupt()
        elif key == pygame.K_F5:
            self.reload()
        elif key == pygame.K_F6:
            self.fire_trigger()
        elif key == pygame.K_F9:
            self.banner = None

    def _answer_idle_warning(self) -> None:
        try:
            self.client.reset_idle_timer()  # returns at once (the frame is written or queued)
            self.idle_deadline = None
            self.note = "Still here — idle timer reset"
        except ConvaiError as exc:
            self.note = f"Could not reset the idle timer: {exc.error.message}"

    def send_line(self) -> None:
        """Send the typed line with ``send_text`` (never blocks); keep it if it cannot be sent."""
        text = self.input_text.strip()
        if not text:
            return
        if self.player is not None and self.player.busy:
            self.interrupt()  # barge-in: the player talks over the character
        try:
            self.client.send_text(text)
        except ConvaiError as exc:
            self.note = f"Not sent ({exc.error.message}); your line is kept"
            return
        self.user_line = f"You: {text}"
        self.input_text = ""
        self.note = ""

    def send_voice_clip(self) -> None:
        """Start streaming the loaded WAV clip to the character (F2)."""
        if self.voice_clip is None:
            self.note = "No voice clip loaded (--voice-clip FILE.wav)"
            return
        if not self.state.can_accept_input():
            self.note = "Not connected: the clip was not sent"
            return
        if self.mic is not None:
            self.mic.stop(0.0)
        self.mic = MicStream(self.client, self.voice_clip)
        self.mic.start()
        self.user_line = f"You (voice): {self.voice_clip.duration:.1f} s clip…"

    def interrupt(self) -> None:
        """Stop the character (F3): the SDK drops the voice it has not delivered and sends
        ``interrupt-bot``; the player stops at once rather than at the next ``on_audio_interrupted``."""
        if self.player is not None:
            self.player.interrupt()
        try:
            self.client.interrupt()
        except ConvaiError as exc:
            self.note = f"Could not interrupt: {exc.error.message}"

    def fire_trigger(self) -> None:
        """Fire the story's next narrative trigger (F6); held by the SDK until the character is ready."""
        if not self.triggers:
            return
        name = self.triggers[self.triggers_fired % len(self.triggers)]
        try:
            self.client.send_trigger(name=name)
        except ConvaiError as exc:
            self.note = f"Trigger {name} not sent: {exc.error.message}"
            return
        self.triggers_fired += 1
        self.note = f"Trigger: {name}"

    def reload(self) -> None:
        """Reconnect from scratch on a worker thread (F5, the banner's "reload")."""
        if self.connector.start(reload=True):
            self.banner = None
            self.note = "Reloading…"

    def close(self, timeout: float) -> None:
        """End the client (so a running connect returns) and the workers, within about ``timeout`` s."""
        self.actions.close()
        self.client.close()
        if self.mic is not None:
            self.mic.stop(timeout)
        self.connector.join(timeout)

    # ------------------------------------------------------------------ per frame

    def tick(self) -> None:
        """Advance timers and the HUD fade (main thread, once per frame after ``pump()``)."""
        now = self.clock()
        dt, self._last_tick = now - self._last_tick, now
        step = HUD_FADE_PER_SECOND * dt
        if self.hud_brightness < self.hud_target:
            self.hud_brightness = min(self.hud_target, self.hud_brightness + step)
        else:
            self.hud_brightness = max(self.hud_target, self.hud_brightness - step)
        banner = self.banner
        if banner is not None and banner.transient and now - banner.since > TRANSIENT_BANNER_SECONDS:
            self.banner = None
        if self.mic is not None and self.mic.done:
            if self.mic.failed:
                self.note = f"Voice clip stopped: {self.mic.failed}"
            self.mic = None
        if self.player is not None:
            self.player.update()
        self.stage.take(self.actions.pop_ready())
        self.stage.tick(dt)
        level = self.player.level if self.player is not None else 0.0
        self.stage.animate_mouth(self.client.lipsync, self.player, level)

    @property
    def hud_settled(self) -> bool:
        return self.hud_brightness == self.hud_target

    @property
    def idle_seconds_left(self) -> int | None:
        if self.idle_deadline is None:
            return None
        return max(0, int(self.idle_deadline - self.clock() + 0.999))

    def _show(self, kind: str, text: str, transient: bool = False) -> None:
        self.banner = Banner(kind, text, self.clock(), transient)
