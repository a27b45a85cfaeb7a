"""EventHub on its own (no session): delivery policies, ordering, unsubscribe, errors, bounds."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from convai_sync import (
    BotEmotion,
    BotText,
    EventDeliveryPolicy,
    EventHub,
    EventQueueOverflow,
    HandlerError,
    InvalidStateError,
    ServerMessage,
    Subscription,
)
from convai_sync.testing import Recorder
from tests.helpers_memory import WAIT, assert_no_convai_threads, run_async

pytestmark = pytest.mark.timeout(10)

P = EventDeliveryPolicy
#: ``new_hub(**EventHub keyword arguments)``: a hub closed after the test.
HubFactory = Callable[..., EventHub]
POLICIES = list(EventDeliveryPolicy)


@pytest.fixture(autouse=True)
def _no_convai_threads_survive() -> Iterator[None]:
    yield
    assert_no_convai_threads()


@pytest.fixture
def hubs() -> Iterator[list[EventHub]]:
    """Hubs created by a test; each is closed afterwards (its dispatcher joined)."""
    made: list[EventHub] = []
    yield made
    for hub in made:
        try:
            hub.close(2.0)
        except Exception:
            pass  # a strict hub re-raises a pending handler error here; the test checked it


@pytest.fixture
def new_hub(hubs: list[EventHub]) -> HubFactory:
    def make(**kw: Any) -> EventHub:
        hub = EventHub(**kw)
        hubs.append(hub)
        return hub
    return make


def text(i: int | str) -> BotText:
    return BotText(type="bot-llm-text", text=str(i))


def texts_of(events: Iterable[object]) -> list[str]:
    """The ``text`` of each event (``EventQueueOverflow.event`` is typed ``object``), each a BotText."""
    texts = []
    for event in events:
        assert isinstance(event, BotText), event
        texts.append(event.text)
    return texts


class Marker:
    """A private event type used to flush the BACKGROUND queue."""


def flush_background(hub: EventHub) -> None:
    """Return once every BACKGROUND delivery published before this call has run."""
    rec: Recorder[Marker] = Recorder()
    sub = hub.subscribe(Marker, rec, P.BACKGROUND)
    hub.publish(Marker())
    rec.wait(1, WAIT)
    sub.unsubscribe()


def deliver(hub: EventHub, policy: EventDeliveryPolicy, rec: Recorder[Any], count: int) -> None:
    """Make queued deliveries happen for ``policy`` and wait for ``count`` of them."""
    if policy is P.MAIN_THREAD:
        hub.pump()
    rec.wait(count, WAIT)


# ---------------------------------------------------------------------------- order & threads


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_fifo_order_per_policy(new_hub: HubFactory, policy: EventDeliveryPolicy) -> None:
    hub = new_hub()
    rec: Recorder[BotText] = Recorder()
    hub.subscribe(BotText, rec, policy)
    for i in range(200):
        hub.publish(text(i))
    deliver(hub, policy, rec, 200)
    assert [e.text for e in rec.events] == [str(i) for i in range(200)]


def test_immediate_runs_on_publishing_thread(new_hub: HubFactory) -> None:
    hub = new_hub()
    rec: Recorder[BotText] = Recorder()
    hub.subscribe(BotText, rec, P.IMMEDIATE)
    fut = run_async(lambda: hub.publish(text(1)), name="publisher-x")
    fut.result(WAIT)
    assert rec.threads == ["publisher-x"]


def test_background_runs_on_dispatch_thread(new_hub: HubFactory) -> None:
    hub = new_hub()
    rec: Recorder[BotText] = Recorder()
    hub.subscribe(BotText, rec, P.BACKGROUND)
    hub.publish(text(1))
    hub.publish(text(2))
    rec.wait(2, WAIT)
    assert len(set(rec.threads)) == 1
    assert rec.threads[0].startswith("convai-dispatch-")
    assert rec.threads[0] != threading.current_thread().name
    assert hub.dispatch_thread is not None and hub.dispatch_thread.name == rec.threads[0]


def test_main_thread_runs_on_pumping_thread_only_when_pumped(new_hub: HubFactory) -> None:
    hub = new_hub()
    rec: Recorder[BotText] = Recorder()
    hub.subscribe(BotText, rec, P.MAIN_THREAD)
    run_async(lambda: hub.publish(text(1)), name="publisher-y").result(WAIT)
    assert len(rec) == 0 and hub.pending == 1
    fut = run_async(hub.pump, name="pumper-z")
    assert fut.result(WAIT) == 1
    assert rec.threads == ["pumper-z"]


def test_no_dispatcher_thread_until_background_used(new_hub: HubFactory) -> None:
    hub = new_hub()
    hub.subscribe(BotText, Recorder[BotText](), P.IMMEDIATE)
    hub.subscribe(BotText, Recorder[BotText](), P.MAIN_THREAD)
    hub.publish(text(1))
    assert hub.dispatch_thread is None


def test_default_policy_applies(new_hub: HubFactory) -> None:
    hub = new_hub(default_policy=P.MAIN_THREAD)
    sub = hub.subscribe(BotText, Recorder[BotText]())
    assert sub.policy is P.MAIN_THREAD


# ---------------------------------------------------------------------------- matching


def test_base_type_receives_subclasses(new_hub: HubFactory) -> None:
    hub = new_hub()
    base: Recorder[ServerMessage] = Recorder()
    hub.subscribe(ServerMessage, base, P.IMMEDIATE)
    hub.publish(text("a"))
    hub.publish(BotEmotion(type="bot-emotion", emotion="joy"))
    assert [type(e) for e in base.events] == [BotText, BotEmotion]


def test_subtype_subscription_ignores_siblings(new_hub: HubFactory) -> None:
    hub = new_hub()
    only_text: Recorder[BotText] = Recorder()
    hub.subscribe(BotText, only_text, P.IMMEDIATE)
    hub.publish(BotEmotion(type="bot-emotion", emotion="joy"))
    hub.publish(ServerMessage(type="something-new"))
    hub.publish(text("x"))
    assert [e.text for e in only_text.events] == ["x"]


def test_subscribe_rejects_bad_arguments(new_hub: HubFactory) -> None:
    hub = new_hub()
    with pytest.raises(TypeError):
        hub.subscribe(BotText(type="t", text="x"), print)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hub.subscribe(BotText, "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hub.subscribe(BotText, print, "background")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- unsubscribe


def test_main_thread_queued_then_unsubscribed_is_not_delivered(new_hub: HubFactory) -> None:
    hub = new_hub()
    rec: Recorder[BotText] = Recorder()
    other: Recorder[BotText] = Recorder()
    sub = hub.subscribe(BotText, rec, P.MAIN_THREAD)
    hub.subscribe(BotText, other, P.MAIN_THREAD)
    hub.publish(text(1))
    hub.publish(text(2))
    sub.unsubscribe()
    hub.pump()
    assert rec.events == []
    assert len(other) == 2  # the pump did run the other subscription's deliveries
    assert hub.subscription_count == 1


def test_background_queued_then_unsubscribed_is_not_delivered(new_hub: HubFactory) -> None:
    hub = new_hub()
    entered, gate = threading.Event(), threading.Event()

    def blocker(event: BotEmotion) -> None:
        entered.set()
        gate.wait(WAIT)

    rec: Recorder[BotText] = Recorder()
    hub.subscribe(BotEmotion, blocker, P.BACKGROUND)
    sub = hub.subscribe(BotText, rec, P.BACKGROUND)
    hub.publish(BotEmotion(type="bot-emotion", emotion="hold"))
    assert entered.wait(WAIT)  # the dispatcher is now busy in blocker()
    hub.publish(text(1))  # queued behind it
    sub.unsubscribe()
    gate.set()
    flush_background(hub)
    assert rec.events == []


def test_unsubscribe_is_idempotent(new_hub: HubFactory) -> None:
    hub = new_hub()
    sub = hub.subscribe(BotText, Recorder[BotText](), P.IMMEDIATE)
    sub.unsubscribe()
    sub.unsubscribe()
    hub.unsubscribe(sub)
    assert not sub.active and hub.subscription_count == 0


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_unsubscribe_from_inside_handler(new_hub: HubFactory, policy: EventDeliveryPolicy) -> None:
    hub = new_hub()
    seen: Recorder[BotText] = Recorder()
    box: list[Subscription[BotText]] = []

    def handler(event: BotText) -> None:
        seen(event)
        box[0].unsubscribe()

    box.append(hub.subscribe(BotText, handler, policy))
    after: Recorder[BotText] = Recorder()
    hub.subscribe(BotText, after, policy)
    for i in range(3):
        hub.publish(text(i))
    deliver(hub, policy, after, 3)
    if policy is P.BACKGROUND:
        flush_background(hub)
    assert [e.text for e in seen.events] == ["0"]
    assert [e.text for e in after.events] == ["0", "1", "2"]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_subscribe_from_inside_handler(new_hub: HubFactory, policy: EventDeliveryPolicy) -> None:
    hub = new_hub()
    late: Recorder[BotText] = Recorder()
    first: Recorder[BotText] = Recorder()

    def handler(event: BotText) -> None:
        first(event)
        if event.text == "0":
            hub.subscribe(BotText, late, policy)

    hub.subscribe(BotText, handler, policy)
    hub.publish(text(0))
    deliver(hub, policy, first, 1)
    hub.publish(text(1))
    deliver(hub, policy, late, 1)
    assert [e.text for e in late.events] == ["1"]  # not the event being delivered when it subscribed
    assert [e.text for e in first.events] == ["0", "1"]


def test_subscription_context_manager(new_hub: HubFactory) -> None:
    hub = new_hub()
    rec: Recorder[BotText] = Recorder()
    with hub.subscribe(BotText, rec, P.IMMEDIATE) as sub:
        assert sub.active
        hub.publish(text("in"))
    hub.publish(text("out"))
    assert [e.text for e in rec.events] == ["in"]
    # mypy keeps ``sub.active`` narrowed to True from the assert inside the block (python/mypy#9457).
    assert not sub.active and hub.subscription_count == 0  # type: ignore[unreachable]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_once_delivers_one_event(new_hub: HubFactory, policy: EventDeliveryPolicy) -> None:
    hub = new_hub()
    rec: Recorder[BotText] = Recorder()
    all_: Recorder[BotText] = Recorder()
    sub = hub.once(BotText, rec, policy)
    hub.subscribe(BotText, all_, policy)
    for i in range(3):
        hub.publish(text(i))
    deliver(hub, policy, all_, 3)
    assert [e.text for e in rec.events] == ["0"]
    assert not sub.active


def test_decorator_on_subscribes_and_returns_function(new_hub: HubFactory) -> None:
    hub = new_hub()
    got: list[str] = []

    @hub.on(BotText, P.IMMEDIATE)
    def handler(event: BotText) -> None:
        got.append(event.text)

    assert callable(handler) and handler.__name__ == "handler"
    hub.publish(text("d"))
    assert got == ["d"]
    assert hub.subscription_count == 1


# ---------------------------------------------------------------------------- pump


def test_pump_max_events_and_return_count(new_hub: HubFactory) -> None:
    hub = new_hub()
    rec: Recorder[BotText] = Recorder()
    hub.subscribe(BotText, rec, P.MAIN_THREAD)
    for i in range(5):
        hub.publish(text(i))
    assert hub.pump(2) == 2
    assert [e.text for e in rec.events] == ["0", "1"]
    assert hub.pending == 3
    assert hub.pump(0) == 0
    assert hub.pump() == 3
    assert [e.text for e in rec.events] == ["0", "1", "2", "3", "4"]
    assert hub.pump() == 0


def test_reentrant_pump_returns_zero(new_hub: HubFactory) -> None:
    hub = new_hub()
    inner: list[int] = []
    rec: Recorder[BotText] = Recorder()

    def handler(event: BotText) -> None:
        rec(event)
        inner.append(hub.pump())

    hub.subscribe(BotText, handler, P.MAIN_THREAD)
    hub.publish(text(0))
    hub.publish(text(1))
    assert hub.pump() == 2
    assert inner == [0, 0]
    assert [e.text for e in rec.events] == ["0", "1"]  # in order, each exactly once


# ---------------------------------------------------------------------------- bounded queues


def test_main_thread_overflow_is_reported(new_hub: HubFactory, caplog: pytest.LogCaptureFixture) -> None:
    hub = new_hub(queue_size=3)
    reports: list[Any] = []
    hub.set_error_handler(reports.append)
    rec: Recorder[BotText] = Recorder()
    hub.subscribe(BotText, rec, P.MAIN_THREAD)
    with caplog.at_level(logging.WARNING, logger="convai_sync"):
        for i in range(5):
            hub.publish(text(i))
    overflows = [r for r in reports if isinstance(r, EventQueueOverflow)]
    assert [o.dropped for o in overflows] == [1, 2]
    assert all(o.policy == "main_thread" for o in overflows)
    assert texts_of(o.event for o in overflows) == ["3", "4"]
    assert hub.stats()["overflows"] == {"main_thread": 2}
    assert any("queue full" in r.getMessage() for r in caplog.records)
    assert hub.pump() == 3
    assert [e.text for e in rec.events] == ["0", "1", "2"]


def test_background_overflow_is_reported(new_hub: HubFactory) -> None:
    hub = new_hub(queue_size=2)
    reports: list[Any] = []
    hub.set_error_handler(reports.append)
    entered, gate = threading.Event(), threading.Event()

    def blocker(event: BotEmotion) -> None:
        entered.set()
        gate.wait(WAIT)

    hub.subscribe(BotEmotion, blocker, P.BACKGROUND)
    rec: Recorder[BotText] = Recorder()
    hub.subscribe(BotText, rec, P.BACKGROUND)
    hub.publish(BotEmotion(type="bot-emotion", emotion="hold"))
    assert entered.wait(WAIT)
    for i in range(4):
        hub.publish(text(i))
    gate.set()
    rec.wait(2, WAIT)
    assert hub.stats()["overflows"] == {"background": 2}
    assert texts_of(o.event for o in reports if isinstance(o, EventQueueOverflow)) == ["2", "3"]
    assert [e.text for e in rec.events] == ["0", "1"]


# ---------------------------------------------------------------------------- handler errors


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_raising_handler_logged_counted_and_later_handlers_run(
        new_hub: HubFactory, policy: EventDeliveryPolicy, caplog: pytest.LogCaptureFixture) -> None:
    hub = new_hub()
    reports: list[Any] = []
    hub.set_error_handler(reports.append)

    def bad_handler(event: BotText) -> None:
        raise ValueError("boom")

    after: Recorder[BotText] = Recorder()
    hub.subscribe(BotText, bad_handler, policy)
    hub.subscribe(BotText, after, policy)
    with caplog.at_level(logging.ERROR, logger="convai_sync"):
        hub.publish(text(1))
        hub.publish(text(2))
        deliver(hub, policy, after, 2)
        if policy is P.BACKGROUND:
            flush_background(hub)
    assert [e.text for e in after.events] == ["1", "2"]
    assert hub.handler_errors == 2 and hub.stats()["handler_errors"] == 2
    errors = [r for r in caplog.records if r.name == "convai_sync" and r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all(r.exc_info is not None and isinstance(r.exc_info[1], ValueError) for r in errors)
    assert "bad_handler" in errors[0].getMessage()
    assert "Traceback" in caplog.text and "boom" in caplog.text
    handler_errors = [r for r in reports if isinstance(r, HandlerError)]
    assert len(handler_errors) == 2 and "bad_handler" in handler_errors[0].handler
    if policy is P.BACKGROUND:
        assert hub.dispatch_thread is not None and hub.dispatch_thread.is_alive()


def test_error_handler_that_raises_is_contained(new_hub: HubFactory) -> None:
    hub = new_hub()

    def bad_report(item: object) -> None:
        raise RuntimeError("report failed")

    hub.set_error_handler(bad_report)
    hub.subscribe(BotText, lambda e: 1 / 0, P.IMMEDIATE)
    hub.publish(text(1))  # must not raise
    assert hub.handler_errors == 1


def _raiser(event: BotText) -> None:
    raise ValueError(f"strict {event.text}")


def test_strict_reraises_once_at_next_pump(new_hub: HubFactory) -> None:
    hub = new_hub(strict=True)
    hub.subscribe(BotText, _raiser, P.MAIN_THREAD)
    hub.publish(text(1))
    hub.publish(text(2))
    with pytest.raises(ValueError, match="strict 1"):  # the first exception, after draining
        hub.pump()
    assert hub.pending == 0
    assert hub.pump() == 0  # not raised a second time


def test_strict_reraises_once_at_next_wait_for(new_hub: HubFactory) -> None:
    hub = new_hub(strict=True)
    hub.subscribe(BotText, _raiser, P.IMMEDIATE)
    hub.publish(text(7))  # the publisher itself is not interrupted
    with pytest.raises(ValueError, match="strict 7"):
        hub.wait_for(BotEmotion, timeout=0.05)
    with pytest.raises(TimeoutError):
        hub.wait_for(BotEmotion, timeout=0.05)


def test_strict_reraises_once_at_close(new_hub: HubFactory) -> None:
    hub = new_hub(strict=True)
    hub.subscribe(BotText, _raiser, P.BACKGROUND)
    hub.publish(text(3))
    flush_background(hub)
    with pytest.raises(ValueError, match="strict 3"):
        hub.close(2.0)
    hub.close(2.0)  # nothing left to raise
    assert hub.dispatch_thread is not None and not hub.dispatch_thread.is_alive()


def test_non_strict_never_reraises(new_hub: HubFactory) -> None:
    hub = new_hub()
    hub.subscribe(BotText, _raiser, P.MAIN_THREAD)
    hub.publish(text(1))
    assert hub.pump() == 1
    hub.close(2.0)


# ---------------------------------------------------------------------------- wait_for


def test_wait_for_on_publisher_thread_raises_at_once(new_hub: HubFactory) -> None:
    hub = new_hub()
    ident = threading.get_ident()
    hub.mark_publisher_thread(ident)
    try:
        with pytest.raises(InvalidStateError) as info:
            hub.wait_for(BotText, timeout=30.0)  # would hang for 30 s if not refused
        assert info.value.error_code == "session.invalid_state"
    finally:
        hub.mark_publisher_thread(ident, active=False)
    assert hub.subscription_count == 0


def test_wait_for_timeout(new_hub: HubFactory) -> None:
    hub = new_hub()
    with pytest.raises(TimeoutError):
        hub.wait_for(BotText, timeout=0.05)
    assert hub.subscription_count == 0  # its internal subscription is removed


def test_wait_for_gets_matching_event_under_main_thread_default_without_pump(new_hub: HubFactory) -> None:
    hub = new_hub(default_policy=P.MAIN_THREAD)
    waiting = run_async(lambda: hub.wait_for(BotText, lambda e: e.text == "yes", timeout=WAIT))
    # Publish until the waiter has subscribed and caught the matching event.
    hub.subscribe(BotText, Recorder[BotText](), P.MAIN_THREAD)
    done = threading.Event()
    waiting.add_done_callback(lambda f: done.set())
    while not done.is_set():
        hub.publish(text("no"))
        hub.publish(text("yes"))
        done.wait(0.01)
    assert waiting.result(WAIT).text == "yes"


# ---------------------------------------------------------------------------- budget & close


def test_slow_immediate_handler_warns_with_its_name(new_hub: HubFactory, caplog: pytest.LogCaptureFixture) -> None:
    hub = new_hub(immediate_budget=0.001)

    def slow_handler_name(event: BotText) -> None:
        threading.Event().wait(0.01)  # sleep-ok: the handler must run longer than the budget

    hub.subscribe(BotText, slow_handler_name, P.IMMEDIATE)
    with caplog.at_level(logging.WARNING, logger="convai_sync"):
        hub.publish(text(1))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "IMMEDIATE" in r.getMessage()]
    assert len(warnings) == 1
    assert "slow_handler_name" in warnings[0].getMessage()
    assert hub.stats()["slow_immediate_handlers"] == 1


def test_fast_immediate_handler_does_not_warn(new_hub: HubFactory, caplog: pytest.LogCaptureFixture) -> None:
    hub = new_hub(immediate_budget=5.0)
    hub.subscribe(BotText, lambda e: None, P.IMMEDIATE)
    with caplog.at_level(logging.WARNING, logger="convai_sync"):
        hub.publish(text(1))
    assert hub.slow_handlers == 0
    assert not [r for r in caplog.records if "IMMEDIATE" in r.getMessage()]


def test_close_joins_dispatcher_after_queued_deliveries(new_hub: HubFactory) -> None:
    hub = new_hub()
    rec: Recorder[BotText] = Recorder()
    hub.subscribe(BotText, rec, P.BACKGROUND)
    for i in range(50):
        hub.publish(text(i))
    thread = hub.dispatch_thread
    assert thread is not None and thread.is_alive()
    hub.close(WAIT)
    assert not thread.is_alive()
    assert len(rec) == 50  # queued deliveries ran before the dispatcher stopped


def test_close_drops_main_thread_leftovers(new_hub: HubFactory) -> None:
    hub = new_hub()
    rec: Recorder[BotText] = Recorder()
    hub.subscribe(BotText, rec, P.MAIN_THREAD)
    hub.publish(text(1))
    hub.close(1.0)
    assert hub.pending == 0 and hub.pump() == 0 and rec.events == []
