"""The documentation site: every guide's runnable code runs, and the generated reference pages cannot drift.

``mkdocs build --strict`` itself runs in ``.ci/run`` (a broken link, a missing page or an unresolved
docstring reference fails it); these tests cover what a build cannot see.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from convai_sync import CATALOG, DisconnectReason, ErrorCode
from tests.support.snippets import describe_failure, run_snippet, snippets

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GUIDES = sorted((DOCS / "guides").glob("*.md"))
SNIPPETS = [(page.name, kind, code) for page in GUIDES
            for kind, code in snippets(page.read_text(encoding="utf-8"))]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pages() -> dict[str, str]:
    return dict(_generator().pages())


def _table_rows(markdown: str) -> list[list[str]]:
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows[1:]]


def test_every_guide_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [page.name for page in GUIDES if f"guides/{page.name}" not in nav]
    assert not missing, f"guides missing from mkdocs.yml's nav: {missing}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("page", "kind", "code"), SNIPPETS, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(SNIPPETS)])
def test_guide_snippet_runs(page: str, kind: str, code: str, tmp_path: Path) -> None:
    proc = run_snippet(kind, code, tmp_path)
    assert proc.returncode == 0, f"{page}: " + describe_failure(kind, code, proc)


def test_the_error_catalog_page_lists_exactly_the_enum() -> None:
    rows = _table_rows(_pages()["reference/errors.md"])
    listed = [row[0].strip("`") for row in rows]
    assert listed == [code.value for code in ErrorCode]
    for row in rows:
        info = CATALOG[ErrorCode(row[0].strip("`"))]
        assert row[1] == info.stage.name
        assert row[2] == ("yes" if info.recoverable else "no")
        assert row[3] == ("yes" if info.retried else "no")
        assert row[4] == ("" if info.http_status is None else str(info.http_status))


def test_the_disconnect_reason_page_lists_exactly_the_enum() -> None:
    rows = _table_rows(_pages()["reference/disconnect-reasons.md"])
    assert [(int(row[0]), row[1].strip("`")) for row in rows] == [(int(r), r.name) for r in DisconnectReason]
    assert [row[2] == "yes" for row in rows] == [r.should_retry for r in DisconnectReason]


def test_the_cli_page_lists_every_flag() -> None:
    from simulator.__main__ import build_parser

    page = _pages()["reference/cli.md"]
    flags = [flag for action in build_parser()._actions for flag in action.option_strings]
    assert flags and all(f"`{flag}`" in page for flag in flags)


def test_no_docstring_cites_a_file_that_does_not_ship() -> None:
    unshipped = re.compile(r"\b(DESIGN|PROTOCOL|STYLE|LIVEKIT)\.md\b")
    offenders = [f"{path.relative_to(ROOT)}:{n}" for package in ("convai_sync", "simulator")
                 for path in sorted((ROOT / package).rglob("*.py"))
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if unshipped.search(line)]
    assert not offenders, f"cite the public Convai/LiveKit docs or a shipped page instead: {offenders}"


def test_the_channel_page_lists_every_channel() -> None:
    from convai_sync import ConvaiClient, ConvaiConfig

    rows = _table_rows(_pages()["reference/channels.md"])
    with ConvaiClient(ConvaiConfig(api_key="k", character_id="c")) as client:
        names = [channel.name for channel in client.events.channels()]
    assert [row[0].strip("`") for row in rows] == names and all(row[2] != "?" for row in rows)


def test_the_configuration_page_lists_every_field() -> None:
    import dataclasses

    from convai_sync import ConvaiConfig

    rows = _table_rows(_pages()["reference/configuration.md"])
    assert [row[0].strip("`") for row in rows] == [f.name for f in dataclasses.fields(ConvaiConfig)]


def test_every_python_block_of_a_guide_runs_or_says_why_not() -> None:
    unmarked = []
    for page in GUIDES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            before = lines[number - 1] if number else ""
            if line == "```python" and not before.startswith(("<!-- runnable", "<!-- not runnable: ")):
                unmarked.append(f"{page.name}:{number + 1}")
    assert not unmarked, f"mark each as <!-- runnable --> (tested) or <!-- not runnable: why -->: {unmarked}"
