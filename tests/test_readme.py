"""The README's runnable snippets run as a new user would paste them (each in a fresh process).

A block runs when the line before its opening fence is ``<!-- runnable -->`` (run with ``python``)
or ``<!-- runnable: pytest -->`` (saved as a test file and run with ``pytest``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.snippets import describe_failure, run_snippet, snippets

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
README = snippets((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_runnable_snippets() -> None:
    kinds = [kind for kind, _ in README]
    assert "python" in kinds and "pytest" in kinds


@pytest.mark.parametrize(("kind", "code"), README, ids=lambda v: v if v in ("python", "pytest") else "")
def test_readme_snippet_runs(kind: str, code: str, tmp_path: Path) -> None:
    proc = run_snippet(kind, code, tmp_path)
    assert proc.returncode == 0, describe_failure(kind, code, proc)
