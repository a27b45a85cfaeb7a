"""The pytest plugin's fixtures, used as a user would.

The plugin registers itself through the ``pytest11`` entry point once the package is installed
(the README's set-up command and ``.ci/run`` both ``pip install -e .``), exactly as for a user.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from convai_sync import ConcurrencyLimitError, ConvaiClient, ConvaiConfig, ErrorCode, RetryPolicy
from simulator import Simulator

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(20)

ROOT = Path(__file__).resolve().parents[1]


def test_convai_simulator_fixture(convai_simulator: Simulator) -> None:
    assert convai_simulator.running
    with ConvaiClient(convai_simulator.client_config()) as client:
        client.connect(timeout=5)
        assert "ping" in client.ask("ping", timeout=5).text
        assert [s.session_id for s in convai_simulator.sessions] == [client.session_id]


def test_convai_simulator_factory_custom_limits(convai_simulator_factory: Callable[..., Simulator]) -> None:
    strict = convai_simulator_factory(concurrency_limit=1, api_keys=("team-key",))
    relaxed = convai_simulator_factory()
    assert strict.port != relaxed.port and strict.api_key == "team-key"
    with ConvaiClient(strict.client_config()) as first:
        first.connect(timeout=5)
        config = strict.client_config(retry_policy=RetryPolicy(max_attempts=1))
        with ConvaiClient(config) as second, pytest.raises(ConcurrencyLimitError):
            second.connect(timeout=5)
        with ConvaiClient(relaxed.client_config()) as other:
            other.connect(timeout=5)


USER_SUITE = '''
import threading

from convai_sync import ConvaiClient

seen = []


def test_talks_to_the_fixture(convai_simulator):
    seen.append(convai_simulator)
    with ConvaiClient(convai_simulator.client_config()) as client:
        client.connect(timeout=5)
        assert client.ask("hi", timeout=5).text


def test_factory_takes_limits_and_scenarios(convai_simulator_factory):
    sim = convai_simulator_factory(usage_quota=1, scenario="quota_exhausted")
    assert sim.scenario.name == "quota_exhausted" and sim.limits["usage_quota"] == 1
    seen.append(sim)


def test_each_simulator_was_stopped_after_its_test():
    assert len(seen) == 2 and not any(sim.running for sim in seen)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("sim-")]
'''


def test_plugin_in_a_user_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    pytester.makepyfile(test_user_suite=USER_SUITE)
    # No "-p": the installed package's pytest11 entry point provides the fixtures.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                           "-q", timeout=15)
    result.assert_outcomes(passed=3)


def test_fast_config_retries_a_rate_limited_connect_without_waiting(convai_simulator: Simulator,
                                                                      convai_fast_config: ConvaiConfig) -> None:
    assert convai_fast_config.url == convai_simulator.url
    assert set(convai_fast_config.retry_policy.delays) == {0.0}
    assert set(convai_fast_config.reconnect_policy.delays) == {0.0}
    assert convai_fast_config.reconnect_policy.server_shutdown_delay == 0.0
    assert convai_fast_config.connection_timeout < ConvaiConfig.connection_timeout
    convai_simulator.inject(ErrorCode.CONNECTION_RATE_LIMITED, times=2)
    # The default policy waits 1 s, then 2 s, before attempts 2 and 3: more than this whole deadline.
    default_waits = sum(RetryPolicy().delay_before(n) for n in (2, 3))
    with ConvaiClient(convai_fast_config) as client:
        client.connect(timeout=default_waits - 0.5)
        assert client.diagnostics()["connect_attempts"] == 3


def test_fast_config_keywords_win(convai_simulator: Simulator) -> None:
    config = convai_simulator.client_config(fast=True, connection_timeout=7.0, transport="websocket")
    assert config.connection_timeout == 7.0 and set(config.retry_policy.delays) == {0.0}
