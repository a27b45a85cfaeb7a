"""Thread-safe trackers shared by user threads and the session thread.

* :class:`AckTracker`: ``server-response`` has no correlation id, so pending ``wait=True``
  sends are matched per ``event_type`` in FIFO order (PROTOCOL.md §1.10, §5).
* :class:`TurnTracker`: assembles one :class:`BotReply` per ``ask()`` from the streamed turn
  (``bot-llm-text`` chunks, ``bot-emotion``, ``action-response``), binding a turn to its question
  by the ``message_id`` echoed in ``final-user-transcription``, else FIFO.

Locks here guard only these structures and are never held while user code runs.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future

from . import events as ev
from .errors import ConvaiError


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


class _Turn:
    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.future: Future[ev.BotReply] = Future()
        self.chunks: list[str] = []
        self.emotion: str | None = None
        self.scale: int | None = None
        self.actions: tuple[ev.Action, ...] = ()

    def finish(self, *, no_response: bool = False, interrupted: bool = False) -> None:
        if self.future.done():
            return  # delivered already, or cancelled by an ask() that timed out
        self.future.set_result(ev.BotReply(
            text="".join(self.chunks), emotion=self.emotion, emotion_scale=self.scale,
            actions=self.actions, chunks=tuple(self.chunks), no_response=no_response,
            was_interrupted=interrupted, message_id=self.message_id))


class TurnTracker:
    """Collects replies for pending ``ask()`` calls; fed by the session thread.

    A turn is bound to a waiting ``ask`` only where a reply begins: the ``final-user-transcription``
    echoing the ask's ``message_id``, else the next ``bot-llm-started`` (FIFO), or an
    ``llm-no-response``. Chunks arriving while no turn is bound (a trigger's reply, say) are
    never given to an ask; an abandoned ask keeps its turn until that turn completes, so its
    late chunks cannot leak into the next ask's reply.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: collections.deque[_Turn] = collections.deque()
        self._current: _Turn | None = None

    def expect(self, message_id: str) -> Future[ev.BotReply]:
        turn = _Turn(message_id)
        with self._lock:
            self._waiting.append(turn)
        return turn.future

    def forget(self, fut: Future[ev.BotReply]) -> None:
        """The asker gave up; a turn already streaming stays bound (and is discarded) until it ends."""
        with self._lock:
            self._waiting = collections.deque(t for t in self._waiting if t.future is not fut)
        fut.cancel()

    def _bind_next(self, message_id: str | None = None) -> _Turn | None:
        # Called with the lock held.
        if self._current is None and self._waiting:
            match = None
            if message_id is not None:
                match = next((t for t in self._waiting if t.message_id == message_id), None)
            if match is None and message_id is None:
                match = self._waiting[0]
            if match is not None:
                self._waiting.remove(match)
                self._current = match
        return self._current

    def feed(self, event: object) -> None:
        """Route one decoded server event to the turn it belongs to."""
        with self._lock:
            if isinstance(event, ev.FinalUserTranscription):
                if event.message_id is not None:
                    self._bind_next(event.message_id)
                return
            if isinstance(event, (ev.BotLLMStarted, ev.LLMNoResponse)):
                turn = self._bind_next()
            elif isinstance(event, (ev.BotText, ev.BotEmotion, ev.ActionResponse)):
                turn = self._current
            elif isinstance(event, ev.BotTurnCompleted):
                turn, self._current = self._current, None
            else:
                return
            if isinstance(event, ev.LLMNoResponse):
                self._current = None
        if turn is None:
            return
        if isinstance(event, ev.BotText):
            turn.chunks.append(event.text)
        elif isinstance(event, ev.BotEmotion):
            turn.emotion, turn.scale = event.emotion, event.scale
        elif isinstance(event, ev.ActionResponse):
            turn.actions = event.actions
        elif isinstance(event, ev.BotTurnCompleted):
            turn.finish(interrupted=event.was_interrupted)
        elif isinstance(event, ev.LLMNoResponse):
            turn.finish(no_response=True)

    def fail_all(self, error: ConvaiError) -> None:
        with self._lock:
            turns = list(self._waiting)
            if self._current is not None:
                turns.append(self._current)
            self._waiting.clear()
            self._current = None
        for turn in turns:
            if not turn.future.done():
                turn.future.set_exception(error)
