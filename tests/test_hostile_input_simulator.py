"""Regression tests for issue 20 (hostile and careless input, round 3), simulator side.

Each test names the defect it covers; each failed on the code before its fix.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from simulator import Simulator
from simulator.__main__ import build_parser
from simulator.core import bounds, faults, limits, speech
from simulator.core.faults import LiveFault
from simulator.core.scenario import ScenarioError, load_scenario
from simulator.core.sessions import SimSession
from simulator.core.state import SimCore
from tests.sim_helpers import WS_TIMEOUT, close_all_sockets, etype, open_session, recv, send

pytestmark = pytest.mark.timeout(60)

HEADER = "X-Sim-Control-Token"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(transport_default="websocket") as server:
        yield server
    close_all_sockets()


def control(sim: Simulator, route: str, body: Any, method: str = "POST") -> requests.Response:
    return requests.request(method, f"{sim.url}/_sim/{route}", json=body, headers={HEADER: sim.control_token},
                            timeout=WS_TIMEOUT)


def healthz(sim: Simulator) -> int:
    return requests.get(f"{sim.url}/healthz", timeout=WS_TIMEOUT).status_code


# ============================================================================ 7. inject times


def test_inject_times_beyond_the_documented_maximum_is_refused_and_the_loop_stays_free(sim: Simulator) -> None:
    """Issue 20.7: POST /_sim/inject with times=1,000,000 froze the event loop for 10-30 s (/healthz
    stalled). It is now a 400 naming 'times' and its maximum."""
    info, _ws = open_session(sim)
    response = control(sim, "inject", {"code": "server.error", "session_id": info["session_id"],
                                       "times": 1_000_000})
    assert response.status_code == 400, response.text
    assert "times" in response.json()["detail"] and str(bounds.MAX_INJECT_TIMES) in response.json()["detail"]
    assert healthz(sim) == 200
    with pytest.raises(ValueError, match="times"):
        sim.inject("server.error", times=bounds.MAX_INJECT_TIMES + 1)
    with pytest.raises(ValueError, match="times"):
        sim.refuse_livekit_join(401, times=bounds.MAX_INJECT_TIMES + 1)
    with pytest.raises(ScenarioError, match="times"):
        load_scenario([{"at": 0, "inject": "server.error", "times": bounds.MAX_INJECT_TIMES + 1}])


def _send_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record, for every frame a session is asked to send, whether the session was open."""
    calls: list[bool] = []
    original = SimSession._send_text

    async def counting(self: SimSession, text: str) -> bool:
        calls.append(self.is_open)
        return await original(self, text)
    monkeypatch.setattr(SimSession, "_send_text", counting)
    return calls


def test_a_repeated_inject_yields_to_the_loop_between_frames(sim: Simulator,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20.7: apply_live looped without yielding, so nothing else ran on the loop until all
    ``times`` frames were sent."""
    info, _ws = open_session(sim)
    calls = _send_calls(monkeypatch)
    fault = faults.resolve("server.error", {})
    assert isinstance(fault, LiveFault)
    times = bounds.MAX_INJECT_TIMES

    async def run(core: SimCore) -> int:
        session = core.sessions[info["session_id"]]
        other_task_ran_at: list[int] = []
        asyncio.get_running_loop().call_soon(lambda: other_task_ran_at.append(len(calls)))
        await core.apply_live(fault, session, times)
        return other_task_ran_at[0]

    ran_at = sim._call(run)
    assert len(calls) == times
    assert ran_at <= 1, f"the loop ran nothing else until {ran_at} of {times} frames were sent"


def test_a_repeated_inject_stops_when_its_session_ends(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20.7: after its session ended, apply_live went on for every remaining repetition."""
    info, ws = open_session(sim)
    calls = _send_calls(monkeypatch)
    fault = faults.resolve("server.error", {})
    assert isinstance(fault, LiveFault)

    async def run(core: SimCore) -> None:
        session = core.sessions[info["session_id"]]
        core.end(session, 1000, "ended by the test")
        await core.apply_live(fault, session, bounds.MAX_INJECT_TIMES)

    sim._call(run)
    assert True not in calls and len(calls) <= 1, f"{len(calls)} sends after the session ended"
    ws.close()


def test_healthz_and_other_sessions_stay_responsive_during_the_largest_inject(sim: Simulator) -> None:
    """Issue 20.7: the largest accepted injection, on every live session, leaves /healthz and another
    session's reply served (bounded waits: the requests' own timeouts)."""
    _busy_info, busy = open_session(sim)
    _other_info, other = open_session(sim)
    response = control(sim, "inject", {"code": "server.error", "times": bounds.MAX_INJECT_TIMES})
    assert response.status_code == 200 and response.json()["affected"] == 2
    assert healthz(sim) == 200
    send(other, "user_text_message", {"text": "still there?"})
    seen: list[str] = []
    while "bot-turn-completed" not in seen:
        seen.append(etype(recv(other)))
    assert seen.count("error") <= bounds.MAX_INJECT_TIMES
    busy.close()


# ============================================================================ 8. every limit bounded


@pytest.mark.parametrize(("name", "value"), [
    ("token_ttl", 1e12), ("idle_timeout", 1e12), ("idle_warning_lead", 1e12), ("bot_ready_delay", 1e9),
    ("chunk_delay", 1e9), ("concurrency_limit", 10**12), ("speaker_limit", 10**12),
    ("connect_rate_limit", 10**12), ("usage_quota", 10**30),
])
def test_every_runtime_limit_has_an_upper_bound(sim: Simulator, name: str, value: float) -> None:
    """Issue 20.8: token_ttl=1e12 was accepted, then every LiveKit /connect answered 500 (a timedelta
    overflow). Each limit is refused beyond its documented range, naming it, in the constructor,
    set_limits() and the control API (400)."""
    values: dict[str, Any] = {name: value}
    with pytest.raises(ValueError, match=name):
        Simulator(**values)
    with pytest.raises(ValueError, match=name):
        sim.set_limits(**values)
    response = control(sim, "limits", {name: value})
    assert response.status_code == 400 and name in response.json()["detail"], response.text


@pytest.mark.parametrize(("name", "value"), [
    ("join_window", 1e12), ("connect_rate_window", 1e12), ("idle_warning_interval", 1e12),
    ("send_timeout", 1e12), ("max_conversations", 10**12),
])
def test_every_constructor_number_has_an_upper_bound(name: str, value: float) -> None:
    """Issue 20.8, same pattern: the constructor's other numbers had no upper bound either."""
    values: dict[str, Any] = {name: value}
    with pytest.raises(ValueError, match=name):
        Simulator(**values)


def test_the_cli_documents_and_enforces_every_limit_range(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 20.8: ``convai-sim --token-ttl 1e12`` started a simulator whose LiveKit connects all
    failed. ``--help`` states each range and a value outside it is an argparse error naming it."""
    parser = build_parser()
    for flag, value in (("--token-ttl", "1e12"), ("--concurrency-limit", "10000000"), ("--chunk-delay", "1e9"),
                        ("--send-timeout", "1e12"), ("--max-conversations", "10000000")):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(["--port", "0", flag, value])
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert f"argument {flag}" in error and flag[2:].replace("-", "_") in error
    help_text = " ".join(parser.format_help().split())
    for documented in ("(0, 86400]", "1..1000000", "[0, 60]"):
        assert documented in help_text


def test_the_largest_token_ttl_still_connects_on_livekit() -> None:
    """Issue 20.8: at the top of its range token_ttl issues a valid LiveKit token (no 500)."""
    with Simulator(token_ttl=limits.MAX_SECONDS) as sim:
        response = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id,
                                                              "transport": "livekit"},
                                 headers={"x-api-key": sim.api_key}, timeout=WS_TIMEOUT)
        assert response.status_code == 200, response.text
        assert response.json()["token"]


@pytest.mark.parametrize("body", [{"remaining_seconds": 10**30}, {"remaining_seconds": -1}])
def test_control_api_numbers_are_bounded(sim: Simulator, body: dict[str, Any]) -> None:
    """Issue 20.8, same pattern in the control API: remaining_seconds had no upper bound."""
    info, _ws = open_session(sim)
    response = control(sim, "idle-warning", {"session_id": info["session_id"], **body})
    assert response.status_code == 400 and "remaining_seconds" in response.json()["detail"], response.text


def test_scenario_numbers_are_bounded() -> None:
    """Issue 20.8, same pattern in scenarios: delays and triggers had no upper bound."""
    for step, field in (({"at": 1e12, "idle_warning": 1}, "at"), ({"at": 0, "delay": 1e12}, "delay"),
                        ({"at": 0, "idle_warning": 10**30}, "idle_warning"),
                        ({"after_messages": 10**30, "idle_warning": 1}, "after_messages")):
        with pytest.raises(ScenarioError, match=field):
            load_scenario([step])


# ============================================================================ what the HTTP layer echoes and logs


class _Records(logging.Handler):
    """Collects records; ``wait(predicate)`` blocks (bounded) until one matches."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def wait(self, predicate: Callable[[logging.LogRecord], bool]) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: any(map(predicate, self.records)), WS_TIMEOUT)


@pytest.fixture
def records() -> Iterator[_Records]:
    handler = _Records()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


def test_an_oversized_key_is_not_echoed_in_the_400_reply_or_the_log(sim: Simulator, records: _Records) -> None:
    """Issue 20: a 10 KB key had its first 100 bytes echoed into aiohttp's 400 reply (and logged)."""
    secret = "HUGE-KEY-SECRET-7731"
    key = secret + "k" * 10_000
    response = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id},
                             headers={"x-api-key": key}, timeout=WS_TIMEOUT)
    assert response.status_code == 400
    assert secret not in response.text and "k" * 50 not in response.text
    records.wait(lambda r: r.name in ("simulator.http", "aiohttp.server"))
    for record in records.records:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        assert secret not in text, text
    assert healthz(sim) == 200


def test_a_client_aborting_mid_connect_is_one_debug_line(sim: Simulator, records: _Records) -> None:
    """Issue 20: a client closing its socket in the middle of POST /connect was logged as an ERROR
    with a full traceback."""
    with socket.create_connection(("127.0.0.1", sim.port), timeout=WS_TIMEOUT) as raw:
        raw.sendall(b"POST /connect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Expect: 100-continue\r\nX-API-Key: " + sim.api_key.encode() + b"\r\nContent-Length: 1000\r\n\r\n")
        assert raw.recv(64).startswith(b"HTTP/1.1 100")  # the route has the request and waits for its body
        raw.sendall(b'{"character')
    records.wait(lambda r: r.name in ("simulator.http", "aiohttp.server"))
    about = [r for r in records.records if r.name in ("simulator.http", "aiohttp.server")]
    assert len(about) == 1, [r.getMessage() for r in about]
    assert about[0].levelno == logging.DEBUG and about[0].exc_info is None
    assert "went away" in about[0].getMessage()


# ============================================================================ one utterance's memory


def test_one_utterance_holds_a_bounded_number_of_bytes_whatever_its_format() -> None:
    """Issue 20: one utterance was bounded in seconds only: 60 s at 192 kHz x 8 channels is 184 MB."""
    heard: list[tuple[int, int, int]] = []
    most = [0]

    async def started() -> None:
        return None

    async def utterance(pcm: bytes, rate: int, channels: int) -> None:
        heard.append((len(pcm), rate, channels))

    async def speak() -> None:
        detector = speech.UtteranceDetector(started, utterance)
        rate, channels = 192_000, 8
        loud = (4000).to_bytes(2, "little", signed=True) * (rate // 10 * channels)  # 0.1 s, reused
        for _ in range(150):  # 15 s: 46 MB of audio
            await detector.feed(loud, rate, channels)
            most[0] = max(most[0], detector.buffered_bytes)
        await detector.finish()

    asyncio.run(speak())
    [(size, rate, channels)] = heard
    assert (rate, channels) == (192_000, 8)
    assert size <= speech.MAX_UTTERANCE_BYTES and most[0] <= speech.MAX_UTTERANCE_BYTES
