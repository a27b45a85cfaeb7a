"""What a newcomer sees printed: payload reprs carry sizes and durations (never bytes), public enums print
their names, and a session without voice says why ``BotReply.audio`` is None, once."""

from __future__ import annotations

import logging

import pytest

from convai_sync import (
    AudioClip,
    AudioFrame,
    BotReply,
    ConvaiClient,
    DisconnectReason,
    ErrorCode,
    EventDeliveryPolicy,
    SessionState,
)
from convai_sync.errors import SessionErrorStage
from convai_sync.events import Action, AudioData, ParticipantType, RoomOwnershipRebindStatus
from simulator import Simulator

pytestmark = pytest.mark.timeout(30)

SECOND_48K = b"\x01\x02" * 48000  # 1 s of 48 kHz mono PCM16


def test_audio_reprs_show_sizes_and_durations_never_bytes() -> None:
    frame = AudioFrame(data=SECOND_48K[:1920], sample_rate=48000, num_channels=1, samples_per_channel=960,
                       timestamp=0.0, turn_id=3)
    assert repr(frame) == "AudioFrame(20.0 ms, 48000 Hz, 1 ch, 1920 bytes, turn 3)"
    clip = AudioClip(SECOND_48K * 2, 48000)
    assert repr(clip) == "AudioClip(2.00 s, 48000 Hz, 1 ch, 192000 bytes)"
    data = AudioData(type="audio-data", data={"audio": "AQI=" * 1000}, pcm=SECOND_48K, sample_rate=48000)
    assert repr(data) == "AudioData(48000 Hz, 1 ch, 96000 bytes of PCM16)"


def test_a_reply_prints_short_whatever_its_audio() -> None:
    reply = BotReply(text="word " * 100, emotion="joy", emotion_scale=2, actions=(Action("wave"),),
                     chunks=("a", "b"), audio=AudioClip(SECOND_48K * 5, 48000))
    shown = str(reply)
    assert len(shown) < 250, shown
    assert "\\x" not in shown and "…" in shown
    assert "emotion='joy' (2)" in shown and "actions=['wave']" in shown and "chunks=2" in shown
    assert shown.endswith("audio=AudioClip(5.00 s, 48000 Hz, 1 ch, 480000 bytes))")


def test_public_enums_print_and_format_as_type_dot_name() -> None:
    members = [SessionState.CONNECTED, DisconnectReason.SERVER_SHUTDOWN, EventDeliveryPolicy.MAIN_THREAD,
               SessionErrorStage.TRANSPORT, next(iter(ParticipantType)), next(iter(RoomOwnershipRebindStatus))]
    for member in members:
        expected = f"{type(member).__name__}.{member.name}"
        assert str(member) == expected and f"{member}" == expected and format(member, "") == expected
    assert f"{SessionState.CONNECTED:>25}" == "   SessionState.CONNECTED"
    assert f"{DisconnectReason.SERVER_SHUTDOWN:d}" == str(int(DisconnectReason.SERVER_SHUTDOWN))
    # Error codes print as Convai's own names for them.
    assert str(ErrorCode.CONNECTION_TIMEOUT) == f"{ErrorCode.CONNECTION_TIMEOUT}" == "connection.timeout"


def _silence_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "BotReply.audio is None" in r.getMessage()]


def test_a_websocket_session_without_voice_says_why_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="convai_sync")
    with Simulator() as sim, ConvaiClient(sim.client_config()) as client:  # no websocket_audio: no voice
        client.connect(timeout=10)
        assert client.ask("hi", timeout=10).audio is None
        assert client.ask("and again", timeout=10).audio is None
    lines = _silence_lines(caplog)
    assert len(lines) == 1, lines
    assert "Simulator(websocket_audio=True)" in lines[0] and "protobuf" in lines[0]


def test_a_session_with_voice_or_tts_off_says_so_accordingly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="convai_sync")
    with Simulator(websocket_audio=True) as sim:
        with ConvaiClient(sim.client_config()) as client:
            client.connect(timeout=10)
            assert client.ask("hi", timeout=10).audio is not None
        assert _silence_lines(caplog) == []
        with ConvaiClient(sim.client_config(tts_enabled=False)) as client:
            client.connect(timeout=10)
            assert client.ask("hi", timeout=10).audio is None
    lines = _silence_lines(caplog)
    assert len(lines) == 1 and "tts_enabled=False" in lines[0], lines
