"""Runnable Markdown snippets, shared by the README's and the documentation site's tests.

A block runs when the line before its opening fence is ``<!-- runnable -->`` (run with ``python``)
or ``<!-- runnable: pytest -->`` (saved as a test file and run with ``pytest``, which loads the
simulator's plugin from its entry point). Each runs in a fresh process, as a user would paste it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

_BLOCK = re.compile(r"<!-- runnable(?:: (?P<kind>\w+))? -->\n```python\n(?P<code>.*?)```", re.DOTALL)


def snippets(markdown: str) -> list[tuple[str, str]]:
    """``(kind, code)`` for every runnable block of ``markdown``; kind is ``"python"`` or ``"pytest"``."""
    return [(m.group("kind") or "python", m.group("code")) for m in _BLOCK.finditer(markdown)]


def run_snippet(kind: str, code: str, workdir: Path, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    """Run one snippet in a fresh interpreter with ``workdir`` as its working directory."""
    if kind == "pytest":
        target = workdir / "test_snippet.py"
        target.write_text(code, encoding="utf-8")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(target)]
    else:
        cmd = [sys.executable, "-c", code]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir, check=False)


def describe_failure(kind: str, code: str, proc: subprocess.CompletedProcess[str]) -> str:
    """The assertion message for a snippet that failed: its code and both output streams."""
    return f"{kind} snippet failed:\n{code}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
