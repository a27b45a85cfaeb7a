"""The shopkeeper's story through the public client, end to end against the simulator over real
loopback sockets, on both transports: triggers held until the character is ready move the story
(``NarrativeSectionChanged``), actions arrive with the right targets (``BotReply.actions``,
``ActionQueue``, ``update_action_config``), the reply's lip-sync frames span its voice
(``BotReply.lipsync``), turn timings are ordered, and ``debug`` brings typed ``Metrics``. (Every
lip-sync format and the barge-in cancel through the SDK: test_character_transports_e2e.py; the wire:
test_character_features_*.py.)"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from convai_sync import (
    Action,
    ActionConfig,
    ActionQueue,
    BlendshapeConfig,
    ConvaiClient,
    ConvaiConfig,
    EventDeliveryPolicy,
    Metrics,
    NarrativeSectionChanged,
    SceneCharacter,
    SceneObject,
    SessionState,
    SessionStateChanged,
)
from convai_sync.lipsync import FRAME_SIZES
from convai_sync.testing import Recorder
from simulator import Simulator
from simulator.core.characters import shipped_character
from simulator.core.speech import voice_seconds
from tests.helpers_memory import assert_no_convai_threads

pytestmark = pytest.mark.timeout(90)
IMMEDIATE = EventDeliveryPolicy.IMMEDIATE
KEYS = {"player_name": "Ada", "sword_price": "30"}
SHOP = ActionConfig(actions=("Move To", "Pick Up", "Give"),
                    objects=(SceneObject("sword", "a rusty sword"), SceneObject("shield", "a wooden shield"),
                             SceneObject("counter", "the shop counter")),
                    characters=(SceneCharacter("Guard", "the town guard"),), current_attention_object="shield")
TRANSPORTS = ("websocket", "livekit")


@pytest.fixture(scope="module")
def shop() -> Iterator[Simulator]:
    with Simulator(characters_file=shipped_character("shopkeeper"), websocket_audio=True) as sim:
        yield sim


@pytest.fixture(autouse=True)
def _no_threads_left() -> Iterator[None]:
    yield
    assert_no_convai_threads()


def config(sim: Simulator, transport: str, **overrides: Any) -> ConvaiConfig:
    values: dict[str, Any] = {"transport": transport, "character_id": "shopkeeper", "connection_timeout": 15.0,
                              "narrative_template_keys": KEYS}
    values.update(overrides)
    return sim.client_config(**values)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_shopkeepers_story_plays_end_to_end(shop: Simulator, transport: str) -> None:
    cfg = config(shop, transport, action_config=SHOP, blendshape_config=BlendshapeConfig(format="arkit"))
    with ConvaiClient(cfg) as client:
        sections: Recorder[NarrativeSectionChanged] = Recorder()
        client.events.on_narrative_section_changed.subscribe(sections, IMMEDIATE)

        def early_trigger(event: SessionStateChanged) -> None:
            if event.new_state is SessionState.CONNECTING:
                client.send_trigger(name="enter_shop")  # before bot-ready: held, then sent in order
        client.events.on_session_state_changed.subscribe(early_trigger, IMMEDIATE)
        queue = ActionQueue(client)
        client.connect(timeout=30)
        [entered] = sections.wait(1, timeout=10)
        assert (entered.section_id, entered.bt_code) == ("browsing", "browse()")
        assert client.narrative_section_id == "browsing"

        # The template keys sent at connect fill the scripted greeting.
        hello = client.ask("Hello there", timeout=20)
        assert hello.text.startswith("Welcome to my shop, Ada!")

        # Actions with the right targets: named objects, "it" -> the attention object, "me" -> the speaker.
        reply = client.ask("Please pick up the sword, then give it to me", timeout=20)
        assert reply.actions == (Action("Pick Up", "sword"), Action("Give", "shield"))  # "it": the attention object
        given = client.ask("Move to the counter and give me the potion", timeout=20)
        assert given.actions == (Action("Move To", "counter"), Action("Give", "Player"))  # "me": the speaker
        assert queue.pop_ready() == list(hello.actions + reply.actions + given.actions)
        client.update_action_config(ActionConfig(actions=("Wave",), characters=(SceneCharacter("Guard"),)),
                                    wait=True, timeout=10)
        waved = client.ask("wave to the guard and pick up the sword", timeout=20)
        assert waved.actions == (Action("Wave", "Guard"),)  # "Pick Up" is no longer configured

        # Lip-sync: the reply's frames span its voice within one frame, in the arkit layout.
        clip = reply.lipsync
        assert clip is not None and reply.audio is not None
        assert (clip.format, clip.fps) == ("arkit", 60)
        assert all(len(frame) == FRAME_SIZES["arkit"] for frame in clip.frames)
        # Against the voice the simulator synthesized (over LiveKit, WebRTC's jitter buffer pads and
        # conceals what BotReply.audio holds; over the WebSocket the two are the same length).
        assert len(clip.frames) == math.ceil(voice_seconds(reply.text) * clip.fps)
        if transport == "websocket":
            assert abs(len(clip.frames) / clip.fps - reply.audio.duration) <= 1 / clip.fps + 0.02
        assert max(frame[17] for frame in clip.frames) > 0.5  # jawOpen: the voice opens the mouth
        assert clip.turn_id is not None

        # Turn timings, in order on the monotonic clock.
        t = reply.timings
        assert t is not None and None not in (t.llm_started, t.first_text, t.first_audio, t.completed)
        assert t.sent <= t.llm_started <= t.first_text <= t.completed  # type: ignore[operator]
        assert t.sent <= t.first_audio  # type: ignore[operator]
        stats = client.diagnostics()["turn_timings"]
        assert stats["turns"] == 4 and stats["completed"]["p50"] <= stats["completed"]["p95"]

        client.send_trigger(name="show_sword", wait=True, timeout=10)
        [haggling] = sections.wait(2, timeout=10)[1:]
        assert haggling.section_id == "haggling" and haggling.previous_section_id == "browsing"
        assert client.narrative_section_id == "haggling"
        queue.close()


def test_debug_brings_typed_metrics(shop: Simulator) -> None:
    with ConvaiClient(config(shop, "websocket", debug=True)) as client:
        metrics: Recorder[Metrics] = Recorder()
        client.events.on_metrics.subscribe(metrics, IMMEDIATE)
        client.connect(timeout=30)
        client.ask("Hello", timeout=20)
        got = metrics.wait(1, timeout=10)
    processors = {m.processor for event in got for m in (*event.ttfb, *event.processing)}
    assert processors and all(m.value >= 0 for event in got for m in (*event.ttfb, *event.processing))
