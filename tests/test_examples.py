"""Every example runs as a user would run it (no arguments, embedded simulator) and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: example -> lines its user-facing output must contain
EXPECTED = {
    "quickstart.py": ["[state] CONNECTING -> CONNECTED", "Character: You said: Hello! Who are you?",
                      "[state] DISCONNECTING -> DISCONNECTED"],
    "game_loop.py": ["thinking", "speaking", "OK: all"],
    "error_banner.py": ["Reconnecting", "Please reload"],
    "please_wait.py": ["Please wait", "Slot free"],
    "session_timer.py": ["Session ends in", "session.duration_limit_reached"],
    "idle_countdown.py": ["disconnected in", "session.idle_timeout"],
}


def test_every_example_is_covered() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_against_the_embedded_simulator(script: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CONVAI_API_KEY", "CONVAI_CHARACTER_ID")}
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True,
                          timeout=45, env=env, cwd=EXAMPLES.parent, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for line in EXPECTED[script]:
        assert line in proc.stdout, f"{script} did not print {line!r}:\n{proc.stdout}"
