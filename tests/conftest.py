"""Suite-wide set-up: the loopback network shim, and no SDK or simulator thread may outlive a test.

On Linux the whole test run re-executes itself once under ``convai_sync/loopback_shim.c`` (built here
with the machine's C compiler), so the real ``livekit`` client can join the simulator over 127.0.0.1 and
nothing in the process can reach a non-loopback address. A missing compiler or an unshimmable ``livekit``
wheel fails the run; nothing is skipped.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from convai_sync.loopback import LoopbackShimError, ensure_loopback_preload
from tests.support.peers import Mode, Peer


def pytest_configure(config: pytest.Config) -> None:
    if not sys.platform.startswith("linux"):
        return  # the real-client LiveKit tests fail loudly there instead (they need the shim)
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)  # the re-executed run must own the real stdout/stderr
    try:
        ensure_loopback_preload()  # returns only once the shim is loaded (re-executes at most once)
    except LoopbackShimError as exc:
        raise pytest.UsageError(f"cannot run the suite under the loopback shim: {exc}") from exc
    finally:
        if capture is not None:
            capture.resume_global_capture()

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


@pytest.fixture
def peer_factory() -> Iterator[Callable[..., Peer]]:
    """``peer_factory(**mode)`` starts a misbehaving loopback :class:`Peer`; all stop after the test."""
    peers: list[Peer] = []

    def make(**mode: Any) -> Peer:
        peers.append(Peer(Mode(**mode)))
        return peers[-1]

    yield make
    for peer in peers:
        peer.stop()
