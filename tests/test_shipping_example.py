"""The production pattern as shipped in examples/: ``token_backend.py`` (holds the key, mints tokens) runs as its
own process against a simulator, and ``shipped_game.py`` (no key) talks to the character through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from convai_sync import SessionStore
from simulator import Simulator

pytestmark = pytest.mark.timeout(90)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ROOT = EXAMPLES.parent


@pytest.fixture
def backend() -> Iterator[tuple[Simulator, str, subprocess.Popen[str]]]:
    with Simulator() as sim:
        env = {**os.environ, "CONVAI_API_KEY": sim.api_key, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, str(EXAMPLES / "token_backend.py"), "--convai-url", sim.url,
                                 "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("Token backend: POST "), line + (proc.stderr.read() if proc.stderr else "")
            url = line.split("POST ", 1)[1].strip().removesuffix("/convai-token")
            yield sim, url, proc
        finally:
            proc.terminate()
            proc.communicate(timeout=10)


def _game(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CONVAI_API_KEY", "CONVAI_CHARACTER_ID")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, str(EXAMPLES / "shipped_game.py"), *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)


def test_the_game_talks_through_the_backend_without_the_key(backend: tuple[Simulator, str, Any],
                                                            tmp_path: Path) -> None:
    sim, url, _proc = backend
    sessions = tmp_path / "sessions.json"
    args = ("--backend", url, "--convai-url", sim.url, "--character-id", sim.character_id, "--sessions", str(sessions))
    first = _game(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "[game] fetched token #1 from the backend" in first.stdout
    assert "turn 1 of our conversation" in first.stdout
    assert sim.api_key not in first.stdout + first.stderr
    second = _game(*args)  # the game restarts and resumes the conversation from sessions.json
    assert second.returncode == 0, second.stdout + second.stderr
    assert "turn 3 of our conversation" in second.stdout
    assert json.loads(sessions.read_text()) == {sim.character_id: SessionStore(sessions).get(sim.character_id)}
    assert sim.token_stats()["active"] == 0


def test_the_backend_refuses_to_start_without_a_key() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CONVAI_API_KEY"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, str(EXAMPLES / "token_backend.py"), "--port", "0"], capture_output=True,
                          text=True, timeout=30, env=env, check=False)
    assert proc.returncode == 2 and "CONVAI_API_KEY" in proc.stderr


def test_the_backend_answers_502_when_convai_refuses(backend: tuple[Simulator, str, Any]) -> None:
    import requests

    sim, url, _proc = backend
    sim.inject_rest_fault("mint", 429)
    answer = requests.post(f"{url}/convai-token", timeout=10)
    assert answer.status_code == 502 and "connection.rate_limited" in answer.json()["error"]
    assert requests.post(f"{url}/convai-token", timeout=10).status_code == 200
