"""The real ``livekit`` client (``livekit.rtc.Room``) against the simulator's LiveKit side, over 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import io
import wave
from collections.abc import Iterator

import pytest
import requests

from simulator import Simulator
from simulator.carriers.livekit import media
from simulator.core.character import default_reply
from tests.livekit_helpers import (
    HTTP_TIMEOUT,
    Participant,
    assert_only_routing_probes,
    connect_info,
    etype,
    publish_voice,
)

HELLO = {"type": "user_text_message", "data": {"text": "Hello there"}}


def short_reply(text: str) -> str:
    return "Hi! Nice to meet you."  # 21 characters: 0.42 s of the default voice


FIRST_REPLY = default_reply("Hello there", 1)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator() as server:  # the default responder: no worker thread to outlive a test
        yield server


@pytest.mark.timeout(30)
def test_join_and_leave(sim: Simulator) -> None:
    info = connect_info(sim)
    assert info["room_url"] == sim.livekit_url and info["room_name"] and info["token"].count(".") == 2

    async def scenario() -> None:
        client = Participant()
        seconds = await client.join(info)
        assert seconds < 10
        remote = {p.identity: p for p in client.room.remote_participants.values()}
        assert list(remote) == [sim.character_id]
        assert remote[sim.character_id].kind == 4  # ParticipantKind AGENT (livekit_models.proto)
        assert client.room.name == info["room_name"]
        assert client.room.local_participant.sid.startswith("PA_")
        assert (await client.room.sid).startswith("RM_")
        await client.wait_message("bot-ready")
        session = sim.wait_for_session()
        assert (session.session_id, session.transport, session.room_name) == (
            info["session_id"], "livekit", info["room_name"])
        assert sim.slots_in_use() == 1
        await client.close()

    asyncio.run(scenario())
    sim.wait_for_slots(0)
    assert sim.sessions == []
    assert_only_routing_probes()


@pytest.mark.timeout(30)
def test_data_packets_both_ways_with_acks_and_the_reply(sim: Simulator) -> None:
    info = connect_info(sim)

    async def scenario() -> None:
        client = Participant()
        await client.join(info)
        await client.wait_message("bot-ready")
        mark = len(client.messages)
        await client.send(HELLO)
        ack = await client.wait_message("server-response", mark)
        assert (ack["event_type"], ack["status"], ack["extras"]) == (
            "user_text_message", "success", {"text": "Hello there"})
        await client.wait_message("bot-turn-completed", mark)
        names = client.names(mark)
        assert names[:3] == ["server-response", "final-user-transcription", "bot-llm-started"]
        assert names[-3:] == ["bot-started-speaking", "bot-stopped-speaking", "bot-turn-completed"]
        text = "".join(m["data"]["text"] for m in client.messages[mark:] if etype(m) == "bot-llm-text")
        assert text == FIRST_REPLY
        assert {m["_from"] for m in client.messages} == {sim.character_id}
        assert {m["_topic"] for m in client.messages} <= {None, ""}
        # A wrapped, labeled message on the lossy channel is handled the same way.
        mark = len(client.messages)
        await client.room.local_participant.publish_data(
            b'{"label":"rtvi-ai","type":"client-message","data":{"t":"reset-idle-timer","d":{}}}',
            reliable=False, topic="rtvi")
        reset = await client.wait_message("server-response", mark)
        assert reset["event_type"] == "reset-idle-timer"
        await client.close()

    asyncio.run(scenario())
    session = sim.wait_for_received(info["session_id"], "user_text_message")
    assert session["data"]["text"] == "Hello there"


@pytest.mark.timeout(30)
def test_the_character_voice_arrives_on_its_track(sim: Simulator) -> None:
    info = connect_info(sim)
    expected = media.voice_seconds(FIRST_REPLY)

    async def scenario() -> None:
        client = Participant()
        await client.join(info)
        await client.wait_until(lambda: client.heard)
        await client.wait_message("bot-ready")
        mark = len(client.messages)
        await client.send(HELLO)
        started = await client.wait_message("bot-started-speaking", mark)
        await client.wait_message("bot-turn-completed", mark)
        assert started["data"]["label"] == "rtvi-ai"
        (heard,) = client.heard.values()
        await client.wait_until(lambda: heard.loud_seconds() >= expected - 0.1, timeout=5)
        await asyncio.sleep(0.3)  # let the jitter buffer play out its tail (nothing waits on it)
        assert heard.rates() == {48_000}  # Opus carries 48 kHz; AudioStream asked for 48 kHz mono
        # Measured +40..50 ms: Opus's 20 ms frames and the decoder's fade smear each edge by a frame or two;
        # 100 ms (five Opus frames) bounds that without accepting a missing or doubled 100 ms chunk.
        assert abs(heard.loud_seconds() - expected) <= 0.1, (heard.loud_seconds(), expected)
        await client.close()

    asyncio.run(scenario())


@pytest.mark.timeout(40)
def test_user_audio_is_counted_transcribed_and_answered() -> None:
    heard: list[tuple[int, int, float]] = []

    def transcriber(pcm: bytes, rate: int, channels: int) -> str:
        heard.append((rate, channels, len(pcm) / (2 * rate * channels)))
        return "what a lovely tone"

    with Simulator(responder=short_reply, transcriber=transcriber) as sim:
        info = connect_info(sim)

        async def scenario() -> None:
            client = Participant()
            await client.join(info)
            await client.wait_message("bot-ready")
            mark = len(client.messages)
            await publish_voice(client, speech_seconds=1.0, silence_seconds=1.0)
            done = await client.wait_message("bot-turn-completed", mark)
            assert done["data"]["was_interrupted"] is False
            names = client.names(mark)
            assert names[:4] == ["user-started-speaking", "user-stopped-speaking", "user-transcription",
                                 "final-user-transcription"]
            transcription = next(m for m in client.messages[mark:] if etype(m) == "user-transcription")
            assert transcription["data"] == {"text": "what a lovely tone", "final": True}
            final = next(m for m in client.messages[mark:] if etype(m) == "final-user-transcription")
            assert final["data"]["text"] == "what a lovely tone"
            session = sim.wait_for_session()
            assert session.received_audio_seconds >= 1.5  # every decoded frame counts, silence included
            await client.close()

        asyncio.run(scenario())
        (rate, channels, seconds), = heard
        assert (rate, channels) == (48_000, 1)
        assert abs(seconds - 1.0) <= 0.1  # the utterance without its trailing silence


@pytest.mark.timeout(30)
def test_the_character_joins_after_the_user() -> None:
    with Simulator(responder=short_reply, bot_ready_delay=0.5) as sim:
        info = connect_info(sim)

        async def scenario() -> None:
            client = Participant()
            await client.join(info)
            assert list(client.room.remote_participants) == []
            ready = await client.wait_message("bot-ready")
            assert ready["_from"] == sim.character_id
            await client.wait_until(lambda: any(e[1] == "track_subscribed" for e in client.events))
            names = [e[1] for e in client.events]
            assert names.index("participant_connected") < names.index("track_subscribed")
            assert ("participant_connected", (sim.character_id, 4)) in [(e[1], e[2]) for e in client.events]
            mark = len(client.messages)
            await client.send(HELLO)
            await client.wait_message("bot-turn-completed", mark)
            (heard,) = client.heard.values()
            await client.wait_until(lambda: heard.loud_seconds() > 0.2, timeout=5)
            await client.close()

        asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_audio_data_messages_when_routed_to_data() -> None:
    with Simulator(responder=short_reply) as sim:
        info = connect_info(sim, audio_config={"output": {"audio_routing": "data_only", "sample_rate": 16000,
                                                          "max_chunk_duration_ms": 95, "add_wav_header": True}})

        async def scenario() -> None:
            client = Participant()
            await client.join(info)
            await client.wait_message("bot-ready")
            mark = len(client.messages)
            await client.send(HELLO)
            await client.wait_message("bot-turn-completed", mark)
            names = client.names(mark)
            chunks = [m["data"] for m in client.messages[mark:] if etype(m) == "audio-data"]
            first, last = names.index("audio-data"), len(names) - 1 - names[::-1].index("audio-data")
            assert names.index("bot-started-speaking") < first and last < names.index("bot-stopped-speaking")
            total = 0.0
            for chunk in chunks:
                assert (chunk["sample_rate"], chunk["channels"], chunk["includes_wav_header"]) == (16000, 1, True)
                with wave.open(io.BytesIO(base64.b64decode(chunk["audio"]))) as wav:
                    assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
                    assert wav.getnframes() <= 1600  # 100 ms: 95 rounds up to 10 ms steps
                    total += wav.getnframes() / 16000
            assert abs(total - media.voice_seconds(short_reply(""))) < 0.02
            # data_only: the track stays silent
            for heard in client.heard.values():
                assert heard.loud_seconds() == 0
            await client.close()

        asyncio.run(scenario())


@pytest.mark.timeout(20)
def test_tokens_are_checked_like_livekit_checks_them(sim: Simulator) -> None:
    info = connect_info(sim)
    validate = f"{sim.url}/rtc/v1/validate"
    good = requests.get(validate, headers={"Authorization": f"Bearer {info['token']}"}, timeout=HTTP_TIMEOUT)
    assert (good.status_code, good.text) == (200, "success")
    assert requests.get(f"{sim.url}/rtc/validate", params={"access_token": info["token"]},
                        timeout=HTTP_TIMEOUT).status_code == 200
    forged = info["token"][:-4] + ("AAAA" if not info["token"].endswith("AAAA") else "BBBB")
    bad = requests.get(validate, headers={"Authorization": f"Bearer {forged}"}, timeout=HTTP_TIMEOUT)
    assert bad.status_code == 401 and bad.text.startswith("invalid token")
    assert requests.get(validate, timeout=HTTP_TIMEOUT).status_code == 401
    v0 = requests.get(f"{sim.url}/rtc", timeout=HTTP_TIMEOUT)
    assert v0.status_code == 400 and "v1 only" in v0.text

    async def scenario() -> None:
        client = Participant()
        with pytest.raises(Exception) as refused:
            await client.join({"room_url": info["room_url"], "token": forged})
        assert "401" in str(refused.value) and "invalid token" in str(refused.value)

    asyncio.run(scenario())
    requests.post(f"{sim.url}/disconnect", params={"session_id": info["session_id"]}, timeout=HTTP_TIMEOUT)
