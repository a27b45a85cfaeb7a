"""The README's runnable snippets run as a new user would paste them (each in a fresh process).

A block runs when the line before its opening fence is ``<!-- runnable -->`` (run with ``python``)
or ``<!-- runnable: pytest -->`` (saved as a test file and run with ``pytest``, which loads the
simulator's plugin from its entry point).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"<!-- runnable(?:: (?P<kind>\w+))? -->\n```python\n(?P<code>.*?)```", re.DOTALL)


def snippets() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [(m.group("kind") or "python", m.group("code")) for m in _BLOCK.finditer(text)]


def test_the_readme_has_runnable_snippets() -> None:
    kinds = [kind for kind, _ in snippets()]
    assert "python" in kinds and "pytest" in kinds


@pytest.mark.parametrize(("kind", "code"), snippets(), ids=lambda v: v if v in ("python", "pytest") else "")
def test_readme_snippet_runs(kind: str, code: str, tmp_path: Path) -> None:
    if kind == "pytest":
        target = tmp_path / "test_readme_snippet.py"
        target.write_text(code, encoding="utf-8")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(target)]
    else:
        cmd = [sys.executable, "-c", code]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=100, cwd=tmp_path, check=False)
    assert proc.returncode == 0, f"{kind} snippet failed:\n{code}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
