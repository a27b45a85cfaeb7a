"""Suite-wide fixtures: no SDK or simulator thread may outlive a test."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

_PREFIXES = ("convai-", "sim-")


def _ours() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(_PREFIXES) and t.is_alive()]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a ``convai-*`` / ``sim-*`` thread alive (slack_sdk #1873)."""
    before = set(_ours())
    yield
    leaked = []
    for thread in _ours():
        if thread in before:
            continue
        thread.join(2.0)  # a thread that is already stopping gets a short grace period
        if thread.is_alive():
            leaked.append(thread.name)
    assert not leaked, f"threads leaked by this test: {leaked}"
