"""A simulated room for echo cancellation, shared by tests/test_echo_e2e.py and bench/echo.py: the
speaker's sound reaches the microphone after a delay, attenuated, mixed with the user's voice and
a little noise; plus a speech-like synthetic voice and one conversation run against the simulator.

Threads: :meth:`Room.start` runs one thread, ``room-clock``, that plays the sound card: every
``BLOCK`` seconds of wall time (catching up when late) it pulls the speaker's output and delivers
the microphone's capture, both on that thread as a full-duplex PortAudio stream would.
:meth:`Room.stop` joins it. Without :meth:`start`, :meth:`Room.step` advances one block at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from convai_sync import (
    BotTurnCompleted,
    ConvaiClient,
    EventDeliveryPolicy,
    ServerMessage,
    UserTranscription,
)
from convai_sync.devices import Microphone, Speaker
from simulator import Simulator
from simulator.core.speech import voice_seconds

Samples = npt.NDArray[np.float64]

MIC_RATE = 16_000
BLOCK = 0.02
VOICE_RATE = 24_000
#: The character's reply in the trials: 3 s of voice (20 ms per character).
REPLY = "Once upon a time a small robot learned to listen before it spoke, " \
        "and everyone it met felt heard and happy."
USER_SECONDS = 1.0
#: What the room does to the speaker's sound: direct path and two reflections (delay s, gain).
ECHO_PATH = ((0.030, 0.30), (0.037, 0.09), (0.049, 0.03))
LOWPASS_TAPS = 63
BREATH = 0.3  # the voices' noise next to their harmonics (real speech is not a pure harmonic tone)
NOISE = 20.0  # the microphone's noise floor, RMS of PCM16 samples (about -64 dBFS)


def speechlike(seconds: float, rate: int, *, seed: int, pitch: float, peak: float = 8000.0) -> bytes:
    """A deterministic speech-like voice (PCM16 mono): a glottal-like harmonic tone (harmonics
    falling as 1/k) whose pitch wanders around ``pitch`` Hz as intonation does, with breath noise,
    in syllables (3.5 a second); peaks at ``peak``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    knots = rng.uniform(-0.25, 0.25, int(seconds * 4) + 2)  # the intonation, 4 points a second
    f0 = pitch * (1 + np.interp(t, np.arange(len(knots)) / 4, knots))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave: Samples = np.zeros(len(t))
    for k in range(1, 40):
        if k * f0.max() < rate / 2.2:
            wave += np.sin(k * phase) / k
    envelope = (0.5 + 0.5 * np.sin(2 * np.pi * 3.5 * t - np.pi / 2)) ** 2
    wave = (wave + BREATH * rng.standard_normal(len(t))) * envelope
    wave *= peak / max(float(np.abs(wave).max()), 1e-9)
    return to_pcm(wave)


def character_voice(text: str) -> tuple[bytes, int]:
    """The simulator's synthesizer in the trials: :func:`speechlike` for :func:`voice_seconds` of ``text``."""
    return speechlike(voice_seconds(text), VOICE_RATE, seed=1, pitch=140.0), VOICE_RATE


def user_voice() -> bytes:
    """The user's utterance: :data:`USER_SECONDS` of another speech-like voice at 16 kHz."""
    return speechlike(USER_SECONDS, MIC_RATE, seed=7, pitch=210.0, peak=6000.0)


def to_pcm(samples: Samples) -> bytes:
    return np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()


def from_pcm(pcm: bytes) -> Samples:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


class RoomStream:
    """The stream a device gets from the room's factories (``latency`` as PortAudio reports it)."""

    def __init__(self, rate: int, channels: int, block: int, callback: Callable[..., None], latency: float) -> None:
        self.rate, self.channels, self.block, self.callback, self.latency = rate, channels, block, callback, latency
        self.active = False
        # The air is analog and the microphone's converter filters below 8 kHz before it samples:
        # a windowed-sinc low-pass at 7 kHz (sampling without it would alias what the speaker
        # plays above 8 kHz into sounds the far end does not hold).
        n = np.arange(LOWPASS_TAPS) - (LOWPASS_TAPS - 1) / 2
        taps = np.sinc(2 * 7000 / rate * n) * np.hamming(LOWPASS_TAPS)
        self.lowpass: Samples = taps / taps.sum()
        self.history: Samples = np.zeros(LOWPASS_TAPS - 1)

    def to_mic(self, played: Samples, n: int) -> Samples:
        """``played`` (this stream's rate, one block) as ``n`` samples at the microphone's rate."""
        signal = np.concatenate([self.history, played])
        self.history = signal[-(LOWPASS_TAPS - 1):]
        filtered = np.convolve(signal, self.lowpass, mode="valid")  # delayed by (taps - 1) / 2 samples
        return np.interp(np.arange(n) * self.rate / MIC_RATE, np.arange(len(filtered)), filtered)

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        self.active = False


@dataclass
class Recording:
    """Per microphone block: the capture and its parts (float PCM16 values at 16 kHz)."""

    captured: list[Samples] = field(default_factory=list)
    echo: list[Samples] = field(default_factory=list)
    user: list[Samples] = field(default_factory=list)


class Room:
    """The speaker's output, through :data:`ECHO_PATH`, plus the user's voice and noise, is what the
    microphone captures. Give ``speaker``/``microphone`` the :meth:`output` and :meth:`input` factories."""

    def __init__(self, *, echo_path: tuple[tuple[float, float], ...] = ECHO_PATH, noise: float = NOISE,
                 seed: int = 0) -> None:
        self._taps = [(round(delay * MIC_RATE), gain) for delay, gain in echo_path]
        self._history: Samples = np.zeros(max(d for d, _ in self._taps) + 1)  # speaker sound at 16 kHz
        self._noise, self._rng = noise, np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._speakers: list[RoomStream] = []
        self._mics: list[RoomStream] = []
        self._user = np.zeros(0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recording = Recording()
        self.blocks = 0

    def output(self, rate: int, channels: int, block: int, callback: Callable[..., None]) -> RoomStream:
        # The device's latency is the direct path's delay: the delay hint is then the true one.
        stream = RoomStream(rate, channels, block, callback, latency=self._taps[0][0] / MIC_RATE)
        with self._lock:
            self._speakers.append(stream)
        return stream

    def input(self, rate: int, channels: int, block: int, callback: Callable[..., None]) -> RoomStream:
        assert (rate, channels) == (MIC_RATE, 1), "the room's microphone captures 16 kHz mono"
        stream = RoomStream(rate, channels, block, callback, latency=0.0)
        with self._lock:
            self._mics.append(stream)
        return stream

    def say(self, pcm: bytes) -> None:
        """The user says ``pcm`` (16 kHz mono PCM16) from the next block on."""
        with self._lock:
            self._user = np.concatenate([self._user, from_pcm(pcm)])

    def step(self) -> None:
        """One block: the speaker plays, the room carries it, the microphone captures."""
        n = round(BLOCK * MIC_RATE)
        with self._lock:
            speakers = [s for s in self._speakers if s.active]
            mics = [m for m in self._mics if m.active]
            user, self._user = self._user[:n], self._user[n:]
        played: Samples = np.zeros(n)
        for stream in speakers:
            frames = round(BLOCK * stream.rate)
            out = bytearray(frames * 2 * stream.channels)
            stream.callback(out, frames, None, None)
            played += stream.to_mic(from_pcm(bytes(out))[::stream.channels], n)
        self._history = np.concatenate([self._history, played])
        echo: Samples = np.zeros(n)
        for delay, gain in self._taps:
            start = len(self._history) - n - delay
            echo += gain * self._history[start:start + n]
        self._history = self._history[-(self._taps[-1][0] + n + 1):]
        voice: Samples = np.zeros(n)
        voice[:len(user)] = user
        captured = echo + voice + self._noise * self._rng.standard_normal(n)
        for mic in mics:
            mic.callback(to_pcm(captured), n, None, None)
        if mics:
            self.recording.captured.append(np.clip(np.round(captured), -32768, 32767))
            self.recording.echo.append(echo)
            self.recording.user.append(voice)
        self.blocks += 1

    def start(self) -> None:
        """Run the sound card in real time on ``room-clock`` until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="room-clock", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):  # the sound card's pace, not a sync
            self.step()
            due += BLOCK

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            assert not self._thread.is_alive(), "room-clock did not stop"


def erle_db(captured: list[Samples], processed: list[Samples], echo: list[Samples], user: list[Samples],
            *, floor: float = 300.0) -> float:
    """Echo return loss enhancement over the echo-only blocks: blocks whose echo is louder than
    ``floor`` RMS (about -40 dBFS) and that hold none of the user's voice; 10 log10 of the
    captured energy over the processed energy there (dB)."""
    num = den = 0.0
    for cap, out, ech, usr in zip(captured, processed, echo, user, strict=True):
        if np.sqrt(np.mean(ech ** 2)) >= floor and not usr.any():
            num += float(np.sum(cap ** 2))
            den += float(np.sum(out ** 2))
    if num == 0:
        raise ValueError("no echo-only block")
    return float(10 * np.log10(num / max(den, 1.0)))


@dataclass
class Trial:
    """One conversation in the room: what the character did and heard."""

    self_interruptions: int = 0  # replies interrupted while the user was silent
    user_started: int = 0  # user-started-speaking while the user was speaking
    echo_started: int = 0  # user-started-speaking while the user was silent (its own voice heard)
    heard: list[str] = field(default_factory=list)  # final transcriptions
    replies: list[bool] = field(default_factory=list)  # was_interrupted of each completed reply
    processed: list[Samples] = field(default_factory=list)
    room: Room | None = None


def simulator(**options: Any) -> Simulator:
    """The simulator the trials talk to: :data:`REPLY` in :func:`character_voice`, voice on the WebSocket."""
    return Simulator(websocket_audio=True, responder=lambda text: REPLY, synthesizer=character_voice, **options)


def converse(sim: Simulator, transport: str, processing: bool, *, listen: float, user_speaks: bool,
             timeout: float = 20.0, stop_at_self_interruption: bool = False) -> Trial:
    """Ask the character for :data:`REPLY`; listen for ``listen`` seconds from the question (or until
    the first self-interruption); then, if ``user_speaks``, wait for the first reply to complete, say
    :func:`user_voice` and wait for the reply to it to complete. ``processing`` is the microphone's
    ``echo_cancellation``."""
    trial = Trial()
    room = trial.room = Room()
    said = threading.Event()  # the user has spoken: interruptions from then on are not self-inflicted
    changed = threading.Condition()
    config = sim.client_config(transport=transport, connection_timeout=15.0)

    def on_message(message: ServerMessage) -> None:
        with changed:
            speaking = said.is_set()
            if message.type == "user-started-speaking":
                if speaking:
                    trial.user_started += 1
                else:
                    trial.echo_started += 1
            elif isinstance(message, BotTurnCompleted):
                trial.replies.append(message.was_interrupted)
                if message.was_interrupted and not speaking:
                    trial.self_interruptions += 1
            elif isinstance(message, UserTranscription) and message.final and speaking:
                trial.heard.append(message.text)
            changed.notify_all()

    def wait(check: Callable[[], bool], seconds: float) -> bool:
        with changed:
            return changed.wait_for(check, seconds)

    with ConvaiClient(config) as client:
        speaker = Speaker(prebuffer=0.06, stream_factory=room.output)
        mic = Microphone(MIC_RATE, stream_factory=room.input, echo_cancellation=processing)

        def send(pcm: bytes, rate: int, channels: int) -> None:
            trial.processed.append(from_pcm(pcm))
            client.send_audio(pcm, rate, channels, timeout=1.0)

        client.events.on_message.subscribe(on_message, EventDeliveryPolicy.IMMEDIATE)
        speaker.attach(client)
        try:
            client.connect(timeout=timeout)
            mic.start(send)
            room.start()
            client.send_text("Tell me a story.")
            wait(lambda: stop_at_self_interruption and trial.self_interruptions > 0, listen)
            if user_speaks:
                # The user speaks once the reply is over (however slow this machine is today), so
                # that only a self-interruption could interrupt it.
                assert wait(lambda: bool(trial.replies), timeout), f"no reply within {timeout} s: {trial}"
                replies = len(trial.replies)
                said.set()
                room.say(user_voice() + bytes(2 * int(0.8 * MIC_RATE)))
                assert wait(lambda: len(trial.replies) > replies and bool(trial.heard), timeout), \
                    f"no reply to the user within {timeout} s: {trial}"
        finally:
            room.stop()
            mic.stop()
            speaker.close()
    return trial
