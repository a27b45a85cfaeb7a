"""Every example runs as a user would run it (no arguments, embedded simulator) and exits 0."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.echo_room import Room, user_voice
from tests.support.fake_sounddevice import FakeSoundDevice

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: example -> lines its user-facing output must contain
EXPECTED = {
    "quickstart.py": ["[state] CONNECTING -> CONNECTED", "Character: You said: Hello! Who are you?",
                      "[state] DISCONNECTING -> DISCONNECTED"],
    "game_loop.py": ["thinking", "speaking", "OK: all"],
    "error_banner.py": ["Reconnecting", "Please reload"],
    "please_wait.py": ["Please wait", "Slot free"],
    # The end said in words (findings: session_timer ended reporting CLIENT_INITIATED after the
    # duration cap; idle_countdown showed ROOM_DELETED to a newcomer).
    "session_timer.py": ["Session ends in", "session.duration_limit_reached",
                         "Session over: max_session_duration of 3 s reached"],
    "idle_countdown.py": ["disconnected in", "session.idle_timeout", "nobody spoke"],
    # LiveKit's Opus smears the tone's edges by a frame: "[audio 1.02 s]" there, "1.00" on the WebSocket.
    "voice_chat.py": ["You say: tone.wav (1.70 s, 16000 Hz)", "Character heard: [audio 1.0",
                      "Character: You said: [audio 1.0", "Character's voice: "],
}


#: example -> what its output must not contain (LiveKit enum names shown to a newcomer)
ABSENT = {"session_timer.py": ["CLIENT_INITIATED"], "idle_countdown.py": ["ROOM_DELETED"]}

#: examples run by their own test module instead (they need more than "no arguments").
COVERED_ELSEWHERE = {"pygame_character.py": "tests/test_pygame_tour.py"}  # opens a window without --headless


def test_every_example_is_covered() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(EXPECTED) | set(COVERED_ELSEWHERE)
    root = EXAMPLES.parent
    assert all((root / test).exists() for test in COVERED_ELSEWHERE.values())


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_against_the_embedded_simulator(script: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CONVAI_API_KEY", "CONVAI_CHARACTER_ID")}
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True,
                          timeout=45, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for line in EXPECTED[script]:
        assert line in proc.stdout, f"{script} did not print {line!r}:\n{proc.stdout}"
    for text in ABSENT.get(script, []):
        assert text not in proc.stdout, f"{script} printed {text!r}:\n{proc.stdout}"


def _run(script: str, env: dict[str, str] | None = None) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("CONVAI_API_KEY", "CONVAI_CHARACTER_ID", "CONVAI_URL")}
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True,
                          timeout=45, env={**base, **(env or {})}, cwd=EXAMPLES.parent, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_game_loop_shows_each_indicator_state_on_its_own_tick() -> None:
    """Finding: all three indicator states went by within one tick (an instant embedded character)."""
    import re

    out = _run("game_loop.py")
    ticks = [int(t) for t, _ in re.findall(r"\[tick\s+(\d+)\] indicator: \S+ -> (\S+)", out)[:3]]
    assert len(ticks) == 3 and len(set(ticks)) == 3, out


def test_quickstart_against_a_local_simulator_does_not_claim_the_real_service() -> None:
    """Finding: with CONVAI_URL at a local simulator, quickstart said "Using the real Convai service"."""
    from simulator import Simulator

    with Simulator() as sim:
        out = _run("quickstart.py", {"CONVAI_API_KEY": sim.api_key, "CONVAI_CHARACTER_ID": sim.character_id,
                                     "CONVAI_URL": sim.url})
    assert "real Convai service" not in out
    assert f"Using the local Convai service at {sim.url}" in out


def test_voice_chat_over_the_websocket_writes_the_characters_voice(tmp_path: Path) -> None:
    """The no-argument run above goes over LiveKit; this one over the WebSocket's audio, where the WAV's
    length is exactly the synthesizer's (no codec in between)."""
    import wave

    from simulator.core.speech import voice_seconds

    reply = "You said: [audio 1.00 s]. This is turn 1 of our conversation. I am a simulated Convai character."
    out = tmp_path / "reply.wav"
    env = {k: v for k, v in os.environ.items() if k not in ("CONVAI_API_KEY", "CONVAI_CHARACTER_ID", "CONVAI_URL")}
    proc = subprocess.run([sys.executable, str(EXAMPLES / "voice_chat.py"), "--transport", "websocket", "--output",
                           str(out)], capture_output=True, text=True, timeout=45, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with wave.open(str(out), "rb") as wav:
        seconds = wav.getnframes() / wav.getframerate()
    assert seconds == pytest.approx(voice_seconds(reply), abs=0.001)
    assert f"({seconds:.2f} s)" in proc.stdout


def test_voice_chat_help_says_when_echo_cancellation_is_on() -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "voice_chat.py"), "--help"], capture_output=True,
                          text=True, timeout=45, check=True)
    assert "--input-device DEVICE" in proc.stdout and "--output-device DEVICE" in proc.stdout
    assert "--list-devices" in proc.stdout
    assert "Echo cancellation: when both --input-device and --output-device are given" in proc.stdout


@pytest.fixture
def voice_chat(monkeypatch: pytest.MonkeyPatch) -> Any:
    """examples/voice_chat.py imported in this process (so a fake ``sounddevice`` can stand in)."""
    for name in ("CONVAI_API_KEY", "CONVAI_CHARACTER_ID", "CONVAI_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module("voice_chat")


def test_voice_chat_lists_the_sound_devices(voice_chat: Any, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice())
    assert voice_chat.main(["--list-devices"]) == 0
    out = capsys.readouterr().out
    assert "  0  Built-in Microphone  (2 in; ALSA; default input)" in out
    assert "  2  USB Headset  (1 in, 2 out; ALSA)" in out


def test_voice_chat_names_a_missing_device(voice_chat: Any, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice())
    assert voice_chat.main(["--input-device", "Webcam", "--simulator"]) == 1
    assert "no input device named 'Webcam'" in capsys.readouterr().err


def test_voice_chat_through_a_microphone_and_speakers_hears_only_the_user(
        voice_chat: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    """Live mode: the sound devices are a simulated room (tests/support/echo_room.py) where the
    speakers' sound reaches the microphone; the user speaks once the microphone opens."""
    room = Room()

    def microphone(rate: int, channels: int, block: int, callback: Callable[..., None]) -> Any:
        stream = room.input(rate, channels, block, callback)
        room.say(user_voice() + bytes(2 * 16000))  # then a second of silence ends the utterance
        return stream

    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice(microphone, room.output))
    room.start()
    try:
        code = voice_chat.main(["--input-device", "default", "--output-device", "USB Headset", "--simulator",
                                "--transport", "websocket", "--output", str(tmp_path / "reply.wav")])
    finally:
        room.stop()
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Your microphone: Built-in Microphone" in out and "Your speaker: USB Headset" in out
    assert "Listening (echo cancellation on): say something" in out
    assert re.search(r"Character heard: \[audio (0\.9\d|1\.0\d) s\]", out), out  # the user, not the echo
    assert "Character: You said: [audio" in out and (tmp_path / "reply.wav").exists()
