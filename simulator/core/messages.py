"""Client messages -> ``server-response`` acks and the replies they cause (Convai's client-to-server
message docs and its ``server-response`` acknowledgement format).

Every client frame gets its ack before any reply traffic it causes. Replies run as one task per turn,
chained so turns of one session never overlap. Loop thread only.

Work per message is linear in its size and text fields are bounded (:mod:`simulator.core.bounds`): a text
longer than :data:`~simulator.core.bounds.MAX_TEXT_LENGTH` characters is answered
``Failed to process <type>: <field> is longer than N characters`` and the session goes on. A handler
that fails unexpectedly is logged and answered ``Failed to process <type>: internal simulator error``;
it never ends the session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from simulator.core import (
    actions,
    bounds,
    character,
    characters,
    features,
    lipsync,
    narrative,
    timings,
    voice,
    wire,
)
from simulator.core.context import ContextError
from simulator.core.sessions import Phase, SimSession
from simulator.core.state import SimCore

logger = logging.getLogger("simulator.messages")

Handler = Callable[[SimCore, SimSession, wire.ClientMessage], Awaitable[None]]
USAGE_LIMIT_ACK = "Usage limit exceeded"
SPEAK_OPEN, SPEAK_CLOSE = "<speak>", "</speak>"
#: Template keys one session keeps (``update-template-keys`` adds to them); more is refused.
MAX_TEMPLATE_KEYS = 1000


def speak_text(message: str) -> str | None:
    """The text between the first ``<speak>`` and the ``</speak>`` after it, or None without both.

    Two ``str.find`` calls: linear in the message, whatever it contains (a regex search over unclosed
    tags is quadratic and froze the loop for seconds on a 100 KiB message).
    """
    start = message.find(SPEAK_OPEN)
    if start < 0:
        return None
    start += len(SPEAK_OPEN)
    end = message.find(SPEAK_CLOSE, start)
    return None if end < 0 else message[start:end]


def _length_error(field: str) -> str:
    return f"{field} is longer than {bounds.MAX_TEXT_LENGTH} characters"


async def handle_text(core: SimCore, session: SimSession, text: str) -> None:
    """One text frame from the client: record it, reset the idle timer, ack it, act on it."""
    if session._phase is Phase.ENDED:
        logger.debug("frame for ended session %s ignored", session.session_id)
        return
    core.arm_idle(session)
    decoded, result = wire.parse_client_frame(text)
    if decoded is not None:
        session._record(text, decoded)
    if isinstance(result, wire.BadFrame):
        await session._send(result.reply)
        return
    handler = HANDLERS.get(result.type)
    if handler is None:
        await session._send(wire.unknown_type_ack(result.type))
    else:
        try:
            await handler(core, session, result)
        except Exception:  # a handler bug must not end the session; the client still gets its ack
            logger.exception("handler for %s failed on session %s", result.type, session.session_id)
            await session._send(wire.failed_ack(result.type, "internal simulator error"))
    if session._runner is not None and session._phase is Phase.OPEN:
        session._runner.message_handled(session, result.type)


# ------------------------------------------------------------------ turns


async def _reply_for(core: SimCore, session: SimSession, text: str) -> tuple[bool, str | None]:
    """The character's scripted reply matching ``text``, else the responder's; returns (ok, reply). A failing
    responder sends a non-fatal RTVI error."""
    core.ltm.heard(session, text)
    remembered = await core.ltm.recall(session, text)
    if remembered is not None:
        return True, remembered
    scripted = session._character.scripted_reply(text)
    if scripted is not None:
        if scripted.reply is None:
            return True, None
        return True, characters.fill(scripted.reply, {**session._template_keys, "text": text})
    responder = core.config.responder
    if responder is None:
        echo = character.default_reply(text, session._conversation.turn_count + 1)
        section = narrative.current(session._character, session._section)
        if section is not None:  # the story shows in the echo: where it is and what the character is after
            goal = narrative.objective(session._character, session._section, session._template_keys)
            echo = f"{echo} ({section.name}: {goal})" if goal else f"{echo} ({section.name})"
        return True, echo
    try:
        reply: object = await core.loop.run_in_executor(core.responder_pool(), responder, text)
    except Exception as exc:  # the user's callable may raise anything; report it to the client
        logger.exception("responder failed for session %s", session.session_id)
        await session._send(wire.pipeline_error(f"Responder failed: {exc}", False))
        return False, None
    if reply is None or isinstance(reply, str):
        return True, reply
    logger.error("responder returned %s, not str or None; treating it as str", type(reply).__name__)
    return True, str(reply)


async def _run_turn(
    core: SimCore,
    session: SimSession,
    previous: asyncio.Task[None] | None,
    text: str,
    *,
    transcript: bool,
    message_id: str | None,
    scripted: str | None = None,
    typed: bool = False,
) -> None:
    if previous is not None and not previous.done():
        await asyncio.wait({previous})
    clock = timings.TurnClock() if session._features.debug else None
    if transcript:
        started = core.loop.time()
        stt = session._character.delays.stt
        if stt > 0:
            await asyncio.sleep(stt)
        if clock is not None:
            clock.stt_seconds = core.loop.time() - started
        if not await session._send(wire.final_user_transcription(text, message_id)):
            return
    replay = core.replay
    recorded = None if replay is None or not typed else replay.turn_for(session, text)
    if replay is not None and recorded is not None:
        await replay.play(session, recorded)
        return
    reply: str | None
    if scripted is not None:
        ok, reply = True, scripted
    else:
        ok, reply = await _reply_for(core, session, text)
    if not ok:
        return
    if reply is None:
        await character.play_no_response(session._send)
        return
    session._conversation.record(text, reply)
    turn = character.Turn()
    session._turn = turn
    try:
        carrier = session._carrier
        chosen = [] if scripted is not None else actions.choose(text, session._actions, session._features.speaker)
        await character.play_turn(
            session._send, reply, turn, tts_enabled=session._tts_enabled, chunk_delay=core.config.chunk_delay,
            speak=None if carrier is None else carrier.speak, actions=[a.wire() for a in chosen],
            delays=session._character.delays, animate=await _animation(core, session, reply), clock=clock,
        )
    finally:
        turn.finished = True
        if session._turn is turn:
            session._turn = None


async def _animation(core: SimCore, session: SimSession, reply: str) -> character.Animate | None:
    """The lip-sync of a voiced ``reply`` when the session asked for it (None: no frames)."""
    config = session.blendshapes
    if config is None or not session._tts_enabled:
        return None
    made = await voice.synthesize(core, session, reply)
    if made is None:
        return None
    session._voice_cache = (reply, made)  # the carrier's voice is this same audio
    session._lipsync_turns += 1
    stream = lipsync.animation(made[0], made[1], config, session._lipsync_turns)
    return lambda stop, voice_done: stream.run(session._send, stop, voice_done)


def start_turn(
    core: SimCore,
    session: SimSession,
    text: str,
    *,
    transcript: bool = True,
    message_id: str | None = None,
    scripted: str | None = None,
    typed: bool = False,
) -> None:
    """Queue a reply turn after any turn already playing (``typed``: a ``user_text_message``, which a
    replay answers from its recording)."""
    session._turn_task = core.spawn(
        _run_turn(
            core,
            session,
            session._turn_task,
            text,
            transcript=transcript,
            message_id=message_id,
            scripted=scripted,
            typed=typed,
        )
    )


async def handle_utterance(core: SimCore, session: SimSession, text: str) -> None:
    """The user finished speaking and was heard as ``text``: transcribe, count the interaction, reply.

    Sends ``user-transcription`` (final) then, through the turn, ``final-user-transcription`` and the reply,
    exactly as a typed ``user_text_message`` would after its ack. Loop thread only.
    """
    if session._phase is not Phase.OPEN:
        return
    core.arm_idle(session)
    await session._send(wire.form_a("user-transcription", {"text": text, "final": True}))
    if not await core.store.try_interaction(session.api_key):  # a spoken turn counts like a typed one
        await core.usage_limit_flow(session, "interaction", "Usage limit reached for your plan.")
        return
    start_turn(core, session, text)


# ------------------------------------------------------------------ handlers


async def _usage_exhausted(core: SimCore, session: SimSession, event_type: str) -> bool:
    """Count an interaction; when the quota is spent, ack the error and run the usage-limit flow."""
    if await core.store.try_interaction(session.api_key):
        return False
    await session._send(wire.ack(event_type, "error", USAGE_LIMIT_ACK))
    await core.usage_limit_flow(session, "interaction", "Usage limit reached for your plan.")
    return True


async def _user_text(core: SimCore, session: SimSession, msg: wire.ClientMessage) -> None:
    text = msg.data.get("text")
    if not isinstance(text, str) or not text.strip():
        await session._send(wire.failed_ack(msg.type, "text is required"))
        return
    if bounds.too_long(text):
        await session._send(wire.failed_ack(msg.type, _length_error("text")))
        return
    if await _usage_exhausted(core, session, msg.type):
        return
    await session._send(wire.ack(msg.type, "success", "User text message processed", {"text": text}))
    # Typed text is the user's message too: Convai's Web SDK shows it only from a final user-transcription.
    await session._send(wire.form_a("user-transcription", {"text": text, "final": True}))
    message_id = msg.data.get("message_id")
    start_turn(core, session, text, message_id=message_id if isinstance(message_id, str) else None, typed=True)


async def _trigger(core: SimCore, session: SimSession, msg: wire.ClientMessage) -> None:
    name = msg.data.get("trigger_name")
    inline = msg.data.get("trigger_message")
    has_name = isinstance(name, str) and bool(name)
    has_inline = isinstance(inline, str) and bool(inline)
    if has_name == has_inline:
        await session._send(
            wire.failed_ack(msg.type, "exactly one of trigger_name or trigger_message is required")
        )
        return
    for field, value in (("trigger_name", name), ("trigger_message", inline)):
        if bounds.too_long(value):
            await session._send(wire.failed_ack(msg.type, _length_error(field)))
            return
    if await _usage_exhausted(core, session, msg.type):
        return
    if has_name and session._character.narrative is not None:
        assert isinstance(name, str)
        await _narrative_trigger(core, session, msg.type, name)
        return
    extras: dict[str, Any] = {"trigger_name": name if has_name else None}
    scripted: str | None = None
    if has_inline:
        assert isinstance(inline, str)
        spoken = speak_text(inline)
        extras["has_speak_tag"] = spoken is not None
        if spoken is not None:
            scripted = spoken.strip()
        text = inline
    else:
        text = f"[trigger: {name}]"
        scripted = f"Trigger {name} received."
    await session._send(wire.ack(msg.type, "success", "Trigger message processed successfully", extras))
    start_turn(core, session, text, transcript=False, scripted=scripted)


async def _narrative_trigger(core: SimCore, session: SimSession, event_type: str, name: str) -> None:
    """A named trigger on a character with a narrative (rules in :mod:`simulator.core.narrative`)."""
    move = narrative.fire(session._character, session._section, name, session._template_keys)
    if move is None:
        await session._send(wire.ack(event_type, "success", narrative.WITHOUT_RESPONSE, {"trigger_name": name}))
        return
    session._section = move.section.id
    if move.speech is None:
        await session._send(wire.ack(event_type, "success", narrative.WITHOUT_RESPONSE, {"trigger_name": name}))
    else:
        await session._send(wire.ack(event_type, "success", narrative.PROCESSED,
                                     {"trigger_name": name, "has_speak_tag": False}))
    await session._send(narrative.behavior_tree_response(move.section))
    if move.speech is not None:
        start_turn(core, session, f"[trigger: {name}]", transcript=False, scripted=move.speech)


async def _template_keys(core: SimCore, session: SimSession, msg: wire.ClientMessage) -> None:
    keys = msg.data.get("template_keys")
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        await session._send(wire.failed_ack(msg.type, "template_keys must be an object of strings"))
        return
    if any(bounds.too_long(k) or bounds.too_long(v) for k, v in keys.items()):
        await session._send(wire.failed_ack(msg.type, _length_error("a template key or value")))
        return
    if len(session._template_keys.keys() | keys.keys()) > MAX_TEMPLATE_KEYS:
        await session._send(wire.failed_ack(msg.type, f"more than {MAX_TEMPLATE_KEYS} template keys"))
        return
    session._template_keys.update(keys)
    await session._send(wire.ack(msg.type, "success", "Template keys updated successfully"))


async def _scene_metadata(core: SimCore, session: SimSession, msg: wire.ClientMessage) -> None:
    items = msg.data.get("scene_metadata", msg.data.get("metadata"))
    if not isinstance(items, list):
        await session._send(wire.failed_ack(msg.type, "scene_metadata must be a list"))
        return
    session._scene_metadata = list(items)
    await session._send(wire.ack(msg.type, "success", "Scene metadata updated successfully"))


async def _dynamic_info(core: SimCore, session: SimSession, msg: wire.ClientMessage) -> None:
    info = msg.data.get("dynamic_info")
    text = info.get("text") if isinstance(info, dict) else None
    static = info.get("static_text") if isinstance(info, dict) else None
    if not (isinstance(text, str) and text) and not (isinstance(static, str) and static):
        await session._send(wire.ack(msg.type, "error", "No text provided in dynamic info"))
        return
    try:
        if isinstance(static, str) and static:
            session._context.set_static(static)
        if isinstance(text, str) and text:
            session._context.replace(text)
    except ContextError as exc:
        await session._send(wire.failed_ack(msg.type, str(exc)))
        return
    session._context.revision += 1
    await session._send(wire.ack(msg.type, "success"))


async def _context_update(core: SimCore, session: SimSession, msg: wire.ClientMessage) -> None:
    data = msg.data
    try:
        settings = _action_update(session, data)
    except features.FeatureError as exc:
        await session._send(wire.failed_ack(msg.type, f"{'.'.join(exc.entry['loc'][1:])}: {exc}"))
        return
    if settings is not None and not data.get("text") and data.get("mode", "append") != "reset":
        session._actions = settings  # an action-only update leaves the context text alone
        await session._send(wire.ack(msg.type, "success", "Action config updated",
                                     session._context.extras(_update_id(msg), False)))
        return
    try:
        result = session._context.apply(data, msg.envelope_id)
    except ContextError as exc:
        await session._send(wire.failed_ack(msg.type, str(exc)))
        return
    if settings is not None:
        session._actions = settings
    await session._send(wire.ack(msg.type, "success", result.message, result.extras))
    if result.run_llm:
        start_turn(core, session, result.text, transcript=False)


def _action_update(session: SimSession, data: dict[str, Any]) -> features.ActionSettings | None:
    """The action config a ``context-update`` leaves in force (None: it changes none). ``action_config``
    replaces the lists it names; ``current_attention_object`` (``""`` clears it) the attention object."""
    if "action_config" not in data and "current_attention_object" not in data:
        return None
    settings = session._actions
    if data.get("action_config") is not None:
        settings = features.parse_actions(data["action_config"], ("action_config",), settings)
    if "current_attention_object" in data:
        attention = features.attention_name(data["current_attention_object"], ("current_attention_object",))
        settings = dataclasses.replace(settings, current_attention_object=attention)
    return settings


def _update_id(msg: wire.ClientMessage) -> str | None:
    raw = msg.data.get("update_id", msg.envelope_id)
    return None if raw is None else str(raw)[:256]


def _flag(msg: wire.ClientMessage, key: str) -> bool | None:
    value = msg.data.get(key)
    return value if isinstance(value, bool) else None


async def _tts_toggle(core: SimCore, session: SimSession, msg: wire.ClientMessage) -> None:
    enabled = _flag(msg, "enabled")
    if enabled is None:
        await session._send(wire.failed_ack(msg.type, "enabled must be a boolean"))
        return
    session._tts_enabled = enabled
    text = "TTS enabled" if enabled else "TTS disabled"
    await session._send(wire.ack(msg.type, "success", text, {"enabled": enabled}))


async def _stt_toggle(core: SimCore, session: SimSession, msg: wire.ClientMessage) -> None:
    muted = _flag(msg, "muted")
    if muted is None:
        await session._send(wire.failed_ack(msg.type, "muted must be a boolean"))
        return
    session._stt_muted = muted
    await session._send(wire.ack(msg.type, "success", "STT muted" if muted else "STT unmuted", {"muted": muted}))


async def _usage_toggle(core: SimCore, session: SimSession, msg: wire.ClientMessage) -> None:
    enabled = _flag(msg, "enabled")
    if enabled is None:
        await session._send(wire.failed_ack(msg.type, "enabled must be a boolean"))
        return
    session._usage_tracking = enabled
    await session._send(wire.ack(msg.type, "success", None, {"enabled": enabled}))


async def _interrupt(core: SimCore, session: SimSession, msg: wire.ClientMessage) -> None:
    await session._send(wire.ack(msg.type, "success"))
    if session._turn is not None and not session._turn.finished:
        session._turn.interrupted = True


async def _plain_ack(core: SimCore, session: SimSession, msg: wire.ClientMessage) -> None:
    """``reset-idle-timer`` (the idle reset already happened on receipt), ``force-user-stopped-speaking``."""
    await session._send_text(wire.plain_ack_text(msg.type))


async def _kill_pipeline(core: SimCore, session: SimSession, msg: wire.ClientMessage) -> None:
    await session._send(wire.ack(msg.type, "success", "Pipeline killed successfully", {"room_name": None}))
    core.end(session, 1000, "Pipeline killed")


HANDLERS: dict[str, Handler] = {
    "user_text_message": _user_text,
    "trigger-message": _trigger,
    "update-template-keys": _template_keys,
    "update-scene-metadata": _scene_metadata,
    "update-dynamic-info": _dynamic_info,
    "context-update": _context_update,
    "tts-toggle": _tts_toggle,
    "stt-toggle": _stt_toggle,
    "interrupt-bot": _interrupt,
    "force-user-stopped-speaking": _plain_ack,
    "reset-idle-timer": _plain_ack,
    "kill-pipeline": _kill_pipeline,
    "usage-toggle": _usage_toggle,
}
