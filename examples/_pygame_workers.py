"""The scene's worker threads: connecting, and streaming a voice clip. They call the SDK, never pygame.

A frame must not wait on the network, and two SDK calls can: ``connect()`` (until the character
is ready, or while ``SlotWaitPolicy`` waits for a slot) and ``send_audio()`` (LiveKit's microphone
track takes audio at real-time pace; the WebSocket's send queue may be full). Each runs on its own
named worker thread; the main thread only reads their outcome, and follows their progress through
SDK events.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from convai_sync import AudioClip, ConvaiClient, ConvaiError, SessionState

log = logging.getLogger("examples.pygame_workers")


class Connector:
    """Runs ``connect()`` (after a ``disconnect()`` for a reload) on the ``scene-connect`` thread.

    ``outcome`` is None while it runs (or before), then ``"connected"`` or the error's text.
    """

    def __init__(self, client: ConvaiClient) -> None:
        self._client = client
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._outcome: str | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def outcome(self) -> str | None:
        with self._lock:
            return self._outcome

    def start(self, reload: bool = False) -> bool:
        """Start connecting unless a connect is already running; returns whether it started."""
        if self.running:
            return False
        with self._lock:
            self._outcome = None
        self._thread = threading.Thread(target=self._run, args=(reload,), name="scene-connect", daemon=True)
        self._thread.start()
        return True

    def _run(self, reload: bool) -> None:
        try:
            if reload and self._client.state is not SessionState.DISCONNECTED:
                self._client.disconnect()
            self._client.connect()
            outcome = "connected"
        except ConvaiError as exc:  # the scene shows it from on_session_error; keep the text too
            outcome = f"{exc.error_code.value}: {exc.error.message}"
            log.info("connect failed: %s", outcome)
        with self._lock:
            self._outcome = outcome

    def join(self, timeout: float) -> None:
        """Wait (bounded) for the worker; ``client.close()`` first makes a running connect end."""
        if self._thread is not None:
            self._thread.join(timeout)


class MicStream:
    """Sends a recorded clip to the character at real-time pace from the ``scene-mic`` thread.

    A microphone delivers audio as it is spoken: 20 ms pieces, one every 20 ms, then a short
    silence so the character hears the utterance end. A piece the SDK refuses (not CONNECTED, a
    full send queue) stops the stream; what was sent stays sent (``sent_seconds``).

    Args:
        client: The connected client.
        clip: PCM16 audio to send.
        clock, wait: Monotonic seconds, and a stoppable wait of so many seconds that returns True
            once :meth:`stop` was called (tests pass fakes; the default waits on the stop event).
        send_timeout: Seconds each ``send_audio`` may wait for room (LiveKit paces at real time).
    """

    #: Silence after the clip so the character hears the utterance end (seconds).
    TRAILING_SILENCE = 0.7
    PIECE_SECONDS = 0.02

    def __init__(self, client: ConvaiClient, clip: AudioClip, *, clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[float], bool] | None = None, send_timeout: float = 2.0) -> None:
        self._client = client
        frame_bytes = 2 * clip.num_channels
        silence = b"\x00" * (round(self.TRAILING_SILENCE * clip.sample_rate) * frame_bytes)
        self._pcm = clip.pcm + silence
        self._rate, self._channels = clip.sample_rate, clip.num_channels
        self._piece = round(self.PIECE_SECONDS * clip.sample_rate) * frame_bytes
        self._bytes_per_second = clip.sample_rate * frame_bytes
        self._clock = clock
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._send_timeout = send_timeout
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()
        self.sent_bytes = 0
        self.failed: str | None = None

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def sent_seconds(self) -> float:
        return self.sent_bytes / self._bytes_per_second

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="scene-mic", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop sending and wait (at most ``timeout`` seconds) for the worker to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """The worker's loop (``start()`` runs it on ``scene-mic``; tests call it directly)."""
        try:
            started = self._clock()
            for offset in range(0, len(self._pcm), self._piece):
                if self._stop.is_set():
                    return
                piece = self._pcm[offset:offset + self._piece]
                try:
                    self._client.send_audio(piece, self._rate, self._channels, timeout=self._send_timeout)
                except (ConvaiError, ValueError, ImportError) as exc:
                    self.failed = str(exc)
                    log.warning("voice clip stopped after %.2f s: %s", self.sent_seconds, exc)
                    return
                self.sent_bytes += len(piece)
                due = started + self.sent_bytes / self._bytes_per_second
                if self._wait(max(0.0, due - self._clock())):
                    return
        finally:
            self._finished.set()
