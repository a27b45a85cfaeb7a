"""RTVI messages out on LiveKit: reliable data packets with no topic, in ``send()`` order.

Convai's Web SDK 1.2.0 (``publishData(bytes, {reliable: true})``) and Unity ``RTVIHandler``
(``SendDataAsync(bytes)``) publish with no topic; so does :class:`DataPublisher`, through
``LocalParticipant.publish_data(payload, reliable=True)``.

Thread ownership: :meth:`DataPublisher.send` runs on any thread and never waits: it reserves room
in a byte budget under a lock and hands the payload to the loop thread (``call_soon``). One task on
the loop (``convai-livekit-<n>``) publishes the payloads one after the other, so acknowledgements,
which carry no id, come back in send order. A full budget fails the send at once with
:class:`~convai_sync.transports.outbox.OutboxFull`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from .aioloop import LoopThread
from .outbox import OutboxFull

log = logging.getLogger("convai_sync")


class DataPublisher:
    """A bounded FIFO of outgoing data packets and the loop task that publishes them.

    Args:
        loop: The transport's loop thread.
        limit_bytes: Bound of the bytes accepted and not yet published.
        on_failure: Called on the loop thread with ``(size, exception)`` when a packet could not
            be published (e.g. larger than the data channel's maximum message size).
    """

    def __init__(self, loop: LoopThread, limit_bytes: int, on_failure: Callable[[int, Exception], None]) -> None:
        self._loop = loop
        self._limit = limit_bytes
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self._queued_bytes = 0
        self._unsent = 0
        # -- loop thread only --
        self._queue: asyncio.Queue[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def unsent(self) -> int:
        """Packets accepted by :meth:`send` that were never published."""
        return self._unsent

    def send(self, payload: bytes) -> None:
        """Queue ``payload`` for publishing (any thread; never blocks).

        Raises:
            OutboxFull: ``limit_bytes`` of packets are already waiting.
            ConnectionError: the loop is not running.
        """
        with self._lock:
            if self._queued_bytes + len(payload) > self._limit:
                raise OutboxFull(f"send queue full ({self._queued_bytes} bytes waiting): the room is not "
                                 "accepting data")
            # under the lock, so two senders' packets reach the loop in the order they were accepted
            if not self._loop.call_soon(self._enqueue, payload):
                raise ConnectionError("LiveKit room is not open")
            self._queued_bytes += len(payload)

    def start(self, participant: Any) -> None:
        """Start publishing as ``participant`` (the room's ``LocalParticipant``); loop thread."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(participant))

    async def stop(self) -> None:
        """Stop publishing; what is still queued counts as unsent (loop thread)."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        queue = self._queue
        while queue is not None and not queue.empty():
            self._done(queue.get_nowait(), sent=False)
        if self._unsent:
            log.warning("%d queued data packet(s) were never sent: the room closed first", self._unsent)

    def _enqueue(self, payload: bytes) -> None:
        if self._queue is None or self._stopped:
            self._done(payload, sent=False)
            return
        self._queue.put_nowait(payload)

    def _done(self, payload: bytes, *, sent: bool) -> None:
        with self._lock:
            self._queued_bytes -= len(payload)
            if not sent:
                self._unsent += 1

    async def _run(self, participant: Any) -> None:
        assert self._queue is not None
        while True:
            payload = await self._queue.get()
            sent = False
            try:
                await participant.publish_data(payload, reliable=True)
                sent = True
            except Exception as exc:  # noqa: BLE001 - one failed packet must not stop the publisher
                log.warning("LiveKit: a data packet of %d bytes was not published: %s", len(payload), exc)
                self._on_failure(len(payload), exc)
            finally:
                self._done(payload, sent=sent)
