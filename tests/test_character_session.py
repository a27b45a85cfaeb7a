"""Character features on a session, against the in-memory transport (no network): triggers held
until ``bot-ready``, narrative sections, actions and ``ActionQueue``, lip-sync timelines and
``BotReply.lipsync``, turn timings on the client's clock, and ``metrics``."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from convai_sync import (
    Action,
    ActionConfig,
    ActionQueue,
    ActionResponse,
    BlendshapeConfig,
    BotReply,
    ConvaiError,
    ErrorCode,
    EventDeliveryPolicy,
    InvalidStateError,
    LipSync,
    Metrics,
    NarrativeSectionChanged,
    Reconnected,
    Reconnecting,
    SceneObject,
    SendQueueFullError,
    SessionError,
    SessionState,
)
from convai_sync.testing import Recorder
from tests.helpers_memory import (
    BOT_READY,
    WAIT,
    Harness,
    SteppingClock,
    ack,
    assert_no_convai_threads,
    make_config,
    run_async,
)
from tests.narrowing import section_of, state_of

pytestmark = pytest.mark.timeout(10)
IMMEDIATE = EventDeliveryPolicy.IMMEDIATE


@pytest.fixture
def made() -> Iterator[list[Harness]]:
    harnesses: list[Harness] = []
    yield harnesses
    for h in harnesses:
        h.close()
    assert_no_convai_threads()



def harness(made: list[Harness], clock: SteppingClock | None = None, **overrides: Any) -> Harness:
    h = Harness(make_config(**overrides), clock=clock)
    made.append(h)
    return h


def form_b(inner_type: str, **data: Any) -> dict[str, Any]:
    return {"label": "rtvi-ai", "type": "server-message", "data": {"type": inner_type, **data}}


def rtvi(msg_type: str, **data: Any) -> dict[str, Any]:
    return {"label": "rtvi-ai", "type": msg_type, "data": data}


def sent(h: Harness, msg_type: str) -> list[dict[str, Any]]:
    return [m for m in (json.loads(raw) for raw in list(h.server.sent)) if m.get("type") == msg_type]


class LogSeen(logging.Handler):
    """Sets ``event`` when a record's message contains ``text`` (on the logging thread, at once)."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.INFO)
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@contextlib.contextmanager
def logged(text: str) -> Iterator[threading.Event]:
    """An event set when the ``convai_sync`` logger logs a message containing ``text`` (INFO and up)."""
    seen = LogSeen(text)
    logger = logging.getLogger("convai_sync")
    level = logger.level
    logger.addHandler(seen)
    logger.setLevel(logging.INFO)
    try:
        yield seen.event
    finally:
        logger.removeHandler(seen)
        logger.setLevel(level)


class Asked:
    """Answers each ``user_text_message`` with its echo only; the test pushes the rest."""

    def __init__(self, h: Harness) -> None:
        self.ids: list[str] = []
        self.event = threading.Event()
        h.server.responders["user_text_message"] = self._answer

    def _answer(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        self.ids.append(msg["data"]["message_id"])
        self.event.set()
        return [form_b("final-user-transcription", text=msg["data"]["text"], message_id=msg["data"]["message_id"])]

    def wait(self) -> None:
        assert self.event.wait(WAIT)
        self.event.clear()


# ============================================================================ triggers before bot-ready


def test_triggers_before_bot_ready_are_held_and_sent_in_order_before_later_ones(made: list[Harness]) -> None:
    h = harness(made)
    fut = h.connect_async()
    h.server.wait_open(1)
    assert h.client.state is SessionState.CONNECTING
    h.client.send_trigger(name="enter_shop")
    h.client.send_trigger(message="<speak>Welcome!</speak>")
    assert sent(h, "trigger-message") == []  # held: the character is not ready
    assert h.client.diagnostics()["state"] == "CONNECTING"
    h.server.push(BOT_READY)
    fut.result(WAIT)
    h.client.send_trigger(name="after_ready")
    assert [m["data"] for m in sent(h, "trigger-message")] == [
        {"trigger_name": "enter_shop"}, {"trigger_message": "<speak>Welcome!</speak>"}, {"trigger_name": "after_ready"}]


def test_a_held_trigger_with_wait_returns_its_ack_once_sent(made: list[Harness]) -> None:
    h = harness(made)
    h.server.responders["trigger-message"] = lambda msg: [ack("trigger-message")]
    fut = h.connect_async()
    h.server.wait_open(1)
    with logged("trigger 'show_sword' held") as held:
        waiting = run_async(lambda: h.client.send_trigger(name="show_sword", wait=True, timeout=WAIT))
        assert held.wait(WAIT)
    assert sent(h, "trigger-message") == []
    h.server.push(BOT_READY)
    fut.result(WAIT)
    response = waiting.result(WAIT)
    assert response.event_type == "trigger-message" and response.status == "success"


def test_held_triggers_are_dropped_with_a_visible_error_when_the_session_ends(made: list[Harness]) -> None:
    h = harness(made)
    errors: Recorder[SessionError] = Recorder(lambda e: "trigger" in e.message)
    h.client.events.on_session_error.subscribe(errors, IMMEDIATE)
    fut = h.connect_async()
    h.server.wait_open(1)
    h.client.send_trigger(name="one")
    with logged("trigger 'two' held") as held:
        waiting = run_async(lambda: h.client.send_trigger(name="two", wait=True, timeout=WAIT))
        assert held.wait(WAIT), "the waiting trigger was not held"
    h.client.disconnect()
    with pytest.raises(ConvaiError):
        fut.result(WAIT)
    [error] = errors.wait(1)
    assert error.error_code is ErrorCode.SESSION_INVALID_STATE
    assert "'one'" in error.message and "'two'" in error.message
    with pytest.raises(ConvaiError) as info:
        waiting.result(WAIT)
    assert "'two'" in str(info.value)
    assert sent(h, "trigger-message") == []


def test_the_hold_is_bounded(made: list[Harness]) -> None:
    h = harness(made, pending_trigger_limit=2)
    fut = h.connect_async()
    h.server.wait_open(1)
    h.client.send_trigger(name="a")
    h.client.send_trigger(name="b")
    with pytest.raises(SendQueueFullError) as info:
        h.client.send_trigger(name="c")
    assert "pending_trigger_limit" in str(info.value)
    h.server.push(BOT_READY)
    fut.result(WAIT)
    assert [m["data"]["trigger_name"] for m in sent(h, "trigger-message")] == ["a", "b"]


def test_triggers_sent_while_reconnecting_are_sent_once_the_character_is_ready_again(made: list[Harness]) -> None:
    clock = SteppingClock()
    h = harness(made, clock=clock)
    reconnecting: Recorder[Reconnecting] = Recorder()
    reconnected: Recorder[Reconnected] = Recorder()
    h.client.events.on_reconnecting.subscribe(reconnecting, IMMEDIATE)
    h.client.events.on_reconnected.subscribe(reconnected, IMMEDIATE)
    h.connect()
    h.server.drop()
    [first] = reconnecting.wait(1)
    assert state_of(h.client) is SessionState.RECONNECTING
    h.client.send_trigger(name="during_the_drop")
    with pytest.raises(InvalidStateError):
        h.client.send_text("not held")  # only triggers are held
    clock.step(first.delay)
    h.server.wait_open(2)
    assert sent(h, "trigger-message") == []
    h.server.push(BOT_READY)
    reconnected.wait(1)
    assert [m["data"] for m in sent(h, "trigger-message")] == [{"trigger_name": "during_the_drop"}]


def test_a_trigger_without_a_session_is_refused_not_held(made: list[Harness]) -> None:
    h = harness(made)
    with pytest.raises(InvalidStateError):
        h.client.send_trigger(name="too_early")
    with pytest.raises(ValueError):
        h.client.send_trigger()


# ============================================================================ narrative


@pytest.mark.parametrize("wrap", [form_b, rtvi], ids=["form_b", "form_a"])
def test_behavior_tree_response_changes_the_section(made: list[Harness], wrap: Any) -> None:
    h = harness(made)
    h.connect()
    assert section_of(h.client) is None
    changes: Recorder[NarrativeSectionChanged] = Recorder()
    h.client.events.on_narrative_section_changed.subscribe(changes, IMMEDIATE)
    h.server.push(wrap("behavior-tree-response", bt_code="", bt_constants="", narrative_section_id="s-entrance"))
    h.server.push(wrap("behavior-tree-response", bt_code="code", bt_constants="k=1", narrative_section_id="s-counter"))
    first, second = changes.wait(2)
    assert (first.section_id, first.previous_section_id) == ("s-entrance", None)
    assert (second.section_id, second.previous_section_id, second.bt_code, second.bt_constants) == \
        ("s-counter", "s-entrance", "code", "k=1")
    assert section_of(h.client) == "s-counter"
    assert h.client.diagnostics()["narrative_section_id"] == "s-counter"


# ============================================================================ actions


CONFIG = ActionConfig(actions=("Pick Up", "Give"), objects=(SceneObject("sword", "rusty"), SceneObject("shield")),
                      current_attention_object="sword")


def test_update_action_config_sends_a_context_update(made: list[Harness]) -> None:
    h = harness(made, action_config=CONFIG)
    h.server.responders["context-update"] = lambda msg: [ack("context-update")]
    h.connect()
    new = ActionConfig(actions=("Move To",), objects=(SceneObject("door"),))
    response = h.client.update_action_config(new, wait=True, timeout=WAIT)
    assert response.status == "success"
    [msg] = sent(h, "context-update")
    assert msg["data"]["action_config"] == new.to_wire()
    assert msg["data"]["current_attention_object"] == ""
    assert msg["data"]["run_llm"] == "false"
    with pytest.raises(TypeError):
        h.client.update_action_config({"actions": ["x"]})  # type: ignore[call-overload]


def test_actions_reach_the_reply_the_channel_and_the_queue_in_order(made: list[Harness]) -> None:
    h = harness(made, action_config=CONFIG)
    h.connect()
    asked = Asked(h)
    queue = ActionQueue(h.client)
    seen: Recorder[ActionResponse] = Recorder()
    h.client.events.on_actions.subscribe(seen, IMMEDIATE)
    reply = run_async(lambda: h.client.ask("pick up the sword and give me the shield", timeout=WAIT))
    asked.wait()
    h.server.push(rtvi("bot-llm-started"))
    h.server.push(rtvi("bot-llm-text", text="Here."))
    h.server.push(form_b("action-response", actions=[{"name": "Pick Up", "target": "sword"}]))
    h.server.push(rtvi("action-response", actions=[{"name": "Give", "target": "shield"}, {"name": "Pick Up"}]))
    h.server.push(rtvi("bot-turn-completed", was_interrupted=False))
    got: BotReply = reply.result(WAIT)
    seen.wait(2)
    assert got.actions == (Action("Pick Up", "sword"), Action("Give", "shield"), Action("Pick Up"))
    assert queue.pop_ready() == [Action("Pick Up", "sword"), Action("Give", "shield"), Action("Pick Up")]
    assert queue.pop_ready() == []
    queue.close()


def test_an_interruption_does_not_retract_delivered_actions(made: list[Harness]) -> None:
    h = harness(made)
    h.connect()
    with ActionQueue(h.client) as queue:
        got: Recorder[ActionResponse] = Recorder()
        h.client.events.on_actions.subscribe(got, IMMEDIATE)
        h.server.push(form_b("action-response", actions=[{"name": "Move To", "target": "door"}]))
        got.wait(1)
        h.client.interrupt()
        h.server.push(form_b("neurosync-blendshapes-cancel", valid_through_frame_index=None, reason="interruption"))
        h.server.push(rtvi("bot-turn-completed", was_interrupted=True))
        assert queue.pop_ready() == [Action("Move To", "door")]


def test_action_queue_is_bounded_dropping_the_oldest(made: list[Harness]) -> None:
    h = harness(made)
    h.connect()
    queue = ActionQueue(h.client, max_actions=2)
    got: Recorder[ActionResponse] = Recorder()
    h.client.events.on_actions.subscribe(got, IMMEDIATE)
    h.server.push(form_b("action-response", actions=[{"name": n} for n in ("a", "b", "c")]))
    got.wait(1)
    assert [a.name for a in queue.pop_ready()] == ["b", "c"] and queue.dropped == 1
    with pytest.raises(ValueError):
        ActionQueue(h.client, max_actions=0)


# ============================================================================ lip-sync


def chunk(frames: list[list[float]]) -> dict[str, Any]:
    return form_b("chunked-neurosync-blendshapes", blendshapes=frames)


def test_frames_build_a_timeline_and_the_reply_clip(made: list[Harness]) -> None:
    h = harness(made, blendshape_config=BlendshapeConfig(format="visemes", output_fps=60))
    h.connect()
    asked = Asked(h)
    timelines: Recorder[LipSync] = Recorder()
    h.client.events.on_lipsync.subscribe(timelines, IMMEDIATE)
    reply = run_async(lambda: h.client.ask("hello", timeout=WAIT))
    asked.wait()
    h.server.push(rtvi("bot-llm-started"))
    h.server.push(rtvi("bot-llm-text", text="Hi"))
    h.server.push(rtvi("bot-started-speaking"))
    frames = [[i / 100] * 15 for i in range(20)]
    h.server.push(chunk(frames[:10]))
    h.server.push(chunk(frames[10:]))
    h.server.push(rtvi("bot-stopped-speaking"))
    h.server.push(form_b("blendshape-turn-stats", stats={"total_blendshapes": 20, "fps": 60}))
    h.server.push(rtvi("bot-turn-completed", was_interrupted=False))
    got: BotReply = reply.result(WAIT)
    [timeline] = timelines.wait(1)
    assert timeline is h.client.lipsync and timeline.finished and timeline.turn_id == 1
    assert got.lipsync is not None
    assert (got.lipsync.format, got.lipsync.fps, got.lipsync.turn_id) == ("visemes", 60, 1)
    assert [list(f) for f in got.lipsync.frames] == frames
    assert got.lipsync.channel_names is not None and got.lipsync.channel_names[10] == "aa"
    assert h.client.diagnostics()["lipsync"]["frames"] == 20


def test_a_cancel_keeps_frames_through_its_index_and_later_frames_of_the_turn_are_dropped(
        made: list[Harness]) -> None:
    h = harness(made, blendshape_config=BlendshapeConfig(format="arkit"))
    h.connect()
    h.server.push(rtvi("bot-started-speaking"))
    h.server.push(chunk([[0.5] * 61] * 10))
    timeline = h.client.lipsync
    assert timeline is not None
    h.server.push(form_b("neurosync-blendshapes-cancel", valid_through_frame_index=3, reason="interruption"))
    h.server.push(chunk([[0.9] * 61] * 10))  # late frames of the interrupted turn
    assert timeline.clip().frames == ((0.5,) * 61,) * 4
    assert timeline.finished and h.client.lipsync is timeline


def test_a_null_cancel_discards_what_was_not_rendered(made: list[Harness]) -> None:
    h = harness(made, blendshape_config=BlendshapeConfig(format="visemes"))
    h.connect()
    h.server.push(rtvi("bot-started-speaking"))
    h.server.push(chunk([[1.0] * 15] * 40))
    timeline = h.client.lipsync
    assert timeline is not None
    timeline.frame_at(5 / 60)  # the render loop is at frame 5
    h.server.push(form_b("neurosync-blendshapes-cancel", valid_through_frame_index=None, reason="interruption"))
    assert len(timeline.clip().frames) == 16  # frame 5 and the 10 fade-out frames after it
    assert timeline.frame_at(16 / 60) == (0.0,) * 15


def test_a_client_interrupt_drops_unrendered_frames_and_ignores_the_rest_of_the_turn(made: list[Harness]) -> None:
    h = harness(made, blendshape_config=BlendshapeConfig(format="visemes"))
    h.connect()
    h.server.push(rtvi("bot-started-speaking"))
    h.server.push(chunk([[1.0] * 15] * 30))
    timeline = h.client.lipsync
    assert timeline is not None
    h.client.interrupt()
    h.server.push(chunk([[1.0] * 15] * 30))
    assert len(timeline.clip().frames) == 10 and timeline.finished
    assert h.client.lipsync is timeline  # no new timeline for the interrupted turn's late frames
    h.server.push(rtvi("bot-stopped-speaking"))
    h.server.push(rtvi("bot-turn-completed", was_interrupted=True))
    h.server.push(rtvi("bot-started-speaking"))
    h.server.push(chunk([[0.2] * 15] * 10))
    assert h.client.lipsync is not timeline and h.client.lipsync is not None
    assert h.client.lipsync.turn_id == 2


def test_frames_of_the_wrong_size_are_dropped_and_counted(made: list[Harness]) -> None:
    h = harness(made, blendshape_config=BlendshapeConfig(format="arkit"))
    h.connect()
    h.server.push(rtvi("bot-started-speaking"))
    h.server.push(chunk([[0.1] * 61, [0.1] * 60]))
    assert h.client.lipsync is not None and len(h.client.lipsync.clip().frames) == 1
    assert h.client.diagnostics()["lipsync"]["bad_frames"] == 1


def test_malformed_blendshapes_are_a_protocol_error(made: list[Harness]) -> None:
    h = harness(made)
    h.connect()
    errors: Recorder[SessionError] = Recorder()
    h.client.events.on_session_error.subscribe(errors, IMMEDIATE)
    h.server.push(form_b("chunked-neurosync-blendshapes", blendshapes=[["a"]]))
    [error] = errors.wait(1)
    assert error.error_code is ErrorCode.PROTOCOL_MESSAGE_INVALID
    assert h.client.state is SessionState.CONNECTED


# ============================================================================ timings and metrics


def test_reply_timings_follow_the_clients_clock(made: list[Harness]) -> None:
    clock = SteppingClock()
    h = harness(made, clock=clock)
    h.connect()
    asked = Asked(h)
    for n in range(2):
        start = clock.monotonic()
        reply = run_async(lambda: h.client.ask("hi", timeout=WAIT))
        asked.wait()
        clock.advance(0.25)
        h.server.push(rtvi("bot-llm-started"))
        clock.advance(0.25 * (n + 1))
        h.server.push(rtvi("bot-llm-text", text="Hello"))
        clock.advance(1.0)
        h.server.push(rtvi("bot-turn-completed", was_interrupted=False))
        timings = reply.result(WAIT).timings
        assert timings is not None
        assert timings.sent == start
        assert timings.since_sent("llm_started") == 0.25
        assert timings.since_sent("first_text") == 0.25 + 0.25 * (n + 1)
        assert timings.first_audio is None
        assert timings.since_sent("completed") == 1.25 + 0.25 * (n + 1)
    stats = h.client.diagnostics()["turn_timings"]
    assert stats["turns"] == 2
    assert stats["first_text"] == {"p50": 0.5, "p95": 0.75, "count": 2}
    assert stats["first_audio"] is None


def test_metrics_are_a_typed_event(made: list[Harness]) -> None:
    h = harness(made, debug=True)
    h.connect()
    metrics: Recorder[Metrics] = Recorder()
    h.client.events.on_metrics.subscribe(metrics, IMMEDIATE)
    h.server.push(rtvi("metrics", ttfb=[{"processor": "LLMService#0", "model": "gpt", "value": 0.42}],
                       processing=[{"processor": "TTSService#0", "value": 0.1}]))
    [m] = metrics.wait(1)
    assert m.ttfb[0].processor == "LLMService#0" and m.ttfb[0].model == "gpt" and m.ttfb[0].value == 0.42
    assert m.processing[0].value == 0.1 and m.processing[0].model is None


def test_timelines_follow_the_turns_without_voice(made: list[Harness]) -> None:
    h = harness(made, blendshape_config=BlendshapeConfig(format="visemes"), receive_audio=False)
    h.connect()
    h.server.push(chunk([[0.5] * 15] * 10))
    first = h.client.lipsync
    assert first is not None and first.turn_id == 1
    h.client.interrupt()
    h.server.push(chunk([[0.5] * 15] * 10))  # late frames of the interrupted turn
    h.server.push(rtvi("bot-turn-completed", was_interrupted=True))
    h.server.push(chunk([[0.5] * 15] * 10))
    second = h.client.lipsync
    assert second is not None and second is not first and second.turn_id == 2
    assert len(first.clip().frames) == 10 and len(second.clip().frames) == 10
