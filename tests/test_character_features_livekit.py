"""The simulated character's game features over LiveKit data packets, with the real ``livekit`` client (no SDK):
the same message core as the WebSocket, so narrative, actions, lip-sync beside the voice track, and metrics."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from simulator import Simulator
from simulator.core.characters import shipped_character
from simulator.core.speech import voice_seconds
from tests.livekit_helpers import Participant, connect_info, etype

pytestmark = pytest.mark.timeout(60)

FPS, CHUNK = 60, 6


@pytest.fixture(scope="module")
def shop() -> Iterator[Simulator]:
    with Simulator(characters_file=shipped_character("shopkeeper")) as sim:
        yield sim


def data_of(messages: list[dict[str, Any]], wanted: str) -> list[dict[str, Any]]:
    return [m["data"] for m in messages if etype(m) == wanted]


def test_shopkeeper_story_over_livekit(shop: Simulator) -> None:
    info = connect_info(shop, narrative_template_keys={"player_name": "Ada", "sword_price": "30"},
                        blendshape_config={"format": "arkit", "chunk_size": CHUNK, "output_fps": FPS}, debug=True)

    async def scenario() -> None:
        client = Participant()
        await client.join(info)
        await client.wait_message("bot-ready")
        chunk_times: list[float] = []

        def on_data(_packet: Any) -> None:
            if client.messages and etype(client.messages[-1]) == "chunked-neurosync-blendshapes":
                chunk_times.append(time.monotonic())

        client.room.on("data_received", on_data)  # after the recorder: the message is already parsed
        mark = len(client.messages)
        await client.send({"type": "user_text_message", "data": {"text": "Please pick up the sword"}})
        await client.wait_message("bot-turn-completed", mark)
        turn = client.messages[mark:]
        assert data_of(turn, "action-response")[0]["actions"] == [{"name": "Pick Up", "target": "sword"}]
        reply = "".join(d["text"] for d in data_of(turn, "bot-llm-text"))
        frames = [f for c in data_of(turn, "chunked-neurosync-blendshapes") for f in c["blendshapes"]]
        assert len(frames) == math.ceil(voice_seconds(reply) * FPS) and all(len(f) == 61 for f in frames)
        # Paced by the voice track (real time), not dumped at once: slower machines only stretch this.
        chunks = len(chunk_times)
        assert chunk_times[-1] - chunk_times[0] >= (chunks - 2) * CHUNK / FPS
        (stats,) = data_of(turn, "blendshape-turn-stats")
        assert stats["stats"]["total_blendshapes"] == len(frames) and not stats["stats"]["was_interrupted"]
        assert [m for m in data_of(turn, "metrics") if "processing" in m]

        mark = len(client.messages)
        await client.send({"type": "trigger-message", "data": {"trigger_name": "enter_shop"}})
        moved = await client.wait_message("behavior-tree-response", mark)
        assert moved["data"]["narrative_section_id"] == "browsing"
        await client.wait_message("bot-turn-completed", mark)
        said = "".join(d["text"] for d in data_of(client.messages[mark:], "bot-llm-text"))
        assert said == "Take your time, Ada. The sword on the wall is my finest piece."
        assert shop.wait_for_session().narrative_section_id == "browsing"
        await client.close()

    asyncio.run(scenario())


def test_barge_in_cancels_frames_over_livekit() -> None:
    with Simulator(responder=lambda text: "la " * 100) as sim:  # 6 s of voice
        info = connect_info(sim, blendshape_config={"format": "visemes", "chunk_size": 5, "output_fps": 30})

        async def scenario() -> None:
            client = Participant()
            await client.join(info)
            await client.wait_message("bot-ready")
            mark = len(client.messages)
            await client.send({"type": "user_text_message", "data": {"text": "talk"}})
            await client.wait_message("chunked-neurosync-blendshapes", mark)
            await client.send({"type": "interrupt-bot", "data": {}})
            await client.wait_message("bot-turn-completed", mark)
            turn = client.messages[mark:]
            sent = sum(len(c["blendshapes"]) for c in data_of(turn, "chunked-neurosync-blendshapes"))
            (cancel,) = data_of(turn, "neurosync-blendshapes-cancel")
            assert cancel["reason"] == "interruption"
            assert cancel["valid_through_frame_index"] is None or 0 <= cancel["valid_through_frame_index"] < sent
            assert sent < math.ceil(voice_seconds("la " * 100) * 30)
            assert data_of(turn, "blendshape-turn-stats")[0]["stats"]["was_interrupted"] is True
            assert data_of(turn, "bot-turn-completed")[0]["was_interrupted"] is True
            await client.close()

        asyncio.run(scenario())
