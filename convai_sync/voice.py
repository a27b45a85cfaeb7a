"""The character's voice in a session: each :class:`~convai_sync.audio.AudioFrame`'s turn,
``BotReply.audio``, and barge-in.

Threads: :class:`VoiceTracker` is fed on the transport's reader thread in wire order (each
server event right after :class:`~convai_sync.turns.TurnTracker` saw it, each audio frame as it
comes), publishes on the session thread, and is interrupted from any thread. Its lock guards
only its own fields and is never held while user code runs or while it calls the hub.

**Turns** (``AudioFrame.turn_id``: 1, 2, … per client, one number per reply):

* ``bot-started-speaking`` opens a turn: every frame from then on carries its ``turn_id``, except
  digital silence before its first sound (audio that lags the message plays silence first).
* After ``bot-stopped-speaking`` the turn keeps a **tail** on transports whose audio travels
  apart from the data messages (LiveKit's audio track: the receiver's jitter buffer plays the
  last packets after the message that ends them has arrived). The tail lasts the transport's
  ``audio_lag`` seconds, 0.5 s by default (``transports.base.DEFAULT_AUDIO_LAG``): WebRTC's
  jitter buffer holds tens to a couple of hundred milliseconds of audio and conceals the end of
  a stream for about 100 ms more, and half a second covers that while bounding how long
  ``ask()`` waits past the reply. It ends early at
  the first frame of digital silence (every sample 0: the buffer has run dry) or at the next
  ``bot-started-speaking``. On the WebSocket, audio frames and messages share one ordered
  socket, so there is no tail (``audio_lag`` 0), and ``audio-data`` messages likewise.
* ``bot-turn-completed`` is terminal: a turn still speaking then ends as if stopped.
* Frames outside any turn: digital silence (what a LiveKit audio stream plays between replies)
  is dropped and counted; any other frame is delivered with ``turn_id=None``, so no voice is lost
  when a server speaks without the speaking messages.

**Barge-in**: :meth:`VoiceTracker.interrupt` marks the current turn interrupted (its later
frames are dropped too), ends its ``BotReply.audio`` at what had arrived, and drops at once
every frame not yet delivered: in the hub's MAIN_THREAD and BACKGROUND queues and in the
session's own inbox. The session calls it for ``client.interrupt()`` and for the server's own
signals: ``bot-turn-completed`` with ``was_interrupted``, ``neurosync-blendshapes-cancel`` with
``reason: "interruption"`` (Convai Live API docs) and Pipecat's ``InterruptionFrame`` on the
WebSocket. ``user-started-speaking`` alone is not one: the server decides whether the user's
speech interrupts the character (and then says so with those signals); dropping on it would cut
a voice the server goes on sending. Each interruption publishes an
:class:`~convai_sync.events.AudioInterrupted` (``on_audio_interrupted``) so players drop what
they buffer.

**Inbox and order**: frames wait for the session thread in a lane of their own, in wire order
with the other events (each frame posts one marker to the session inbox at its place), bounded
by :data:`MAX_INBOX_AUDIO`. Only a session thread blocked by a slow IMMEDIATE handler fills it;
new frames are then dropped (counted, logged) rather than any other event, and the order stays
exact. An interrupt empties it (its markers become no-ops).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .audio import BYTES_PER_SAMPLE, AudioFrame
from .events import AudioInterrupted, BlendshapeFrames, BotStartedSpeaking, BotStoppedSpeaking, BotTurnCompleted
from .hub import EventHub
from .turns import Turn, TurnTracker

log = logging.getLogger("convai_sync")

#: Frames waiting for the session thread beyond this are dropped: 20 s of 10 ms frames, so only
#: a session thread blocked far longer than any handler should run ever reaches it.
MAX_INBOX_AUDIO = 2000

_SPEAKING, _TAIL = "speaking", "tail"


@dataclass
class _AudioTurn:
    turn_id: int
    ask: Turn | None  # the ask() waiting for this reply, if any
    state: str = _SPEAKING
    interrupted: bool = False
    heard: bool = False  # a frame with sound has come


class VoiceTracker:
    """Tags, collects and delivers the character's voice for one session (see the module docstring).

    Args:
        hub: Where frames are published (on the session thread).
        turns: The session's reply binding (which ``ask()`` the speaking reply belongs to).
        post: Runs a callable on the session thread.
        set_timer: ``set_timer(name, delay, fn)`` on the session thread's clock.
        enabled: False (``ConvaiConfig.receive_audio=False``): no audio is handled at all.
        tts_enabled: Whether the character speaks (``default_tts_enabled``; ``toggle_tts``).
        inbox_frames: Bound of the frames waiting for the session thread.
    """

    def __init__(self, hub: EventHub, turns: TurnTracker, post: Callable[[Callable[[], None]], None],
                 set_timer: Callable[[str, float, Callable[[], None]], None], *, enabled: bool = True,
                 tts_enabled: bool = True, inbox_frames: int = MAX_INBOX_AUDIO) -> None:
        self._hub = hub
        self._turns = turns
        self._post = post
        self._set_timer = set_timer
        self.enabled = enabled
        self.tts_enabled = tts_enabled
        self._lock = threading.Lock()
        self._lag = 0.0
        self._ids = 0
        self._current: _AudioTurn | None = None
        self._epoch = 0  # bumped when the inbox is emptied: markers posted before then do nothing
        self._inbox: collections.deque[tuple[AudioFrame, Callable[[], bool]]] = collections.deque()
        self._inbox_frames = inbox_frames
        #: Called (any thread, no lock held) on every interruption, e.g. to cut the lip-sync timeline.
        self.interrupt_hooks: list[Callable[[], None]] = []
        self._transport_kind = ""
        self._silence_explained = False
        self.stats: dict[str, Any] = {
            "frames_received": 0, "seconds_received": 0.0, "frames_published": 0, "turns": 0,
            "interruptions": 0, "dropped_interrupted": 0, "dropped_silent": 0, "dropped_inbox": 0,
            "sends": 0, "seconds_sent": 0.0,
        }

    # ---- link (session thread) ----

    def attach(self, audio_lag: float, transport_kind: str = "") -> None:
        """A new transport carries the session; its audio lags its messages by ``audio_lag`` s."""
        with self._lock:
            self._lag = max(0.0, audio_lag)
            self._current = None
            self._transport_kind = transport_kind

    def _explain_silence(self, why: str) -> None:
        """Say once per session why replies come without voice (``BotReply.audio`` None)."""
        with self._lock:
            if self._silence_explained:
                return
            self._silence_explained = True
        log.info("BotReply.audio is None for this session: %s", why)

    def _check_voice_arrived(self) -> None:
        """A spoken reply has ended: when no audio at all has reached this session, say why once."""
        if self.stats["frames_received"] or not self.tts_enabled:
            return
        why = "a reply has ended and no audio has arrived in this session."
        if self._transport_kind == "websocket":
            why += (" On the /chat WebSocket the voice comes as Pipecat Frame.audio messages, which need the"
                    " audio extra (protobuf) and a server that sends them: the local simulator does so only"
                    " when started with Simulator(websocket_audio=True) (convai-sim --websocket-audio).")
        self._explain_silence(why)

    def detach(self) -> None:
        """The transport is gone: a turn in progress ends (its ``ask()`` fails with the session)."""
        with self._lock:
            current, self._current = self._current, None
            self._inbox.clear()
            self._epoch += 1
        if current is not None and current.ask is not None:
            current.ask.end_audio()

    @property
    def inbox_pending(self) -> int:
        """Frames waiting for the session thread (not counted against the session's inbox bound)."""
        return len(self._inbox)

    # ---- wire order (the transport's reader thread) ----

    def on_event(self, event: object) -> None:
        """A decoded server event, after the turn tracker saw it."""
        if not self.enabled:
            if isinstance(event, BotStartedSpeaking):
                self._explain_silence("this client does not receive audio (ConvaiConfig.receive_audio=False).")
            return
        if isinstance(event, BotStartedSpeaking):
            self._start()
        elif isinstance(event, BotStoppedSpeaking):
            self._stop()
        elif isinstance(event, BotTurnCompleted):
            if event.was_interrupted:
                self.interrupt("bot-turn-completed")
            elif not self.stats["turns"]:  # a reply the server never said it was speaking
                self._check_voice_arrived()
            self._stop()
        elif isinstance(event, BlendshapeFrames) and event.type == "neurosync-blendshapes-cancel" \
                and event.data.get("reason") == "interruption":
            self.interrupt("neurosync-blendshapes-cancel")

    def _start(self) -> None:
        ask = self._turns.replying_turn()
        with self._lock:
            previous = self._current
            self._ids += 1
            self._current = _AudioTurn(self._ids, ask)
            self.stats["turns"] += 1
        if previous is not None and previous.ask is not None:
            previous.ask.end_audio()
        if ask is not None and self.tts_enabled:
            ask.expect_audio()
        elif ask is not None:
            self._explain_silence("text-to-speech is off (tts_enabled=False, or toggled off): replies are text only.")

    def turn_for_frames(self) -> int | None:
        """The turn id animation arriving now belongs to: the turn speaking (or in its tail), else
        the next one (frames may come before ``bot-started-speaking``); None when the voice is not
        received (``receive_audio=False``: no turns are numbered)."""
        if not self.enabled:
            return None
        with self._lock:
            return self._current.turn_id if self._current is not None else self._ids + 1

    def _stop(self) -> None:
        with self._lock:
            current = self._current
            if current is None or current.state is not _SPEAKING:
                return
            if self._lag <= 0:
                self._current = None
            else:
                current.state = _TAIL  # an interrupted turn too: its lagging frames are dropped
        if current.state is _TAIL:
            turn_id, lag = current.turn_id, self._lag
            self._post(lambda: self._set_timer("audio_tail", lag, lambda: self._end_tail(turn_id)))
            return
        self._check_voice_arrived()
        if current.ask is not None:
            current.ask.end_audio()

    def _end_tail(self, turn_id: int) -> None:
        with self._lock:
            current = self._current
            if current is None or current.turn_id != turn_id or current.state is not _TAIL:
                return
            self._current = None
        self._check_voice_arrived()
        if current.ask is not None:
            current.ask.end_audio()

    def receive(self, pcm: bytes, sample_rate: int, num_channels: int, live: Callable[[], bool]) -> None:
        """One piece of the character's voice (PCM16) from the transport; ``live()`` says whether its
        transport still carries the session when the frame is published."""
        if not self.enabled or not pcm:
            return
        samples = len(pcm) // (BYTES_PER_SAMPLE * num_channels)
        silent = pcm.count(0) == len(pcm)
        ended: Turn | None = None
        frame: AudioFrame | None = None
        full = False
        with self._lock:
            self.stats["frames_received"] += 1
            self.stats["seconds_received"] += samples / sample_rate
            current = self._current
            if current is not None and current.state is _TAIL and silent:
                ended = current.ask  # the lagging audio has played out: the turn is over
                self._current = current = None
            if silent and (current is None or not current.heard):
                self.stats["dropped_silent"] += 1
                current = None
            elif current is not None and current.interrupted:
                self.stats["dropped_interrupted"] += 1
            else:
                if current is not None:
                    current.heard = True
                frame = AudioFrame(data=pcm, sample_rate=sample_rate, num_channels=num_channels,
                                   samples_per_channel=samples, timestamp=time.monotonic(),
                                   turn_id=current.turn_id if current is not None else None)
                full = len(self._inbox) >= self._inbox_frames
                if full:
                    self.stats["dropped_inbox"] += 1
                else:
                    self._inbox.append((frame, live))
            ask = current.ask if current is not None else None
            dropped_inbox = self.stats["dropped_inbox"]
            epoch = self._epoch
        if ended is not None:
            ended.end_audio()
        if frame is None:
            return
        if ask is not None:
            ask.add_audio(frame)
        if not full:
            self._post(lambda: self._publish_next(epoch))
        elif dropped_inbox == 1 or dropped_inbox % 500 == 0:
            log.warning("the session thread is behind (a slow IMMEDIATE handler?): audio frame dropped "
                        "(total dropped: %d)", dropped_inbox)

    def _publish_next(self, epoch: int) -> None:
        """Session thread: publish the oldest waiting frame (each frame posted one such call)."""
        with self._lock:
            if epoch != self._epoch or not self._inbox:
                return  # emptied by an interrupt, or the link went away
            frame, live = self._inbox.popleft()
        if not live():
            return
        self.stats["frames_published"] += 1
        self._hub.publish(frame)

    # ---- barge-in (any thread) ----

    def interrupt(self, source: str) -> None:
        """Stop the character's voice now: see the module docstring. ``source`` names the signal
        (``"client"``, ``"server"``, ``"bot-turn-completed"``, ``"neurosync-blendshapes-cancel"``)."""
        for hook in self.interrupt_hooks:  # also without voice: the lip-sync timeline stops all the same
            hook()
        if not self.enabled:
            return
        at = time.monotonic()  # every frame queued now was made (timestamped) before this

        def before(frame: AudioFrame) -> bool:
            return frame.timestamp <= at

        with self._lock:
            current = self._current
            newly = current is not None and not current.interrupted
            if current is not None:
                current.interrupted = True
            turn_id = current.turn_id if current is not None else (self._ids or None)
            queued = len(self._inbox)
            self._inbox.clear()
            self._epoch += 1
        dropped = queued + self._hub.drop_audio(before)
        if current is not None and current.ask is not None:
            current.ask.end_audio()

        def finish() -> None:
            # On the session thread, after a frame it was publishing when this call came, if any.
            total = dropped + self._hub.drop_audio(before)
            if not newly and not total:
                return
            with self._lock:
                self.stats["interruptions"] += 1
                self.stats["dropped_interrupted"] += total
            log.info("voice interrupted (%s): turn %s, %d undelivered frame(s) dropped", source, turn_id, total)
            self._hub.publish(AudioInterrupted(turn_id=turn_id, source=source, dropped=total))
        self._post(finish)

    # ---- the user's voice ----

    def sent(self, pcm_bytes: int, sample_rate: int, num_channels: int) -> None:
        """Count one ``send_audio`` of ``pcm_bytes`` of PCM16."""
        with self._lock:
            self.stats["sends"] += 1
            self.stats["seconds_sent"] += pcm_bytes / (BYTES_PER_SAMPLE * num_channels * sample_rate)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            stats = dict(self.stats)
            current = self._current
        stats["seconds_received"] = round(stats["seconds_received"], 3)
        stats["seconds_sent"] = round(stats["seconds_sent"], 3)
        stats["current_turn_id"] = current.turn_id if current is not None else None
        stats["inbox_pending"] = len(self._inbox)
        return stats
