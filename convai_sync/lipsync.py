"""Lip-sync: one turn's blendshape frames as a timeline a render loop samples at any time.

Convai sends a reply's face animation as ``chunked-neurosync-blendshapes`` (frames of
``blendshape_config.format``: 251 values for ``mha``, 61 ``arkit``, 170 ``cc4_extended``, 15
``visemes``; none for ``cc5_hd``) at ``output_fps`` frames per second, time-aligned with the
reply's voice, and ``neurosync-blendshapes-cancel`` (``valid_through_frame_index``; null = discard
every buffered frame) on an interruption (Convai Live API "server-to-client messages"; the Web SDK
plays frames at 60 fps against the audio clock, fading 10 frames in and out).

* :class:`LipSyncClip`: a finished turn's frames (``BotReply.lipsync``), immutable.
* :class:`LipSync`: the live timeline of the turn being spoken; frames are added on the
  transport's reader thread while the host's render loop calls :meth:`LipSync.frame_at` with the
  voice's playback position (``Speaker.playback_position(turn_id)`` or the pygame
  ``VoicePlayer.playback_position(turn_id)``). Its lock guards only its frame list and is never
  held while user code runs.

Channel names: the 15 viseme keys are Convai's (``sil pp ff th dd kk ch ss nn rr aa e ih oh ou``).
For ``arkit`` Convai documents only the count (61); :data:`ARKIT_NAMES` is PROPOSED: Apple's 52
ARKit blendshapes in Live Link Face's CSV order followed by its 9 head and eye rotations. ``mha``
and ``cc4_extended`` have no published names: their frames are read by index.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("convai_sync")

#: Values per frame of each ``blendshape_config.format`` (``cc5_hd``: no frames are delivered).
FRAME_SIZES = {"mha": 251, "arkit": 61, "cc4_extended": 170, "visemes": 15, "cc5_hd": 0}

#: The 15 viseme keys (Oculus/OVR visemes), in Convai's order.
VISEME_NAMES = ("sil", "pp", "ff", "th", "dd", "kk", "ch", "ss", "nn", "rr", "aa", "e", "ih", "oh", "ou")

#: PROPOSED names of the 61 ``arkit`` values: Live Link Face's CSV order (52 ARKit blendshapes,
#: then head yaw/pitch/roll and each eye's yaw/pitch/roll). Convai documents only the count.
ARKIT_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawRight", "jawLeft", "jawOpen", "mouthClose",
    "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
    "headYaw", "headPitch", "headRoll", "leftEyeYaw", "leftEyePitch", "leftEyeRoll",
    "rightEyeYaw", "rightEyePitch", "rightEyeRoll",
)

#: Frames over which a turn's animation fades in from neutral and out to neutral (Convai Web SDK).
FADE_FRAMES = 10

#: Frames one turn keeps at most (two minutes at 60 fps); later ones are dropped with a warning.
MAX_FRAMES = 7200

Frame = tuple[float, ...]


def channel_names(fmt: str) -> tuple[str, ...] | None:
    """The names of a format's values in order (``visemes``; ``arkit``, PROPOSED), or None
    (``mha``, ``cc4_extended``, ``cc5_hd``: read by index)."""
    return {"visemes": VISEME_NAMES, "arkit": ARKIT_NAMES}.get(fmt)


def format_for_size(size: int) -> str | None:
    """The format whose frames have ``size`` values, or None."""
    return next((f for f, n in FRAME_SIZES.items() if n == size and n), None)


class PlaybackClock(Protocol):
    """A voice player that reports how far it has played a turn (``Speaker``, ``VoicePlayer``)."""

    def playback_position(self, turn_id: int | None = None) -> float | None:
        """Seconds of turn ``turn_id``'s voice played so far (None: not playing it)."""
        ...


def _sample(frames: Sequence[Frame], fps: int, size: int, seconds: float, end: int | None) -> Frame:
    """The frame at ``seconds``: interpolated, faded in over the first frames and out over the
    last ones (``end`` = the timeline's final frame count, None while frames may still come; past
    the buffered frames it holds the last one, fading it out)."""
    count = len(frames)
    if count == 0 or not math.isfinite(seconds) or seconds < 0:
        return (0.0,) * size
    pos = seconds * fps
    weight = min(1.0, pos / FADE_FRAMES)
    if end is not None:
        if pos >= end:
            return (0.0,) * size
        weight = min(weight, (end - pos) / FADE_FRAMES)
    index = int(pos)
    if index >= count - 1:
        values = frames[-1]
        if end is None:  # an underrun: close the mouth gradually until frames come again
            weight = min(weight, 1.0 - (pos - (count - 1)) / FADE_FRAMES)
    else:
        a, b, frac = frames[index], frames[index + 1], pos - index
        values = tuple(x + (y - x) * frac for x, y in zip(a, b, strict=True))
    weight = max(0.0, min(1.0, weight))
    if weight >= 1.0:
        return tuple(values)
    return tuple(v * weight for v in values)


@dataclass(frozen=True)
class LipSyncClip:
    """One turn's lip-sync frames (``BotReply.lipsync``).

    Attributes:
        format: The ``blendshape_config.format`` (``"mha"``, ``"arkit"``, ``"cc4_extended"``,
            ``"visemes"``).
        fps: Frames per second (``output_fps``).
        frames: The frames in order, each a tuple of ``float`` (``FRAME_SIZES[format]`` values);
            frames a cancel discarded are not included.
        turn_id: The voice turn they animate (``AudioFrame.turn_id``), if known.
    """

    format: str
    fps: int
    frames: tuple[Frame, ...] = field(repr=False)
    turn_id: int | None = None

    @property
    def duration(self) -> float:
        """Seconds the frames span (``len(frames) / fps``)."""
        return len(self.frames) / self.fps

    @property
    def channel_names(self) -> tuple[str, ...] | None:
        """Names of the values (see :func:`channel_names`), or None when read by index."""
        return channel_names(self.format)

    def frame_at(self, seconds: float) -> Frame:
        """The values at ``seconds`` from the start of the turn's voice: interpolated between the
        two nearest frames, faded in from zero over the first 10 frames and out over the last 10;
        all zeros before 0 and after the end."""
        return _sample(self.frames, self.fps, FRAME_SIZES.get(self.format, 0) or _width(self.frames),
                       seconds, len(self.frames))


def _width(frames: Sequence[Frame]) -> int:
    return len(frames[0]) if frames else 0


class LipSync:
    """The live lip-sync timeline of one turn (``client.lipsync``, ``events.on_lipsync``).

    Frames arrive on the transport's reader thread; the render loop samples it from any thread
    with :meth:`frame_at` (seconds of the turn's voice played, from the voice player's
    ``playback_position(turn_id)``) or :meth:`frame_for` (the player itself).

    Args:
        format: The ``blendshape_config.format``.
        fps: ``output_fps`` (frames per second).
        turn_id: The voice turn it animates (``AudioFrame.turn_id``), if known.
    """

    def __init__(self, format: str, fps: int, turn_id: int | None = None) -> None:
        self.format = format
        self.fps = fps
        self.turn_id = turn_id
        self._size = FRAME_SIZES.get(format, 0)
        self._lock = threading.Lock()
        self._frames: list[Frame] = []
        self._end: int | None = None  # final frame count once finished, cancelled or interrupted
        self._rendered = -1  # the furthest frame index a render has asked for
        self.received = 0
        self.dropped = 0
        self.cancelled = False

    # ---- what the server sends (reader thread) ----

    def add(self, frames: Sequence[Frame]) -> None:
        """Append frames (ignored once the timeline is finished or cancelled)."""
        with self._lock:
            if self._end is not None:
                self.dropped += len(frames)
                return
            room = max(0, MAX_FRAMES - len(self._frames))
            if len(frames) > room:
                if not self.dropped:
                    log.warning("lip-sync turn over %d frames: later frames dropped", MAX_FRAMES)
                self.dropped += len(frames) - room
                frames = frames[:room]
            if not self._size and frames:
                self._size = len(frames[0])
            self._frames.extend(frames)
            self.received += len(frames)

    def finish(self) -> None:
        """No more frames will come (end of turn): the last 10 frames fade out."""
        with self._lock:
            if self._end is None:
                self._end = len(self._frames)

    def cancel(self, valid_through_frame_index: int | None) -> None:
        """``neurosync-blendshapes-cancel``: keep frames up to that index; None discards every
        frame not yet rendered (the animation fades out over 10 frames from where it is)."""
        with self._lock:
            self.cancelled = True
            if valid_through_frame_index is None:
                self._cut(self._rendered + FADE_FRAMES + 1)
            else:
                self._cut(max(0, valid_through_frame_index + 1))

    def interrupt(self) -> None:
        """A barge-in: drop the frames not yet rendered; the face fades to neutral over 10 frames."""
        with self._lock:
            self._cut(self._rendered + FADE_FRAMES + 1)

    def _cut(self, keep: int) -> None:
        keep = max(0, min(keep, len(self._frames)))
        self.dropped += len(self._frames) - keep
        del self._frames[keep:]
        self._end = keep if self._end is None else min(self._end, keep)

    # ---- what the render loop asks (any thread) ----

    @property
    def finished(self) -> bool:
        """True once no more frames will be added."""
        with self._lock:
            return self._end is not None

    @property
    def duration(self) -> float:
        """Seconds of frames buffered so far."""
        with self._lock:
            return len(self._frames) / self.fps

    @property
    def channel_names(self) -> tuple[str, ...] | None:
        """Names of the values (see :func:`channel_names`), or None when read by index."""
        return channel_names(self.format)

    def frame_at(self, seconds: float | None) -> Frame:
        """The values at ``seconds`` of the turn's voice played (None: not playing: all zeros).

        Interpolates between the two nearest frames and fades in from zero over the first 10
        frames; out over the last 10 once the turn is finished (or from the render position on a
        cancel or interruption); past the buffered frames of an unfinished turn it holds the last
        frame, fading it out. Returns ``FRAME_SIZES[format]`` floats.
        """
        if seconds is None:
            return (0.0,) * self._size
        with self._lock:
            if math.isfinite(seconds):
                self._rendered = max(self._rendered, min(int(seconds * self.fps), len(self._frames) - 1))
            return _sample(self._frames, self.fps, self._size, seconds, self._end)

    def frame_for(self, player: PlaybackClock) -> Frame:
        """:meth:`frame_at` the position ``player.playback_position(self.turn_id)`` reports."""
        return self.frame_at(player.playback_position(self.turn_id))

    def clip(self) -> LipSyncClip:
        """The frames so far as a :class:`LipSyncClip`."""
        with self._lock:
            frames = tuple(self._frames)
        return LipSyncClip(self.format, self.fps, frames, self.turn_id)

    def __repr__(self) -> str:
        return (f"LipSync(format={self.format!r}, fps={self.fps}, turn_id={self.turn_id}, "
                f"frames={len(self._frames)}, finished={self._end is not None})")
