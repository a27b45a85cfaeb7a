"""Builds each turn's :class:`~convai_sync.lipsync.LipSync` timeline from the server's blendshape
messages, in wire order.

Thread notes: :meth:`LipSyncFeed.on_event` runs on the transport's reader thread (right after the
voice tracker saw the event); :meth:`interrupt` on any thread (the voice tracker's interrupt hook);
new timelines are published on the session thread (``post``). The lock guards only ``_current``
and ``latest``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from . import events as ev
from .character import BlendshapeConfig
from .lipsync import FRAME_SIZES, VISEME_NAMES, LipSync, format_for_size
from .turns import TurnTracker

log = logging.getLogger("convai_sync")

_FRAMES = ("neurosync-blendshapes", "chunked-neurosync-blendshapes")


class LipSyncFeed:
    """One session's lip-sync timelines (see the module docstring).

    Args:
        config: ``ConvaiConfig.blendshape_config`` (None: the format is inferred from the frame size
            and 60 fps assumed, should frames come anyway).
        turns: Binds a timeline to the ``ask()`` whose reply it animates (``BotReply.lipsync``).
        turn_for_frames: The voice turn id frames arriving now animate (None without voice: the feed
            then numbers turns itself, one per ``bot-turn-completed``).
        publish: Publishes a new timeline (on the session thread).
    """

    def __init__(self, config: BlendshapeConfig | None, turns: TurnTracker,
                 turn_for_frames: Callable[[], int | None],
                 publish: Callable[[LipSync], None]) -> None:
        self._config = config
        self._turns = turns
        self._turn_for_frames = turn_for_frames
        self._publish = publish
        self._lock = threading.Lock()
        self._current: LipSync | None = None
        self.latest: LipSync | None = None
        self._dead_turn: int | None = None  # the interrupted turn: its late frames are dropped
        self._completed = 0  # bot-turn-completed seen (numbers the turns when no voice is received)
        self.stats = {"timelines": 0, "frames": 0, "cancels": 0, "bad_frames": 0,
                      "dropped_interrupted": 0}

    def on_event(self, event: object) -> None:
        """One decoded server event (reader thread, wire order)."""
        if isinstance(event, ev.BlendshapeFrames):
            if event.type in _FRAMES:
                self._add(event.frames)
            elif event.type == "neurosync-blendshapes-cancel":
                with self._lock:
                    current = self._current
                    self.stats["cancels"] += 1
                if current is not None:
                    current.cancel(event.valid_through_frame_index)
            elif event.type == "blendshape-turn-stats":
                self._finish()
        elif isinstance(event, ev.Visemes) and (self._config is None or self._config.format == "visemes"):
            self._add((tuple(_float(event.visemes.get(k)) for k in VISEME_NAMES),))
        elif isinstance(event, ev.BotTurnCompleted):
            self._finish()
            with self._lock:
                self._completed += 1

    def interrupt(self) -> None:
        """A barge-in (any thread): the timeline drops the frames not yet rendered."""
        with self._lock:
            current = self._current
            if current is not None:
                self._dead_turn = current.turn_id
        if current is not None:
            current.interrupt()

    def _add(self, frames: tuple[tuple[float, ...], ...]) -> None:
        if not frames:
            return
        fmt = self._config.format if self._config is not None else format_for_size(len(frames[0]))
        size = FRAME_SIZES.get(fmt or "", 0) or len(frames[0])
        good = tuple(f for f in frames if len(f) == size)
        if len(good) != len(frames):
            self.stats["bad_frames"] += len(frames) - len(good)
            log.warning("lip-sync: %d frame(s) without %d values dropped", len(frames) - len(good), size)
        if not good:
            return
        created: LipSync | None = None
        voice_turn = self._turn_for_frames()
        with self._lock:
            turn_id = voice_turn if voice_turn is not None else self._completed + 1
            if turn_id == self._dead_turn:
                self.stats["dropped_interrupted"] += len(good)
                return
            current = self._current
            if current is None or current.turn_id != turn_id:
                fps = self._config.output_fps if self._config is not None else 60
                current = created = self._current = self.latest = LipSync(fmt or "mha", fps, turn_id)
                self.stats["timelines"] += 1
            self.stats["frames"] += len(good)
        if created is not None:
            turn = self._turns.replying_turn()
            if turn is not None:
                turn.lipsync = created
            self._publish(created)
        current.add(good)

    def _finish(self) -> None:
        with self._lock:
            current = self._current
        if current is not None:
            current.finish()


def _float(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
