"""pytest plugin (entry point ``pytest11``): simulator fixtures for any test suite.
The fixtures run on pytest's thread; each simulator runs its own loop thread.

``convai_simulator``: a running :class:`~simulator.Simulator` on 127.0.0.1 (function scope,
stopped after the test). ``convai_toxics``: switch network faults on
(``convai_toxics(sim, "latency", latency=0.2)``, as :meth:`~simulator.Simulator.toxic`); every one is
switched off when the test ends (see also :mod:`simulator.faultkit`). ``convai_simulator_factory``: call it
with constructor keywords (``concurrency_limit=1``, ``idle_timeout=0.5``, ``characters=[...]``,
``characters_file=...``…) to get more, each stopped after the test::

    def test_please_wait(convai_simulator_factory):
        sim = convai_simulator_factory(concurrency_limit=1)
        ...

``convai_fast_config``: a ``ConvaiConfig`` for ``convai_simulator`` with no retry or reconnect waits
and short deadlines (``sim.client_config(fast=True)``; :func:`simulator.fast.fast_overrides` lists
them), so a test of a retried 429 or a dropped session takes milliseconds, not the real delays::

    def test_rate_limited_connect_is_retried(convai_simulator, convai_fast_config):
        convai_simulator.inject(ErrorCode.CONNECTION_RATE_LIMITED, times=2)
        with ConvaiClient(convai_fast_config) as client:
            client.connect()            # attempts 1 and 2 get 429, attempt 3 connects, no waits

Characters: ``pytest --convai-characters FILE`` (or the ini option ``convai_characters = FILE``) loads a
characters file (``simulator.core.characters``; a shipped sample's name such as ``shopkeeper`` works too) into
every simulator these fixtures start, unless the test passes ``characters_file`` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from convai_sync import ConvaiConfig
    from simulator import Simulator
    from simulator.core.toxics import Toxic

CHARACTERS_OPTION = "convai_characters"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--convai-characters", dest=CHARACTERS_OPTION, metavar="FILE", default=None,
                     help="characters file (or shipped sample name) the convai_simulator fixtures load")
    parser.addini(CHARACTERS_OPTION, "characters file (or shipped sample name) the convai_simulator fixtures load",
                  default=None)


def characters_file_option(config: pytest.Config) -> str | None:
    """The ``--convai-characters`` / ``convai_characters`` value as a path (a shipped name resolved), or None."""
    from simulator.core.characters import characters_file_path

    value = config.getoption(CHARACTERS_OPTION) or config.getini(CHARACTERS_OPTION)
    return characters_file_path(str(value)) if value else None


@pytest.fixture
def convai_simulator_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Simulator]]:
    """Start simulators with custom limits; every one is stopped when the test ends."""
    from simulator import Simulator

    started: list[Simulator] = []
    characters_file = characters_file_option(request.config)

    def make(**kwargs: Any) -> Simulator:
        if characters_file is not None:
            kwargs.setdefault("characters_file", characters_file)
        sim = Simulator(**kwargs)
        sim.start()
        started.append(sim)
        return sim

    try:
        yield make
    finally:
        for sim in reversed(started):
            sim.stop()


@pytest.fixture
def convai_simulator(convai_simulator_factory: Callable[..., Simulator]) -> Simulator:
    """A running simulator with default accounts (``sim.client_config()`` connects to it)."""
    return convai_simulator_factory()


@pytest.fixture
def convai_fast_config(convai_simulator: Simulator) -> ConvaiConfig:
    """``convai_simulator.client_config(fast=True)``: zero retry delays and short timeouts for tests."""
    return convai_simulator.client_config(fast=True)


@pytest.fixture
def convai_toxics() -> Iterator[Callable[..., Toxic]]:
    """``add(sim, kind, session_id=None, **options) -> Toxic``; each toxic is removed when the test ends."""
    added: list[tuple[Simulator, Toxic]] = []

    def add(sim: Simulator, kind: str, session_id: str | None = None, **options: Any) -> Toxic:
        toxic = sim.toxic(kind, session_id, **options)
        added.append((sim, toxic))
        return toxic

    try:
        yield add
    finally:
        for sim, toxic in reversed(added):
            if sim.running:  # a stopped simulator's toxics went with it
                toxic.remove()
