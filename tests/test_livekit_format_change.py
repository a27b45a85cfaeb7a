"""Issue 20.6: the user's microphone changes format mid-session on LiveKit (16 kHz mono, then 48 kHz
stereo). The SDK republishes its track; the simulator must answer the renegotiation and keep hearing.
The real ``livekit`` client against the simulator on 127.0.0.1."""

from __future__ import annotations

import array
import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest
from livekit import rtc

from convai_sync import ConvaiClient, ConvaiError, EventDeliveryPolicy, ServerMessage, SessionError, UserTranscription
from convai_sync.testing import Recorder
from convai_sync.transports.livekit import LiveKitTransport
from convai_sync.transports.livekit_audio import remix
from simulator import Simulator
from simulator.carriers.livekit.carrier import LiveKitCarrier
from simulator.carriers.livekit.peer import PeerLink
from simulator.carriers.livekit.service import LiveKitService
from simulator.core.state import SimCore
from tests.livekit_helpers import Participant, connect_info

pytestmark = pytest.mark.timeout(60)

WAIT = 15.0


@pytest.fixture
def sim() -> Iterator[Simulator]:
    heard: list[tuple[int, int]] = []

    def transcriber(pcm: bytes, rate: int, channels: int) -> str:
        heard.append((rate, channels))
        return f"heard {len(heard)}"

    with Simulator(transcriber=transcriber) as server:
        yield server


def tone(seconds: float, rate: int, channels: int, hz: float = 300.0) -> bytes:
    samples = array.array("h")
    for i in range(int(seconds * rate)):
        value = int(8000 * math.sin(2 * math.pi * hz * i / rate))
        samples.extend([value] * channels)
    return samples.tobytes()


def utterance(rate: int, channels: int) -> bytes:
    """A second of "speech", then enough silence to end the utterance."""
    return tone(1.0, rate, channels) + bytes(2 * channels * int(0.8 * rate))


def test_a_microphone_format_change_is_renegotiated_and_still_heard(sim: Simulator) -> None:
    with ConvaiClient(sim.client_config(transport="livekit")) as client:
        finals: Recorder[ServerMessage] = Recorder(lambda e: isinstance(e, UserTranscription) and e.final)
        client.events.on_message.subscribe(finals, EventDeliveryPolicy.IMMEDIATE)
        errors: Recorder[SessionError] = Recorder()
        client.events.on_session_error.subscribe(errors, EventDeliveryPolicy.IMMEDIATE)
        client.connect(timeout=WAIT)
        client.send_audio(utterance(16_000, 1), 16_000, 1, timeout=WAIT)
        [first] = finals.wait(1, timeout=WAIT)
        client.send_audio(utterance(48_000, 2), 48_000, 2, timeout=WAIT)
        second = finals.wait(2, timeout=WAIT)[1]
        assert isinstance(first, UserTranscription) and isinstance(second, UserTranscription)
        assert (first.text, second.text) == ("heard 1", "heard 2")
        assert errors.events == []
        assert client.ask("and text still works?", timeout=WAIT).text


def test_the_track_keeps_its_first_format_and_other_formats_are_converted(sim: Simulator) -> None:
    """Issue 20.6 (SDK side): a format change is converted to the published track's format, never a
    republish (which loses the start of the next utterance and leaves the server another track)."""
    with ConvaiClient(sim.client_config(transport="livekit")) as client:
        client.connect(timeout=WAIT)
        client.send_audio(utterance(16_000, 1), 16_000, 1, timeout=WAIT)
        client.send_audio(utterance(48_000, 2), 48_000, 2, timeout=WAIT)
        client.send_audio(tone(0.1, 8_000, 8), 8_000, 8, timeout=WAIT)
        transport = client._session.transport
        assert isinstance(transport, LiveKitTransport) and transport._mic is not None
        assert transport._mic.format == (16_000, 1)
        session = sim.wait_for_session(WAIT)
        assert len(sim._call(lambda core: _user_tracks(core, session.session_id))) == 1


async def _user_tracks(core: SimCore, session_id: str) -> list[str]:
    service = core.livekit
    assert isinstance(service, LiveKitService)
    return [sid for lk in service.rooms.values() if lk.session.session_id == session_id
            for sid in lk.room.user_tracks]


def test_remix_mixes_down_and_copies_channels() -> None:
    stereo = array.array("h", [100, 300, -100, -300]).tobytes()
    assert remix(stereo, 2, 1) == array.array("h", [200, -200]).tobytes()
    assert remix(array.array("h", [7, -7]).tobytes(), 1, 3) == array.array("h", [7, 7, 7, -7, -7, -7]).tobytes()
    assert remix(stereo, 2, 2) is stereo


def test_a_server_that_never_listens_to_the_microphone_is_an_error_not_a_deaf_session(
        sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20.6: the user must never be left talking to a deaf session without an error. A server
    that never subscribes to the microphone track made send_audio warn in the log and return normally."""
    monkeypatch.setattr(LiveKitCarrier, "_user_track", lambda self, track: None)  # hears nothing, never subscribes
    with ConvaiClient(sim.client_config(transport="livekit")) as client:
        client.connect(timeout=WAIT)
        with pytest.raises(ConvaiError) as info:
            client.send_audio(utterance(16_000, 1), 16_000, 1, timeout=WAIT)
        assert info.value.error_code == "audio.mic_publish_failed"
        assert "subscribe" in str(info.value)


# ---- the simulator follows a client that republishes (the real livekit client, no SDK in between)


async def _say(source: rtc.AudioSource, rate: int, channels: int) -> None:
    """A second of a 300 Hz tone, then 0.8 s of silence, in real time, in 10 ms frames."""
    samples = rate // 100
    for index in range(180):
        frame = rtc.AudioFrame.create(rate, channels, samples)
        if index < 100:
            data = frame.data
            for i in range(samples):
                value = int(8000 * math.sin(2 * math.pi * 300 * (index * samples + i) / rate))
                for c in range(channels):
                    data[i * channels + c] = value
        await source.capture_frame(frame)


async def _publish(client: Participant, rate: int, channels: int) -> tuple[rtc.AudioSource, rtc.LocalTrackPublication]:
    source = rtc.AudioSource(rate, channels)
    track = rtc.LocalAudioTrack.create_audio_track(f"microphone-{rate}-{channels}", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    publication = await client.room.local_participant.publish_track(track, options)
    # Before the fix the simulator could not answer this renegotiation, so it never subscribed.
    await asyncio.wait_for(publication.wait_for_subscription(), WAIT)
    return source, publication


def test_the_simulator_follows_a_client_that_republishes_its_microphone_in_another_format(sim: Simulator) -> None:
    """Issue 20.6: a client that unpublishes its microphone and publishes one in another format made
    the simulator fail the renegotiation ("Media sections in answer do not match offer") and hear
    nothing more (LiveKit recycles the m-lines the answer had rejected, which aiortc cannot follow)."""
    info = connect_info(sim)

    async def scenario() -> list[str]:
        client = Participant()
        texts: list[str] = []
        try:
            await client.join(info)
            await client.wait_message("bot-ready")
            for rate, channels in ((16_000, 1), (48_000, 2), (24_000, 1)):
                mark = len(client.messages)
                source, publication = await _publish(client, rate, channels)
                await _say(source, rate, channels)
                texts.append((await client.wait_message("user-transcription", mark))["data"]["text"])
                await client.room.local_participant.unpublish_track(publication.sid)
                await source.aclose()
        finally:
            await client.close()
        return texts

    assert asyncio.run(scenario()) == ["heard 1", "heard 2", "heard 3"]


def test_an_offer_the_simulator_cannot_answer_is_reported_to_the_client(
        sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20.6: an unanswerable renegotiation was only a warning in the simulator's log, while the
    client went on talking to a session that heard nothing."""
    info = connect_info(sim)

    async def refuse(self: PeerLink, offer_sdp: str, voice: Any, stream_id: str) -> tuple[str, list[str]]:
        raise ValueError("Media sections in answer do not match offer")  # as aiortc did for a recycled m-line

    async def scenario() -> dict[str, Any]:
        client = Participant()
        try:
            await client.join(info)
            await client.wait_message("bot-ready")
            monkeypatch.setattr(PeerLink, "answer", refuse)  # every offer from now on
            mark = len(client.messages)
            source = rtc.AudioSource(16_000, 1)
            track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
            await client.room.local_participant.publish_track(track, rtc.TrackPublishOptions(
                source=rtc.TrackSource.SOURCE_MICROPHONE))
            error: dict[str, Any] = await client.wait_message("error", mark)
            await source.aclose()
            return error
        finally:
            await client.close()

    error = asyncio.run(scenario())
    assert "Cannot answer the client's WebRTC offer" in error["data"]["error"]
    assert error["data"]["fatal"] is False
