"""Audio in the hub's queues: bounded per queue, drop-oldest, audio only, order kept, barge-in drops."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from convai_sync import AudioFrame, BotText, EventDeliveryPolicy, EventHub, EventQueueOverflow
from convai_sync.testing import Recorder
from tests.helpers_memory import WAIT, assert_no_convai_threads

pytestmark = pytest.mark.timeout(10)

P = EventDeliveryPolicy
QUEUED = [P.MAIN_THREAD, P.BACKGROUND]


def frame(i: int, turn_id: int | None = 1) -> AudioFrame:
    """A 10 ms mono frame at 16 kHz whose samples encode ``i`` (so drops are visible)."""
    return AudioFrame(data=i.to_bytes(2, "little") * 160, sample_rate=16000, num_channels=1,
                      samples_per_channel=160, timestamp=float(i), turn_id=turn_id)


def index(f: AudioFrame) -> int:
    return int.from_bytes(f.data[:2], "little")


@pytest.fixture
def hubs() -> Iterator[list[EventHub]]:
    made: list[EventHub] = []
    yield made
    for hub in made:
        hub.close(2.0)
    assert_no_convai_threads()


class Gate:
    """A BACKGROUND handler that blocks on its first event until released (a slow handler)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, event: BotText) -> None:
        if event.text == "hold":
            self.entered.set()
            self.release.wait(WAIT)


def stall(hub: EventHub, policy: EventDeliveryPolicy) -> Gate | None:
    """Make ``policy``'s queue stop draining: no pump for MAIN_THREAD, a blocked handler for BACKGROUND."""
    if policy is P.MAIN_THREAD:
        return None
    gate = Gate()
    hub.subscribe(BotText, gate, P.BACKGROUND)
    hub.publish(BotText(type="bot-llm-text", text="hold"))
    assert gate.entered.wait(WAIT)
    return gate


def resume(hub: EventHub, policy: EventDeliveryPolicy, gate: Gate | None) -> None:
    if policy is P.MAIN_THREAD:
        hub.pump()
    else:
        assert gate is not None
        gate.release.set()


@pytest.mark.parametrize("policy", QUEUED, ids=lambda p: p.name)
def test_stalled_queue_loses_only_the_oldest_audio(hubs: list[EventHub], policy: EventDeliveryPolicy,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    hub = EventHub(queue_size=100, audio_queue_size=20)
    hubs.append(hub)
    overflow_reports: list[Any] = []
    hub.set_error_handler(overflow_reports.append)
    gate = stall(hub, policy)
    got: Recorder[Any] = Recorder()
    hub.subscribe(AudioFrame, got, policy)
    hub.subscribe(BotText, got, policy)
    with caplog.at_level(logging.WARNING, logger="convai_sync"):
        for i in range(500):
            hub.publish(frame(i))
            if i % 50 == 0:
                hub.publish(BotText(type="bot-llm-text", text=f"t{i}"))
    resume(hub, policy, gate)
    got.wait(20 + 10, WAIT)
    texts = [e.text for e in got.of(BotText)]
    assert texts == [f"t{i}" for i in range(0, 500, 50)]  # every control event survives
    assert [index(f) for f in got.of(AudioFrame)] == list(range(480, 500))  # the newest 20 frames
    assert hub.stats()["audio_dropped"] == {policy.value: 480}
    assert hub.stats()["overflows"] == {}
    assert not [r for r in overflow_reports if isinstance(r, EventQueueOverflow)]
    warnings = [r for r in caplog.records if "audio queue full" in r.getMessage()]
    assert len(warnings) == 1  # once per burst, not once per frame


def test_control_events_keep_their_own_bound(hubs: list[EventHub]) -> None:
    hub = EventHub(queue_size=5, audio_queue_size=3)
    hubs.append(hub)
    got: Recorder[Any] = Recorder()
    hub.subscribe(AudioFrame, got, P.MAIN_THREAD)
    hub.subscribe(BotText, got, P.MAIN_THREAD)
    for i in range(100):
        hub.publish(frame(i))
    for i in range(5):
        hub.publish(BotText(type="bot-llm-text", text=str(i)))
    assert hub.stats()["overflows"] == {}  # the audio backlog took no room from them
    hub.publish(BotText(type="bot-llm-text", text="6th"))
    assert hub.stats()["overflows"] == {"main_thread": 1}  # the event lane's own bound still holds
    assert hub.pump() == 3 + 5
    assert [e.text for e in got.of(BotText)] == ["0", "1", "2", "3", "4"]


def test_audio_and_events_are_delivered_in_publish_order(hubs: list[EventHub]) -> None:
    hub = EventHub(audio_queue_size=100)
    hubs.append(hub)
    order: list[str] = []
    hub.subscribe(AudioFrame, lambda f: order.append(f"a{index(f)}"), P.MAIN_THREAD)
    hub.subscribe(BotText, lambda e: order.append(e.text), P.MAIN_THREAD)
    expected = []
    for i in range(10):
        hub.publish(frame(i))
        expected.append(f"a{i}")
        if i % 3 == 0:
            hub.publish(BotText(type="bot-llm-text", text=f"t{i}"))
            expected.append(f"t{i}")
    hub.pump()
    assert order == expected


def test_second_burst_logs_again(hubs: list[EventHub], caplog: pytest.LogCaptureFixture) -> None:
    hub = EventHub(audio_queue_size=2)
    hubs.append(hub)
    hub.subscribe(AudioFrame, lambda f: None, P.MAIN_THREAD)
    with caplog.at_level(logging.INFO, logger="convai_sync"):
        for i in range(5):
            hub.publish(frame(i))
        hub.pump()
        for i in range(5):
            hub.publish(frame(i))
        hub.pump()
    assert len([r for r in caplog.records if "audio queue full" in r.getMessage()]) == 2
    assert len([r for r in caplog.records if "after dropping 3 audio frame" in r.getMessage()]) == 2
    assert hub.stats()["audio_dropped"] == {"main_thread": 6}


@pytest.mark.parametrize("policy", QUEUED, ids=lambda p: p.name)
def test_drop_audio_removes_queued_frames_only(hubs: list[EventHub], policy: EventDeliveryPolicy) -> None:
    hub = EventHub(audio_queue_size=100)
    hubs.append(hub)
    gate = stall(hub, policy)
    got: Recorder[Any] = Recorder()
    hub.subscribe(AudioFrame, got, policy)
    hub.subscribe(BotText, got, policy)
    for i in range(10):
        hub.publish(frame(i, turn_id=1 if i < 6 else 2))
    hub.publish(BotText(type="bot-llm-text", text="after"))
    assert hub.drop_audio(lambda f: f.turn_id == 1) == 6
    assert hub.stats()["audio_pending"] == 4
    resume(hub, policy, gate)
    got.wait(5, WAIT)
    assert [index(f) for f in got.of(AudioFrame)] == [6, 7, 8, 9]
    assert [e.text for e in got.of(BotText)] == ["after"]
    assert hub.drop_audio() == 0
