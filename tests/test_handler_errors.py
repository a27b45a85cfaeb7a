"""A user handler's exception is visible by default and routable when the app wants control.

Regression: with no logging configured (a plain script), a typo in a BACKGROUND or MAIN_THREAD
handler printed nothing: the record went to the library's NullHandler and only
``diagnostics()`` counted it. Now it goes to ``threading.excepthook`` ("Exception in thread …"
on stderr by default) unless the app routes it (error handler, ``on_handler_error``
subscription, a logging handler, or ``strict_handlers``), and is never printed twice.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from convai_sync import BotText, ConvaiClient, ConvaiConfig, EventDeliveryPolicy, HandlerError
from convai_sync.testing import Recorder
from simulator import Simulator

pytestmark = pytest.mark.timeout(15)

P = EventDeliveryPolicy
POLICIES = list(EventDeliveryPolicy)
WAIT = 5.0
Quiet = Callable[[], None]


class HookRecorder:
    """Stands in for an application's own ``threading.excepthook``."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.called = threading.Event()

    def __call__(self, args: Any) -> None:
        self.calls.append(args)
        self.called.set()


def text(value: str) -> BotText:
    return BotText(type="bot-llm-text", text=value)


def typo_handler(event: BotText) -> None:
    raise NameError(f"name 'pirnt' is not defined ({event.text})")


@pytest.fixture
def no_logging(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it first in the test body: the app configured no logging (only our NullHandler).

    pytest attaches its capture handlers to the root logger and to every non-propagating
    logger when the test body starts, so this cannot be done during fixture setup.
    """
    def apply() -> None:
        logger = logging.getLogger("convai_sync")
        monkeypatch.setattr(logger, "handlers", [logging.NullHandler()])
        monkeypatch.setattr(logger, "propagate", False)
    return apply


@pytest.fixture
def default_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's default ``threading.excepthook`` (pytest installs its own during tests)."""
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)


@pytest.fixture
def app_hook(monkeypatch: pytest.MonkeyPatch) -> HookRecorder:
    hook = HookRecorder()
    monkeypatch.setattr(threading, "excepthook", hook)
    return hook


@pytest.fixture
def client() -> Iterator[ConvaiClient]:
    c = ConvaiClient(ConvaiConfig(api_key="test-key", character_id="char", close_timeout=2.0))
    yield c
    c.close()


def deliver(client: ConvaiClient, policy: EventDeliveryPolicy, *events: object) -> None:
    """Publish and make sure every delivery under ``policy`` has run when this returns."""
    hub = client.events.raw
    for event in events:
        hub.publish(event)
    if policy is P.MAIN_THREAD:
        client.pump()
    elif policy is P.BACKGROUND:
        flushed = threading.Event()
        sub = hub.subscribe(object, lambda e: flushed.set() if e == "flush" else None, P.BACKGROUND)
        hub.publish("flush")  # FIFO: every earlier delivery has run once this one does
        assert flushed.wait(WAIT)
        sub.unsubscribe()


def handler_thread(client: ConvaiClient, policy: EventDeliveryPolicy) -> str:
    if policy is P.BACKGROUND:
        thread = client.events.raw.dispatch_thread
        assert thread is not None
        return thread.name
    return threading.current_thread().name  # IMMEDIATE: the publisher; MAIN_THREAD: the pumper


# ---- visible by default ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_visible_on_stderr_by_default(client: ConvaiClient, policy: EventDeliveryPolicy, no_logging: Quiet,
                                      default_hook: None, capsys: pytest.CaptureFixture[str]) -> None:
    no_logging()
    client.events.raw.subscribe(BotText, typo_handler, policy)
    deliver(client, policy, text("1"))
    err = capsys.readouterr().err
    assert f"Exception in thread {handler_thread(client, policy)}" in err
    assert "Traceback (most recent call last)" in err and "typo_handler" in err
    assert "NameError: name 'pirnt' is not defined (1)" in err
    assert err.count("Traceback") == 1  # once, not also through logging
    assert client.diagnostics()["events"]["handler_errors"] == 1


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_goes_through_the_apps_own_excepthook(client: ConvaiClient, policy: EventDeliveryPolicy,
                                              no_logging: Quiet, app_hook: HookRecorder) -> None:
    no_logging()
    client.events.raw.subscribe(BotText, typo_handler, policy)
    deliver(client, policy, text("1"), text("2"))
    assert [type(a.exc_value) for a in app_hook.calls] == [NameError, NameError]
    args = app_hook.calls[0]
    assert args.exc_type is NameError and args.exc_traceback is args.exc_value.__traceback__
    assert args.thread is not None and args.thread.name == handler_thread(client, policy)
    assert client.diagnostics()["events"]["handler_errors"] == 2


# ---- routed: not printed ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_on_handler_error_channel_receives_it_and_nothing_is_printed(
        client: ConvaiClient, policy: EventDeliveryPolicy, no_logging: Quiet, app_hook: HookRecorder,
        capsys: pytest.CaptureFixture[str]) -> None:
    no_logging()
    reports: Recorder[HandlerError] = Recorder()
    client.events.on_handler_error.subscribe(reports, P.IMMEDIATE)
    client.events.raw.subscribe(BotText, typo_handler, policy)
    event = text("1")
    deliver(client, policy, event)
    report = reports.wait(1, WAIT)[0]
    assert report.event is event and isinstance(report.exception, NameError)
    assert report.handler.endswith("typo_handler") and report.policy is policy
    assert report.thread == handler_thread(client, policy)
    assert app_hook.calls == [] and capsys.readouterr().err == ""
    assert client.diagnostics()["events"]["handler_errors"] == 1


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_channel_delivers_under_its_own_policy(client: ConvaiClient, policy: EventDeliveryPolicy,
                                               no_logging: Quiet, app_hook: HookRecorder) -> None:
    no_logging()
    seen: list[str] = []
    done = threading.Event()

    def on_error(report: HandlerError) -> None:
        seen.append(threading.current_thread().name)
        done.set()

    client.events.on_handler_error.subscribe(on_error, policy)
    client.events.raw.subscribe(BotText, typo_handler, P.IMMEDIATE)
    client.events.raw.publish(text("1"))
    if policy is P.MAIN_THREAD:
        assert seen == []  # queued until the host pumps
        assert client.pump() == 1
    assert done.wait(WAIT)
    assert seen == [handler_thread(client, policy)]
    assert app_hook.calls == []


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_error_handler_receives_it_and_nothing_is_printed(
        client: ConvaiClient, policy: EventDeliveryPolicy, no_logging: Quiet, app_hook: HookRecorder,
        capsys: pytest.CaptureFixture[str]) -> None:
    no_logging()
    reports: list[object] = []
    client.events.raw.set_error_handler(reports.append)
    client.events.raw.subscribe(BotText, typo_handler, policy)
    deliver(client, policy, text("1"))
    assert len(reports) == 1 and isinstance(reports[0], HandlerError)
    assert app_hook.calls == [] and capsys.readouterr().err == ""


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_configured_logging_prints_it_once_and_the_hook_stays_quiet(
        client: ConvaiClient, policy: EventDeliveryPolicy, no_logging: Quiet, app_hook: HookRecorder,
        capsys: pytest.CaptureFixture[str]) -> None:
    no_logging()
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger("convai_sync").addHandler(handler)  # the no_logging fixture restores the list
    client.events.raw.subscribe(BotText, typo_handler, policy)
    deliver(client, policy, text("1"))
    err = capsys.readouterr().err
    assert "event handler" in err and "typo_handler" in err and err.count("Traceback") == 1
    assert app_hook.calls == []


def test_logging_handler_above_error_level_does_not_count(client: ConvaiClient, no_logging: Quiet,
                                                          app_hook: HookRecorder) -> None:
    no_logging()
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.CRITICAL)  # would not print the ERROR record
    logging.getLogger("convai_sync").addHandler(handler)
    client.events.raw.subscribe(BotText, typo_handler, P.IMMEDIATE)
    client.events.raw.publish(text("1"))
    assert len(app_hook.calls) == 1


def test_strict_handlers_reraise_on_the_caller_and_do_not_print(no_logging: Quiet, app_hook: HookRecorder) -> None:
    no_logging()
    strict = ConvaiClient(ConvaiConfig(api_key="k", character_id="c", strict_handlers=True, close_timeout=2.0))
    try:
        strict.events.raw.subscribe(BotText, typo_handler, P.MAIN_THREAD)
        strict.events.raw.publish(text("1"))
        with pytest.raises(NameError, match="pirnt"):
            strict.pump()
        assert app_hook.calls == []
    finally:
        strict.close()


# ---- no recursion, no silence ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_raising_handler_error_subscriber_does_not_recurse(
        client: ConvaiClient, policy: EventDeliveryPolicy, no_logging: Quiet, app_hook: HookRecorder) -> None:
    no_logging()
    calls: list[HandlerError] = []

    def broken_reporter(report: HandlerError) -> None:
        calls.append(report)
        raise RuntimeError("reporter is broken too")

    client.events.on_handler_error.subscribe(broken_reporter, policy)
    client.events.raw.subscribe(BotText, typo_handler, P.IMMEDIATE)
    deliver(client, policy, text("1"))
    assert len(calls) == 1  # the reporter's own failure is not published back to it
    # The original was routed (the reporter got it); the reporter's own error had nowhere to go.
    assert [type(a.exc_value) for a in app_hook.calls] == [RuntimeError]
    assert client.diagnostics()["events"]["handler_errors"] == 2


def test_raising_error_handler_is_surfaced(client: ConvaiClient, no_logging: Quiet, app_hook: HookRecorder) -> None:
    no_logging()
    def broken(report: object) -> None:
        raise RuntimeError("error handler bug")

    client.events.raw.set_error_handler(broken)
    client.events.raw.subscribe(BotText, typo_handler, P.IMMEDIATE)
    client.events.raw.publish(text("1"))  # must not raise
    assert [str(a.exc_value) for a in app_hook.calls] == ["error handler bug"]


def test_unsubscribing_from_the_channel_gives_control_back(client: ConvaiClient, no_logging: Quiet,
                                                           app_hook: HookRecorder) -> None:
    no_logging()
    sub = client.events.on_handler_error.subscribe(lambda r: None, P.IMMEDIATE)
    client.events.raw.subscribe(BotText, typo_handler, P.IMMEDIATE)
    client.events.raw.publish(text("1"))
    assert app_hook.calls == []
    sub.unsubscribe()
    client.events.raw.publish(text("2"))
    assert len(app_hook.calls) == 1


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_on_handler_error_end_to_end(policy: EventDeliveryPolicy, no_logging: Quiet, app_hook: HookRecorder) -> None:
    no_logging()
    reports: Recorder[HandlerError] = Recorder()
    with Simulator() as sim, ConvaiClient(sim.client_config(delivery_policy=policy)) as real:
        real.events.on_handler_error.subscribe(reports)
        real.events.on_bot_ready.subscribe(lambda event: 1 / 0)
        real.connect(timeout=10)
        if policy is P.MAIN_THREAD:
            real.pump()  # the failing handler, then (queued behind it) the report
            real.pump()
        report = reports.wait(1, WAIT)[0]
        assert isinstance(report.exception, ZeroDivisionError) and report.policy is policy
        assert real.diagnostics()["events"]["handler_errors"] == 1
    assert app_hook.calls == []


# ---- a real plain script --------------------------------------------------------------------------

SCRIPT = textwrap.dedent("""
    from convai_sync import ConvaiClient
    from simulator import Simulator

    def on_ready(event):
        pirnt("ready!")  # the typo an app makes

    with Simulator() as sim, ConvaiClient(sim.client_config()) as client:
        client.events.on_bot_ready.subscribe(on_ready)      # BACKGROUND, the default
        client.connect(timeout=10)
        client.ask("hello", timeout=10)
    print("script finished")
""")


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.timeout(90)
def test_plain_script_shows_the_handler_typo_on_stderr() -> None:
    result = _run(SCRIPT)
    assert result.returncode == 0, result.stderr
    assert "script finished" in result.stdout
    assert result.stderr.count("Exception in thread convai-dispatch-") == 1, result.stderr
    assert "NameError: name 'pirnt' is not defined" in result.stderr
    assert result.stderr.count("Traceback") == 1


@pytest.mark.timeout(90)
def test_plain_script_with_basic_config_prints_it_once_through_logging() -> None:
    result = _run("import logging\nlogging.basicConfig()\n" + SCRIPT)
    assert result.returncode == 0, result.stderr
    assert "Exception in thread" not in result.stderr
    assert "ERROR:convai_sync:event handler" in result.stderr and result.stderr.count("Traceback") == 1


def test_catch_all_subscriber_receives_the_report_but_does_not_silence_it(
        client: ConvaiClient, no_logging: Quiet, app_hook: HookRecorder) -> None:
    no_logging()
    everything: list[object] = []
    client.events.raw.subscribe(object, everything.append, P.IMMEDIATE)
    client.events.raw.subscribe(BotText, typo_handler, P.IMMEDIATE)
    client.events.raw.publish(text("1"))
    assert [type(e) for e in everything] == [BotText, HandlerError]
    assert len(app_hook.calls) == 1
