"""The scripted tour: the scene drives itself through Convai's session events on an embedded simulator.

In turn: another player holds the plan's only concurrency slot ("Please wait…"), the slot frees and
the scene connects (the idle reference frame), the player types a line and the character answers in
subtitles and voice, a key fires the story's first trigger (the HUD shows the new narrative section),
the player asks the shopkeeper to pick up the sword and hand it over (she walks to it, takes it and
gives it, her mouth moving with the lip-sync frames of her voice) and to go back to the counter,
the player sends a voice clip, Convai warns of an idle close (countdown,
answered by a key press), the server shuts down (``SERVER_SHUTDOWN``: dimmed HUD, "reconnecting…",
then reconnected), the character's pipeline fails for good (``server.fatal_error``: "reload"), and
the player reloads. A PNG of the display is saved at each moment.

The script is a generator that the frame loop advances once per frame, after drawing: it only
looks at the scene, posts input events (the same path a real key press takes) and saves
screenshots, so it never blocks a frame. The simulator's control calls block (briefly, on the
simulator's loop), so they run on the ``tour-director`` worker thread, whose result the script
polls frame by frame. Every wait has a deadline and fails the tour naming what did not happen.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pygame
from _pygame_scene import Scene

from convai_sync import ConvaiClient, DisconnectReason, SessionState

T = TypeVar("T")
Steps = Generator[None, None, T]

#: The character's lines: short, so the tour stays well under 20 s.
REPLY_TO_TEXT = "Of course! That old sword is yours for thirty gold, and I will fetch it for you."
REPLY_TO_VOICE = "I heard you loud and clear. Come back tomorrow for the shield."
PLAYER_LINE = "Hello! Can you mend my sword?"
#: What the player asks the shopkeeper to do: "it" is the attention object (the sword), "me" the player.
ACT_LINE = "Please pick up the sword and give it to me"
BACK_LINE = "Thanks! Now move to the counter"
#: Synthetic voice: seconds of speech per character of text, and its sample rate (Hz).
SECONDS_PER_CHAR = 0.03
VOICE_RATE = 24000


class TourFailure(Exception):
    """A step of the tour did not happen in time (its message names the step)."""


def respond(text: str) -> str:
    """The tour's shopkeeper, beyond her scripted lines: the simulator's ``responder``."""
    return REPLY_TO_VOICE if text.startswith("[audio") else REPLY_TO_TEXT


class Voice:
    """The simulator's ``synthesizer``: a voice-like signal whose length follows the text, counted.

    A 130 Hz voice with four harmonics, a slow vibrato and a syllable-rate swell that never drops
    near silence, with 5 ms fades at the ends: so every synthesized second is a second of clearly
    non-silent audio in whatever the mixer writes. ``seconds`` is what the character said in total,
    counted where it is made (on the simulator's side), for the test to compare with what played.
    """

    def __init__(self, seconds_per_char: float = SECONDS_PER_CHAR, rate: int = VOICE_RATE) -> None:
        self.seconds_per_char = seconds_per_char
        self.rate = rate
        self._lock = threading.Lock()  # the simulator runs synthesizers on its worker pool
        self.seconds = 0.0
        self.utterances: list[float] = []

    def __call__(self, text: str) -> tuple[bytes, int]:
        n = max(1, round(len(text) * self.seconds_per_char * self.rate))
        t = np.arange(n) / self.rate
        f0 = 130.0 + 6.0 * np.sin(2 * math.pi * 5.0 * t)
        phase = 2 * math.pi * np.cumsum(f0) / self.rate
        wave = sum(np.sin(k * phase) / k for k in range(1, 5))
        swell = 0.75 + 0.25 * np.sin(2 * math.pi * 4.0 * t)
        fade = np.minimum(1.0, np.minimum(np.arange(n), n - 1 - np.arange(n)) / (0.005 * self.rate) + 0.05)
        pcm = (0.22 * wave * swell * fade * 32767).astype("<i2").tobytes()
        with self._lock:
            self.seconds += n / self.rate
            self.utterances.append(n / self.rate)
        return pcm, self.rate


class Tour:
    """Advance with :meth:`tick` once per frame after drawing; :attr:`done` / :attr:`failed` tell the end.

    Args:
        sim: The running simulator (``concurrency_limit=1``).
        scene: The scene it drives (its connect has not started: the tour starts it).
        shots: Directory for the PNGs (None: take none).
        step_timeout: Seconds each step may take.
    """

    def __init__(self, sim: Any, scene: Scene, shots: Path | None, step_timeout: float = 8.0,
                 view: Any = None) -> None:
        self.sim = sim
        self.scene = scene
        self.view = view
        self.shots = shots
        self.step_timeout = step_timeout
        self.screenshots: list[dict[str, Any]] = []
        self.timeline: list[tuple[float, str]] = []
        self.done = False
        self.failed: str | None = None
        self._started = time.monotonic()
        self._director = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tour-director")
        self._holder: ConvaiClient | None = None
        self._screen: pygame.Surface | None = None
        self._script: Iterator[None] = self.script()

    # ------------------------------------------------------------------ driving

    def tick(self, screen: pygame.Surface) -> None:
        self.scene.guard.check("Tour.tick")
        if self.done or self.failed:
            return
        self._screen = screen
        try:
            next(self._script)
        except StopIteration:
            self.done = True
            self._say("tour complete")
            self.scene.running = False
        except TourFailure as exc:
            self.failed = str(exc)
            self._say(f"FAILED: {exc}")
            self.scene.running = False

    def close(self) -> None:
        """Stop the director and the slot holder (after the loop; bounded)."""
        if self._holder is not None:
            self._holder.close()
        self._director.shutdown(wait=True, cancel_futures=True)

    def _say(self, text: str) -> None:
        self.timeline.append((round(time.monotonic() - self._started, 3), text))

    def until(self, what: str, condition: Callable[[], object], timeout: float | None = None) -> Steps[None]:
        """Yield frames until ``condition()`` holds; fail after ``timeout`` (default ``step_timeout``)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.step_timeout)
        while not condition():
            if time.monotonic() > deadline:
                raise TourFailure(f"timed out waiting for {what} (state {self.scene.state.name})")
            yield
        self._say(what)

    def run(self, what: str, function: Callable[..., T], *args: Any) -> Steps[T]:
        """Run a blocking call on the director thread, yielding frames until it returns."""
        future = self._director.submit(function, *args)
        deadline = time.monotonic() + self.step_timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TourFailure(f"timed out waiting for {what}")
            yield
        try:
            result = future.result()
        except Exception as exc:
            raise TourFailure(f"{what} failed: {exc!r}") from exc
        self._say(what)
        return result

    def frames(self, count: int) -> Steps[None]:
        for _ in range(count):
            yield

    def shot(self, name: str) -> None:
        """Save the frame just drawn as ``NAME.png``."""
        self.scene.guard.check("Tour.shot")
        assert self._screen is not None
        stage = self.scene.stage
        entry: dict[str, Any] = {"name": name, "at": round(time.monotonic() - self._started, 3),
                                 "state": self.scene.state.name,
                                 "banner": self.scene.banner.kind if self.scene.banner else None,
                                 "hud_brightness": round(self.scene.hud_brightness, 3),
                                 "section": self.scene.section, "mouth": round(stage.mouth, 3),
                                 "character_x": round(stage.x, 1), "holding": stage.holding,
                                 "mouth_rect": list(self.view.mouth_rect) if self.view is not None else None}
        if self.shots is not None:
            path = self.shots / f"{name}.png"
            pygame.image.save(self._screen, str(path))
            entry["path"] = str(path)
        self.screenshots.append(entry)
        self._say(f"screenshot {name}")

    def press(self, key: int) -> None:
        """Post a key press, as the keyboard would (the scene reads it next frame)."""
        self.scene.guard.check("Tour.press")
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))
        pygame.event.post(pygame.event.Event(pygame.KEYUP, key=key, mod=0, unicode="", scancode=0))

    def type_line(self, text: str) -> None:
        """Type ``text`` and press Enter."""
        self.scene.guard.check("Tour.type_line")
        pygame.event.post(pygame.event.Event(pygame.TEXTINPUT, text=text))
        self.press(pygame.K_RETURN)

    # ------------------------------------------------------------------ the script

    def _quiet(self) -> bool:
        """The character has finished its reply and its voice has played out."""
        player = self.scene.player
        return not self.scene.thinking and (player is None or not player.busy)

    def script(self) -> Steps[None]:
        scene, sim = self.scene, self.sim
        connected = SessionState.CONNECTED

        # 1. Another player holds the plan's only slot: "Please wait…" while SlotWaitPolicy retries.
        self._holder = ConvaiClient(sim.client_config())
        yield from self.run("the other player holds the only slot", self._holder.connect, 10.0)
        scene.connector.start()
        yield from self.until("the Please wait banner",
                              lambda: scene.banner is not None and scene.banner.kind == "please_wait"
                              and scene.slot_waits >= 2)
        self.shot("1-please-wait")
        yield from self.run("the other player leaves", self._holder.disconnect)

        # 2. The slot frees: connected, the HUD at full brightness. This is the idle reference frame.
        yield from self.until("connected", lambda: scene.state is connected and scene.hud_settled
                              and scene.banner is None)
        self.shot("2-connected")

        # 3. A typed line; the reply streams in as subtitles and plays as voice.
        self.type_line(PLAYER_LINE)
        player = scene.player
        yield from self.until("the reply speaking",
                              lambda: scene.subtitle and (player is None or player.stats.seconds_played > 0.4))
        self.shot("3-speaking")
        yield from self.until("the reply's end", lambda: scene.turns_completed >= 1 and self._quiet(),
                              timeout=15.0)

        # 3a. A key fires the story's first trigger: the shopkeeper's story moves on (HUD), and she says so.
        turns = scene.turns_completed
        self.press(pygame.K_F6)
        yield from self.until("the next narrative section", lambda: scene.section == "browsing")
        yield from self.until("the section's line said", lambda: scene.turns_completed > turns and self._quiet(),
                              timeout=15.0)
        self.shot("3a-section")

        # 3b. Actions: she walks to the sword, takes it and hands it over, talking all the while; the
        # screenshot catches her mid-sentence with the sword in hand, her mouth driven by lip-sync frames.
        stage = scene.stage
        turns = scene.turns_completed
        self.type_line(ACT_LINE)
        yield from self.until("the sword in hand, mouth open, mid-sentence",
                              lambda: stage.holding == "sword" and stage.mouth > 0.6 and stage.lipsync_frames > 0
                              and scene.speaking, timeout=12.0)
        self.shot("3b-acting")
        yield from self.until("the sword handed over", lambda: "sword" in stage.given and not stage.acting)
        yield from self.until("the reply's end", lambda: scene.turns_completed > turns and self._quiet(),
                              timeout=15.0)
        turns = scene.turns_completed
        self.type_line(BACK_LINE)
        yield from self.until("back at the counter", lambda: scene.turns_completed > turns and self._quiet()
                              and not stage.acting, timeout=15.0)

        # 4. A voice clip (F2), streamed in real time with send_audio; the character answers it.
        if scene.voice_clip is not None:
            turns = scene.turns_completed
            self.press(pygame.K_F2)
            yield from self.until("the answer to the voice clip",
                                  lambda: scene.turns_completed > turns and scene.mic is None and self._quiet(),
                                  timeout=15.0)

        # 5. Convai warns that the idle player will be disconnected; a key press answers it.
        session_id = scene.client.session_id or ""
        yield from self.run("an idle warning", sim.send_idle_warning, session_id, 9)
        yield from self.until("the idle countdown", lambda: scene.idle_seconds_left is not None)
        self.shot("4-idle-warning")
        self.press(pygame.K_SPACE)
        yield from self.until("the countdown answered", lambda: scene.idle_deadline is None)
        yield from self.run("reset-idle-timer at the server", sim.wait_for_received, session_id,
                            "reset-idle-timer", 5.0)

        # 6. The server shuts down: the HUD dims, "reconnecting…", then the SDK reconnects.
        yield from self.run("a SERVER_SHUTDOWN drop", sim.inject, DisconnectReason.SERVER_SHUTDOWN)
        yield from self.until("the dimmed HUD and the reconnecting banner",
                              lambda: scene.state is SessionState.RECONNECTING and scene.hud_settled
                              and scene.banner is not None and scene.banner.kind == "recoverable")
        self.shot("5-reconnecting")
        yield from self.until("the reconnect", lambda: scene.state is connected and scene.hud_settled
                              and scene.banner is None)
        self.shot("6-reconnected")

        # 7. The character's pipeline fails for good: not recoverable, so "reload".
        yield from self.run("server.fatal_error", sim.inject, "server.fatal_error")
        yield from self.until("the reload banner", lambda: scene.banner is not None and scene.banner.kind == "fatal"
                              and scene.hud_settled and scene.state is not connected)
        self.shot("7-fatal-error")

        # 8. The player reloads (F5): a fresh connect on the worker thread.
        self.press(pygame.K_F5)
        yield from self.until("the reload", lambda: scene.connector.outcome == "connected"
                              and scene.state is connected)
