"""Lip-sync frames from the character's own voice, streamed beside it (loop thread only; the math is pure).

Frames (Convai's lip-sync docs: ``blendshape_config.format`` and its value count per frame): one frame per
``1 / output_fps`` seconds of the synthesized voice, ``ceil(duration * output_fps)`` frames in all. Frame ``i``
describes the audio from ``i / fps`` to ``(i + 1) / fps`` seconds: its mouth opening is the window's RMS
loudness relative to :data:`FULL_OPEN_RMS` (clamped to 0..1), so silence closes the mouth and the default
voice's tone opens it about 0.94. Every other value is 0, except ``sil`` (``1 - opening``) for ``visemes``.
The opening goes to (PROPOSED where Convai publishes no channel names):

========================  =====  ====================================================
format                    count  mouth channel (index)
========================  =====  ====================================================
``mha``                   251    0 (PROPOSED: no published names)
``arkit``                 61     17 ``jawOpen`` (Live Link Face order; PROPOSED layout)
``cc4_extended``          170    0 (PROPOSED: no published names)
``visemes``               15     10 ``aa`` (``sil`` at 0 is ``1 - opening``)
``cc5_hd``                0      none: no frames are sent
========================  =====  ====================================================

Wire (Convai Live API message glossary): ``chunked-neurosync-blendshapes {blendshapes: float[][N], response_id,
neurosync_turn_id, epoch, sequence}`` with ``chunk_size`` frames each (``neurosync-blendshapes
{blendshapes: float[N], ...}`` per frame when ``enable_chunking`` is false). Chunk ``k`` goes out when the
voice reaches its first frame's time (``k * chunk_size / fps`` seconds after the voice starts), so frames lead
their audio by at most one chunk and never trail it; frames left when the voice ends (or when the carrier sends
no audio) go out at once. An interruption stops the frames and sends ``neurosync-blendshapes-cancel
{..., valid_through_frame_index, reason: "interruption"}``: the index of the last frame whose audio had
started (null: none had). Every voiced turn ends with ``blendshape-turn-stats {stats: {total_blendshapes,
total_audio_bytes, total_turn_duration_ms, total_audio_duration_ms, fps, was_interrupted}, ...ids}``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from simulator.core import wire
from simulator.core.features import FORMAT_VALUES, Blendshapes

#: RMS (PCM16) at which the mouth is fully open (about -13 dBFS).
FULL_OPEN_RMS = 6000.0
#: Where each format carries the mouth opening (see the module docstring).
MOUTH_INDEX = {"mha": 0, "arkit": 17, "cc4_extended": 0, "visemes": 10}
VISEME_SILENCE_INDEX = 0
#: Samples squared at a time by :func:`openings` (bounds its scratch memory to a few MB).
BLOCK_SAMPLES = 1 << 18

Send = Callable[[wire.JsonDict], Awaitable[bool]]


def openings(pcm: bytes, rate: int, fps: int) -> list[float]:
    """Mouth opening 0..1 (rounded to 4 places) of each ``1 / fps`` window of PCM16 mono ``pcm`` at ``rate`` Hz.

    Vectorised (numpy), a block of windows at a time: a reply's voice runs to tens of millions of samples and
    this runs on the simulator's loop, where a per-sample Python loop stalled every other session for seconds.
    Sums of squares are exact in int64 (and below 2**53, so their division is the one Python's int / int
    makes) and every later step is one IEEE operation, so the result equals the per-sample arithmetic bit for bit.
    """
    # Imported on first use: importing simulator (which the pytest plugin does in every test run) does not load
    # numpy (tests/test_pygame_tour.py checks it).
    import numpy

    samples = numpy.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)
    count = math.ceil(len(samples) * fps / rate) if rate > 0 else 0
    if count <= 0:
        return []
    # Window i is samples[bounds[i]:bounds[i + 1]].
    bounds = numpy.minimum(numpy.arange(count + 1, dtype=numpy.int64) * rate // fps, len(samples))
    step = max(1, BLOCK_SAMPLES * fps // rate)
    result: list[float] = []
    for first in range(0, count, step):
        edges = bounds[first:first + step + 1]
        squares = samples[edges[0]:edges[-1]].astype(numpy.int64) ** 2
        totals = numpy.concatenate(([0], numpy.cumsum(squares)))
        # An empty window (only when rate < fps) sums to 0 over a width of 1: silence, as before.
        means = numpy.diff(totals[edges - edges[0]]) / numpy.maximum(numpy.diff(edges), 1)
        loudness = numpy.minimum(1.0, numpy.sqrt(means) / FULL_OPEN_RMS)
        # round() per window keeps Python's exact decimal rounding (numpy.round scales by 10**4 first).
        result.extend(map(round, loudness.tolist(), itertools.repeat(4)))
    return result


def frame(fmt: str, opening: float) -> list[float]:
    """One frame of ``fmt`` for a mouth ``opening`` (0..1); empty for ``cc5_hd``."""
    size = FORMAT_VALUES[fmt]
    if size == 0:
        return []
    values = [0.0] * size
    values[MOUTH_INDEX[fmt]] = opening
    if fmt == "visemes":
        values[VISEME_SILENCE_INDEX] = round(1.0 - opening, 4)
    return values


@dataclass
class Animation:
    """One turn's lip-sync stream; :meth:`run` sends it while the voice plays (see the module docstring).

    It holds the mouth opening of each frame and builds each frame as it goes out: a long reply's frames,
    built at once, would be hundreds of MB of lists (251 values a frame for ``mha``) made on the loop.
    """

    config: Blendshapes
    openings: list[float]  # one per frame to send (none for cc5_hd)
    audio_bytes: int
    audio_seconds: float
    turn_id: int
    response_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    sent: int = 0
    sequence: int = 0

    def _ids(self) -> dict[str, object]:
        return {"response_id": self.response_id, "neurosync_turn_id": self.turn_id, "epoch": 0,
                "sequence": self.sequence}

    async def _send_frames(self, send: Send, count: int) -> bool:
        batch = [frame(self.config.format, opening) for opening in self.openings[self.sent:self.sent + count]]
        if not batch:
            return True
        if self.config.enable_chunking:
            ok = await send(wire.form_b("chunked-neurosync-blendshapes", blendshapes=batch, **self._ids()))
            self.sequence += 1
        else:
            ok = True
            for values in batch:
                ok = await send(wire.form_b("neurosync-blendshapes", blendshapes=values, **self._ids()))
                self.sequence += 1
                if not ok:
                    break
        self.sent += len(batch)
        return ok

    async def run(self, send: Send, stop: Callable[[], bool], voice_done: asyncio.Event) -> bool:
        """Send the frames paced by the voice that started now; False when the session cannot send.

        ``stop()`` True is an interruption (cancel, then stats); ``voice_done`` set means the voice ended (the
        rest goes out at once).
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        chunk = self.config.chunk_size if self.config.enable_chunking else 1
        fps = self.config.output_fps
        interrupted = False
        while self.sent < len(self.openings):
            if stop():
                interrupted = True
                break
            due = started + self.sent / fps
            delay = due - loop.time()
            if delay > 0 and not voice_done.is_set():
                try:
                    await asyncio.wait_for(voice_done.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                continue
            if not await self._send_frames(send, chunk):
                return False
        if stop():
            interrupted = True
        elapsed = loop.time() - started
        if interrupted:
            played = min(self.sent, math.floor(elapsed * fps) + 1)
            cancel = dict(self._ids(), valid_through_frame_index=played - 1 if played > 0 else None,
                          reason="interruption")
            if not await send(wire.form_b("neurosync-blendshapes-cancel", **cancel)):
                return False
        stats = {"total_blendshapes": self.sent, "total_audio_bytes": self.audio_bytes,
                 "total_turn_duration_ms": round(elapsed * 1000), "total_audio_duration_ms":
                 round(self.audio_seconds * 1000), "fps": fps, "was_interrupted": interrupted}
        return await send(wire.form_b("blendshape-turn-stats", stats=stats, **self._ids()))


def animation(pcm: bytes, rate: int, config: Blendshapes, turn_id: int) -> Animation:
    """The lip-sync stream of one voice (PCM16 mono at ``rate`` Hz)."""
    frames = openings(pcm, rate, config.output_fps) if config.values_per_frame else []
    return Animation(config, frames, len(pcm), len(pcm) / (2 * rate) if rate else 0.0, turn_id)
