"""Type-checked by ``mypy --strict`` in ``.ci/run`` (not run by pytest): the public API reads as a
user's type checker sees it. Each ``assert_type`` fails the check if a signature regresses."""

from __future__ import annotations

from typing_extensions import assert_type

from convai_sync import (
    Action,
    ActionConfig,
    ActionQueue,
    AudioClip,
    BotReply,
    BotText,
    ConvaiClient,
    ConvaiConfig,
    LipSync,
    LipSyncClip,
    ReplyStream,
    ServerResponse,
    TurnTimings,
)


def check(client: ConvaiClient, flag: bool) -> None:
    assert_type(client.send_text("hi"), None)
    assert_type(client.send_text("hi", wait=True), ServerResponse)
    assert_type(client.send_text("hi", wait=flag), ServerResponse | None)
    assert_type(client.update_context("The player holds a torch.", wait=True), ServerResponse)
    assert_type(client.update_context("x", mode="replace", run_llm="true"), None)
    assert_type(client.send_trigger(name="greet", wait=True), ServerResponse)
    assert_type(client.interrupt(wait=True), ServerResponse)
    assert_type(client.update_template_keys({"k": "v"}, wait=True), ServerResponse)
    assert_type(client.update_dynamic_info("x", wait=True), ServerResponse)
    assert_type(client.toggle_tts(False, wait=True), ServerResponse)
    assert_type(client.reset_idle_timer(wait=True), ServerResponse)
    reply = client.ask("hi", timeout=5)
    assert_type(reply, BotReply)
    assert_type(reply.audio, AudioClip | None)
    stream = client.stream("story")
    assert_type(stream, ReplyStream)
    for chunk in stream:
        assert_type(chunk, BotText)
    ack = client.update_context("x", wait=True)
    assert_type(ack.remaining_tokens, int | None)
    # Character features: actions, story, lip-sync, timings.
    assert_type(client.update_action_config(ActionConfig(actions=("Pick Up",)), wait=True), ServerResponse)
    assert_type(client.update_action_config(ActionConfig(actions=("Pick Up",))), None)
    assert_type(reply.actions, tuple[Action, ...])
    assert_type(reply.lipsync, LipSyncClip | None)
    assert_type(reply.timings, TurnTimings | None)
    assert_type(client.narrative_section_id, str | None)
    assert_type(client.lipsync, LipSync | None)
    assert_type(ActionQueue(client).pop_ready(), list[Action])
    live = client.lipsync
    if live is not None:
        assert_type(live.frame_at(0.5), tuple[float, ...])


def bad_mode(client: ConvaiClient) -> None:
    client.update_context("x", mode="bogus")  # type: ignore[call-overload]


__all__ = ["ConvaiConfig", "bad_mode", "check"]
