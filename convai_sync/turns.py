"""Thread-safe trackers shared by user threads, the transport's reader and the session thread.

* :class:`AckTracker`: ``server-response`` has no correlation id, so pending ``wait=True``
  sends are matched per ``event_type`` in FIFO order of the wire (Convai's acknowledgement
  documentation: "correlate by event_type plus FIFO order").
* :class:`TurnTracker`: gives each ``ask()``/``stream()`` the reply to its own text.

How a reply is bound to the message that caused it (the rule :meth:`ConvaiClient.ask` documents):

1. Convai echoes a typed message's ``message_id`` in ``final-user-transcription``; a reply that
   follows that echo belongs to exactly that message. An echo whose id matches no message this
   client sent (a voice utterance, another participant) starts a reply that belongs to nobody.
2. An echo without an id is matched by its text to the oldest sent message with the same text;
   otherwise the reply belongs to nobody.
3. A reply that starts with no echo (``bot-llm-started`` or ``llm-no-response`` first) belongs to
   the oldest reply-causing message still waiting, in the order they were sent, counting
   ``send_text``, abandoned asks and triggers too, so their replies are never handed to a later
   ``ask()``. Once the server has echoed an id in this session, such a reply is matched only to
   a waiting trigger (typed messages are known to be echoed).

Every message the client sent stays in the order until its reply arrives, its acknowledgement
is an error (then a waiting ``ask()`` fails at once with the server's message), or the order
holds :data:`TurnTracker.MAX_EXPECTED` entries (the oldest is dropped). A reply that belongs to
nobody still reaches the event channels; only its assembly into a ``BotReply`` is skipped.

Locks here guard only these structures and are never held while user code runs.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from . import events as ev
from .audio import AudioClip, AudioFrame
from .errors import ConvaiError, ErrorCode, SessionError, error_for
from .lipsync import LipSync, LipSyncClip
from .timings import TimingStats

log = logging.getLogger("convai_sync")


def hand_over() -> None:
    """Let the thread a just-completed future woke run now (called by the completing thread).

    The transport's reader completes a caller's future and then goes on decoding; CPython hands
    the interpreter lock to the woken caller only when the reader blocks or after
    ``sys.getswitchinterval()`` (5 ms), so the caller waited for the reader's next ``recv``
    (measured: about 140 us of a 330 us send->ack round trip on loopback). ``time.sleep(0)``
    releases the lock at once: one system call per completed wait, none per frame.
    """
    time.sleep(0)


class AckTracker:
    """Pending acknowledgements, per event type, FIFO."""

    #: Fire-and-forget sends leave a placeholder so a later ``wait=True`` send of the same type
    #: is matched to its own ack, not an earlier one; a server that skips acks cannot grow this
    #: past the cap (the oldest placeholders are dropped).
    MAX_PENDING = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, collections.deque[Future[ev.ServerResponse] | None]] = {}

    def expect(self, event_type: str, wait: bool = True) -> Future[ev.ServerResponse]:
        """Register a send of ``event_type``; its ack completes the returned future (FIFO)."""
        fut: Future[ev.ServerResponse] = Future()
        with self._lock:
            queue = self._pending.setdefault(event_type, collections.deque())
            queue.append(fut if wait else None)
            if len(queue) > self.MAX_PENDING and queue[0] is None:
                queue.popleft()
        return fut

    def forget(self, event_type: str, fut: Future[ev.ServerResponse]) -> None:
        """The send failed, so no ack will come: drop its entry (or the newest placeholder)."""
        with self._lock:
            queue = self._pending.get(event_type)
            if not queue:
                return
            if fut in queue:
                queue.remove(fut)
            elif None in queue:
                for i in range(len(queue) - 1, -1, -1):
                    if queue[i] is None:
                        del queue[i]
                        break

    def abandon(self, event_type: str, fut: Future[ev.ServerResponse]) -> None:
        """The waiter gave up (timeout): keep its place so a late ack is still consumed by it."""
        with self._lock:
            queue = self._pending.get(event_type)
            if queue is not None and fut in queue:
                queue[queue.index(fut)] = None

    def resolve(self, response: ev.ServerResponse) -> bool:
        """Complete the oldest waiter for ``response.event_type`` (final statuses only)."""
        if not response.is_final:
            return False
        with self._lock:
            queue = self._pending.get(response.event_type)
            fut = queue.popleft() if queue else None
        if fut is None:
            return False  # the ack of a fire-and-forget send
        if not fut.done():
            fut.set_result(response)
            hand_over()
        return True

    def fail_all(self, error: ConvaiError) -> None:
        with self._lock:
            futures = [f for q in self._pending.values() for f in q if f is not None]
            self._pending.clear()
        for fut in futures:
            if not fut.done():
                fut.set_exception(error)

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for q in self._pending.values() for f in q if f is not None)


class Turn:
    """The reply to one ``ask()``/``stream()``: a future for the whole reply and its chunks.

    Thread notes: filled by the transport's reader thread (under the tracker's lock), read by
    the asking thread. Its voice (``expect_audio``/``add_audio``/``end_audio``) is filled by the
    :class:`~convai_sync.voice.VoiceTracker`: audio is expected from the turn's
    ``bot-started-speaking`` on, which the reader sees before ``bot-turn-completed`` completes
    :attr:`future`, so a caller that has the text knows whether to wait for the voice.
    """

    def __init__(self, message_id: str, now: Callable[[], float] = time.monotonic) -> None:
        self.message_id = message_id
        self._now = now
        self.sent_at = now()
        self.llm_started_at: float | None = None
        self.first_text_at: float | None = None
        self.first_audio_at: float | None = None
        self.completed_at: float | None = None
        self.lipsync: LipSync | None = None  # set by the lip-sync feed when this reply is animated
        self.future: Future[ev.BotReply] = Future()
        self.chunks: list[ev.BotText] = []
        self.emotion: str | None = None
        self.scale: int | None = None
        self.actions: tuple[ev.Action, ...] = ()
        self._cond = threading.Condition()
        self._audio: list[AudioFrame] = []
        self._audio_expected = False
        self._audio_ended = False

    # ---- voice (VoiceTracker, any thread) ----

    def expect_audio(self) -> None:
        with self._cond:
            self._audio_expected = True

    def add_audio(self, frame: AudioFrame) -> None:
        with self._cond:
            if not self._audio_ended:
                if not self._audio:
                    self.first_audio_at = self._now()
                self._audio.append(frame)

    def end_audio(self) -> None:
        """The turn's voice is over (its tail ended, or it was interrupted)."""
        with self._cond:
            self._audio_ended = True
            self._cond.notify_all()

    def audio_clip(self) -> AudioClip | None:
        """The voice received so far as one clip (frames in another format than the first are left
        out, with a warning); None when no audio came."""
        with self._cond:
            frames = list(self._audio)
        if not frames:
            return None
        first = frames[0]
        same = [f for f in frames if (f.sample_rate, f.num_channels) == (first.sample_rate, first.num_channels)]
        if len(same) != len(frames):
            log.warning("a reply's voice changed format mid-turn; %d frame(s) left out of BotReply.audio",
                        len(frames) - len(same))
        return AudioClip.from_frames(same)

    def reply(self, deadline: float | None) -> ev.BotReply:
        """The whole reply, with its voice when audio is expected, by ``deadline`` (monotonic;
        None waits until the turn ends or fails).

        Raises:
            TimeoutError: the text, or the voice that follows it, did not end by ``deadline``.
            ConvaiError: the turn failed (the session ended, an error ack…).
            concurrent.futures.CancelledError: the turn was abandoned.
        """
        try:
            text = self.future.result(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except FutureTimeout:  # not the builtin TimeoutError before Python 3.11
            raise TimeoutError("No complete reply arrived before the deadline") from None
        with self._cond:
            if not self._audio_expected:
                return dataclasses.replace(text, lipsync=self._lipsync_clip(), timings=self.timings())
            while not self._audio_ended:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("The reply's text arrived, but its voice had not ended before the deadline")
                self._cond.wait(remaining)
        return dataclasses.replace(text, audio=self.audio_clip(), lipsync=self._lipsync_clip(),
                                   timings=self.timings())

    def _lipsync_clip(self) -> LipSyncClip | None:
        lipsync = self.lipsync
        clip = lipsync.clip() if lipsync is not None else None
        return clip if clip is not None and clip.frames else None

    def timings(self) -> ev.TurnTimings:
        """When each stage of this turn happened so far (monotonic seconds)."""
        return ev.TurnTimings(sent=self.sent_at, llm_started=self.llm_started_at, first_text=self.first_text_at,
                              first_audio=self.first_audio_at, completed=self.completed_at)

    def add_chunk(self, chunk: ev.BotText) -> None:
        with self._cond:
            if not self.chunks:
                self.first_text_at = self._now()
            self.chunks.append(chunk)
            self._cond.notify_all()

    def finish(self, *, no_response: bool = False, interrupted: bool = False,
               record: Callable[[ev.TurnTimings], None] | None = None) -> None:
        """Complete the reply; ``record`` gets its timings first (so a caller woken by it sees them)."""
        texts = tuple(c.text for c in self.chunks)
        completed = not self.future.done()
        if completed:
            self.completed_at = self._now()
            if record is not None:
                record(self.timings())
            self.future.set_result(ev.BotReply(
                text="".join(texts), emotion=self.emotion, emotion_scale=self.scale,
                actions=self.actions, chunks=texts, no_response=no_response,
                was_interrupted=interrupted, message_id=self.message_id))
        with self._cond:
            self._cond.notify_all()
        if completed:
            hand_over()

    def cancel(self) -> None:
        """The asker gave up: cancel :attr:`future` and wake its waiters."""
        self.future.cancel()
        with self._cond:
            self._audio_ended = True
            self._cond.notify_all()

    def fail(self, error: ConvaiError) -> None:
        if not self.future.done():
            self.future.set_exception(error)
        with self._cond:
            self._audio_ended = True
            self._cond.notify_all()

    def wait_chunk(self, index: int, deadline: float | None) -> ev.BotText | None:
        """Chunk ``index`` once it has arrived; None when the turn ended before it.

        Args:
            deadline: ``time.monotonic()`` to give up at; None waits until the turn ends.

        Raises:
            TimeoutError: ``deadline`` passed first.
            ConvaiError: the turn failed (the session ended, an error ack…).
            concurrent.futures.CancelledError: the turn was abandoned (:meth:`cancel`).
        """
        with self._cond:
            while index >= len(self.chunks) and not self.future.done():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("No further chunk of the reply arrived before the deadline")
                self._cond.wait(remaining)
            if index < len(self.chunks):
                return self.chunks[index]
        self.future.result(0)  # raises the turn's error, if it failed
        return None


@dataclass
class _Sent:
    """One reply-causing message, in send order."""

    kind: str  # "text" or "trigger"
    message_id: str | None = None
    text: str | None = None
    turn: Turn | None = None  # None: nobody waits (send_text, a trigger, an abandoned ask)
    acked: bool = False


@dataclass
class _Current:
    """The reply being streamed now, and whether its ``bot-llm-started`` came."""

    sent: _Sent | None
    started: bool = False


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


class TurnTracker:
    """Binds replies to the messages that caused them (see the module docstring)."""

    MAX_EXPECTED = 256

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self.timing_stats = TimingStats()
        self._lock = threading.Lock()
        self._sent: collections.deque[_Sent] = collections.deque()
        self._current: _Current | None = None
        self._echoes_ids = False

    # ---- what the client sent (under its send lock, in wire order) ----

    def sent_text(self, message_id: str, text: str, *, wait: bool) -> Turn | None:
        """Register a ``user_text_message``; returns the :class:`Turn` to wait on when ``wait``."""
        turn = Turn(message_id, self._now) if wait else None
        self._append(_Sent("text", message_id, _norm(text), turn))
        return turn

    def sent_trigger(self) -> None:
        """Register a ``trigger-message`` (its reply must never go to an ``ask``)."""
        self._append(_Sent("trigger"))

    def _append(self, entry: _Sent) -> None:
        with self._lock:
            self._sent.append(entry)
            if len(self._sent) > self.MAX_EXPECTED:
                self._sent.popleft()

    def unsent(self, turn: Turn | None, kind: str) -> None:
        """The send failed after registering: drop its entry (the newest of its kind)."""
        with self._lock:
            for i in range(len(self._sent) - 1, -1, -1):
                entry = self._sent[i]
                if entry.kind == kind and entry.turn is turn:
                    del self._sent[i]
                    return

    def abandon(self, turn: Turn) -> None:
        """The asker gave up: its reply, when it comes, reaches the event channels only."""
        with self._lock:
            for entry in self._sent:
                if entry.turn is turn:
                    entry.turn = None
            if self._current is not None and self._current.sent is not None \
                    and self._current.sent.turn is turn:
                self._current.sent.turn = None
        turn.cancel()

    def acked(self, response: ev.ServerResponse) -> None:
        """An ack of a ``user_text_message``/``trigger-message``: an error ack means no reply comes."""
        kind = {"user_text_message": "text", "trigger-message": "trigger"}.get(response.event_type)
        if kind is None or not response.is_final:
            return
        failed: _Sent | None = None
        with self._lock:
            for entry in self._sent:
                if entry.kind == kind and not entry.acked:
                    entry.acked = True
                    if response.is_error:
                        self._sent.remove(entry)
                        failed = entry
                    break
        if failed is not None and failed.turn is not None:
            text = response.message or "request rejected"
            code = ErrorCode.SERVER_USAGE_LIMIT_REACHED if "usage limit" in text.lower() else ErrorCode.SERVER_ERROR
            failed.turn.fail(error_for(SessionError.of(code, f"{response.event_type} rejected: {text}")))

    # ---- what the server sent (reader thread) ----

    def feed(self, event: object) -> None:
        """Route one decoded server event to the turn it belongs to."""
        finished: tuple[Turn, bool, bool] | None = None
        with self._lock:
            if isinstance(event, ev.FinalUserTranscription):
                self._begin_echoed(event)
                return
            if isinstance(event, (ev.BotLLMStarted, ev.LLMNoResponse)):
                current = self._current
                if current is None:
                    current = self._current = _Current(self._unechoed_owner())
                current.started = True
                if isinstance(event, ev.BotLLMStarted) and current.sent is not None \
                        and current.sent.turn is not None and current.sent.turn.llm_started_at is None:
                    current.sent.turn.llm_started_at = self._now()
                if isinstance(event, ev.LLMNoResponse):
                    self._current = None
                    turn = current.sent.turn if current.sent is not None else None
                    if turn is not None:
                        finished = (turn, True, False)
            else:
                current = self._current
                if current is None or current.sent is None or current.sent.turn is None:
                    if isinstance(event, ev.BotTurnCompleted):
                        self._current = None
                    return
                turn = current.sent.turn
                if isinstance(event, ev.BotText):
                    turn.add_chunk(event)
                elif isinstance(event, ev.BotEmotion):
                    turn.emotion, turn.scale = event.emotion, event.scale
                elif isinstance(event, ev.ActionResponse):
                    turn.actions += event.actions  # every action-response of the turn, in order
                elif isinstance(event, ev.BotTurnCompleted):
                    self._current = None
                    finished = (turn, False, event.was_interrupted)
        if finished is not None:
            turn, no_response, interrupted = finished
            turn.finish(no_response=no_response, interrupted=interrupted, record=self.timing_stats.add)

    def _begin_echoed(self, event: ev.FinalUserTranscription) -> None:
        # Called with the lock held. A new echo ends a reply that never completed.
        previous = self._current
        if previous is not None and previous.sent is not None and previous.sent.turn is not None:
            previous.sent.turn.finish(interrupted=True)
        owner: _Sent | None = None
        if event.message_id is not None:
            self._echoes_ids = True
            owner = next((e for e in self._sent if e.message_id == event.message_id), None)
        else:
            wanted = _norm(event.text)
            owner = next((e for e in self._sent if e.kind == "text" and e.text == wanted), None)
        if owner is not None:
            self._sent.remove(owner)
        self._current = _Current(owner)

    def _unechoed_owner(self) -> _Sent | None:
        # Called with the lock held: a reply that began without an echo.
        if not self._sent:
            return None
        head = self._sent[0]
        if head.kind == "trigger" or not self._echoes_ids:
            return self._sent.popleft()
        trigger = next((e for e in self._sent if e.kind == "trigger"), None)
        if trigger is not None:
            self._sent.remove(trigger)
        return trigger

    def fail_all(self, error: ConvaiError) -> None:
        """The session ended: fail every waiting turn and forget the order."""
        with self._lock:
            turns = [e.turn for e in self._sent if e.turn is not None]
            current = self._current
            if current is not None and current.sent is not None and current.sent.turn is not None:
                turns.append(current.sent.turn)
            self._sent.clear()
            self._current = None
        for turn in turns:
            turn.fail(error)

    def replying_turn(self) -> Turn | None:
        """The :class:`Turn` the reply being streamed now belongs to (None: nobody waits for it)."""
        with self._lock:
            current = self._current
            return current.sent.turn if current is not None and current.sent is not None else None

    @property
    def waiting(self) -> int:
        """Asks still waiting for their reply."""
        with self._lock:
            n = sum(1 for e in self._sent if e.turn is not None)
            current = self._current
            if current is not None and current.sent is not None and current.sent.turn is not None:
                n += 1
            return n
