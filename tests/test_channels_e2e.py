"""Every channel of DESIGN.md §4 fires end to end against the simulator, under each policy."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from convai_sync import (
    ConvaiClient,
    ConvaiConfig,
    EventDeliveryPolicy,
    ReconnectPolicy,
    SessionDurationWarning,
    SessionState,
    SlotWaitPolicy,
)
from convai_sync.testing import Recorder
from simulator import DisconnectReason, Simulator

pytestmark = pytest.mark.timeout(30)

POLICIES = list(EventDeliveryPolicy)


class Channels:
    """Subscribe a Recorder to every channel of a client under one policy."""

    def __init__(self, client: ConvaiClient, policy: EventDeliveryPolicy) -> None:
        self.client = client
        self.policy = policy
        self.rec: dict[str, Recorder[Any]] = {}
        for channel in client.events.channels():
            self.rec[channel.name] = Recorder()
            channel.subscribe(self.rec[channel.name], policy)

    def wait(self, name: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        """Wait for ``count`` events on a channel, pumping when the policy needs the host's tick."""
        recorder = self.rec[name]
        if self.policy is not EventDeliveryPolicy.MAIN_THREAD:
            return recorder.wait(count, timeout)
        end = time.monotonic() + timeout
        while len(recorder) < count and time.monotonic() < end:
            self.client.pump()
            if len(recorder) < count:
                try:
                    recorder.wait(count, 0.005)  # the host's frame pacing
                except TimeoutError:
                    pass
        return recorder.wait(count, 0)

    def threads_ok(self) -> bool:
        expected = {EventDeliveryPolicy.MAIN_THREAD: threading.current_thread().name,
                    EventDeliveryPolicy.IMMEDIATE: "convai-session-",
                    EventDeliveryPolicy.BACKGROUND: "convai-dispatch-"}[self.policy]
        return all(name.startswith(expected) for r in self.rec.values() for name in r.threads)


def _connected(sim: Simulator, policy: EventDeliveryPolicy, **overrides: Any) -> tuple[ConvaiClient, Channels]:
    client = ConvaiClient(sim.client_config(**overrides))
    channels = Channels(client, policy)
    client.connect(timeout=10)
    return client, channels


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_conversation_and_server_signal_channels(policy: EventDeliveryPolicy) -> None:
    replies: list[str | None] = ["Sure.", None]
    with Simulator(responder=lambda text: replies.pop(0)) as sim:
        client, ch = _connected(sim, policy)
        with client:
            session_id = client.session_id
            assert session_id is not None
            ch.wait("on_connected")
            ch.wait("on_bot_ready")
            ch.wait("on_session_state_changed", 2)

            assert client.ask("one", timeout=10).text == "Sure."
            ch.wait("on_server_response")
            ch.wait("on_message", 5)
            assert "".join(t.text for t in ch.wait("on_bot_text")) == "Sure."  # typed: no filtering
            no_reply = client.ask("two", timeout=10)
            assert no_reply.no_response
            ch.wait("on_llm_no_response")

            sim.send_idle_warning(session_id, 30)
            assert ch.wait("on_user_idle_warning")[0].remaining_seconds == 30

            sim.send_participant(session_id, joined=True, participant_id="PA_npc", identity="npc",
                                 display_name="Guide", participant_type="character")
            sim.send_participant(session_id, joined=False, participant_id="PA_npc", identity="npc",
                                 display_name="Guide", participant_type="character")
            joined = ch.wait("on_participant_joined")[0]
            left = ch.wait("on_participant_left")[0]
            assert (joined.participant_id, joined.display_name) == ("PA_npc", "Guide")
            assert left.participant_id == "PA_npc"

            sim.send_rebind_state(session_id, outcome=2, has_pending_reconnect=True, reconnect_required=True,
                                  active_character_id="a", requested_character_id="b")
            rebind = ch.wait("on_room_ownership_rebind_state_changed")[0]
            assert rebind.has_pending_reconnect and rebind.requested_character_id == "b"

            sim.inject("server.error")
            ch.wait("on_pipeline_error")
            assert ch.wait("on_session_error")[0].error_code == "server.error"

            sim.send_usage_limit(session_id, "minutes")
            usage = ch.wait("on_usage_limit_reached")[0]
            assert usage.quota_type == "minutes"
            ch.wait("on_disconnected")
        assert ch.threads_ok()


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_reconnect_channels(policy: EventDeliveryPolicy) -> None:
    with Simulator() as sim:
        client, ch = _connected(sim, policy, reconnect_policy=ReconnectPolicy(delays=(0.01,)))
        with client:
            sim.inject(DisconnectReason.SIGNAL_CLOSE)
            ch.wait("on_reconnecting")
            ch.wait("on_reconnected")
            assert client.state is SessionState.CONNECTED
            assert ch.rec["on_disconnected"].events == []
        assert ch.threads_ok()


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_slot_and_duration_channels(policy: EventDeliveryPolicy) -> None:
    with Simulator(concurrency_limit=1) as sim, ConvaiClient(sim.client_config()) as holder:
        holder.connect(timeout=10)
        client = ConvaiClient(sim.client_config(
            slot_wait=SlotWaitPolicy(max_wait=10, interval=0.05), max_session_duration=0.5,
            session_duration_warnings=(0.25,)))
        ch = Channels(client, policy)
        with client:
            done = threading.Event()

            def connect() -> None:
                client.connect(timeout=15)
                done.set()

            worker = threading.Thread(target=connect, name="test-connect")
            worker.start()
            ch.wait("on_waiting_for_slot")
            holder.disconnect()
            assert done.wait(10)
            worker.join(5)
            ch.wait("on_connected")
            warning = ch.wait("on_session_duration_warning")[0]
            assert isinstance(warning, SessionDurationWarning) and warning.remaining_seconds == 0.25
            gone = ch.wait("on_disconnected")[0]
            assert gone.error is not None and gone.error.error_code == "session.duration_limit_reached"
        assert ch.threads_ok()


def test_every_channel_is_covered() -> None:
    """Guard: the tests above exercise every channel on ConvaiEvents."""
    names = {c.name for c in ConvaiClient(ConvaiConfig(api_key="k", character_id="c")).events.channels()}
    exercised = {"on_connected", "on_disconnected", "on_reconnecting", "on_reconnected",
                 "on_session_state_changed", "on_session_error", "on_pipeline_error", "on_usage_limit_reached",
                 "on_user_idle_warning", "on_participant_joined", "on_participant_left",
                 "on_room_ownership_rebind_state_changed", "on_server_response", "on_llm_no_response",
                 "on_bot_ready", "on_message", "on_bot_text", "on_waiting_for_slot",
                 "on_session_duration_warning"}
    # on_user_idle_timeout (the local deadline) is covered in test_limits_e2e, on_handler_error
    # (a raising user handler) in test_handler_errors, on_audio and on_audio_interrupted (the
    # character's voice, barge-in) in test_voice_session and test_voice_e2e; on_actions,
    # on_narrative_section_changed, on_lipsync and on_metrics (the character's game features) in
    # test_character_e2e.
    assert names - exercised == {"on_user_idle_timeout", "on_handler_error", "on_audio", "on_audio_interrupted",
                                 "on_actions", "on_narrative_section_changed", "on_lipsync", "on_metrics"}


