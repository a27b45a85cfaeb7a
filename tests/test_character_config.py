"""The character settings (actions, scene, narrative keys, lip-sync, dynamic info, VAD, turn
detection, debug) are validated at construction naming the field, and sent in ``POST /connect``
as Convai's connect API documents them."""

from __future__ import annotations

import math
from typing import Any

import pytest

from convai_sync import (
    ActionConfig,
    BlendshapeConfig,
    ConfigurationError,
    ConvaiConfig,
    DynamicInfo,
    ErrorCode,
    SceneCharacter,
    SceneObject,
    TurnDetectionConfig,
    VadParams,
)
from convai_sync.connect import build_request

pytestmark = pytest.mark.timeout(10)


def _refused(factory: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigurationError) as info:
        factory(**kwargs)
    assert info.value.error_code is ErrorCode.CONFIG_INVALID
    return info.value.error.message


# ---- ActionConfig -----------------------------------------------------------------------------

def test_action_config_stores_lists_as_tuples_and_strips_names() -> None:
    lists: dict[str, Any] = {"actions": [" Pick Up ", "Give"], "objects": [SceneObject("sword", "a rusty sword")],
                             "characters": [SceneCharacter("Ada", "the player")]}
    cfg = ActionConfig(**lists, current_attention_object="sword")
    assert cfg.actions == ("Pick Up", "Give")
    assert cfg.objects == (SceneObject("sword", "a rusty sword"),)
    assert cfg.characters == (SceneCharacter("Ada", "the player"),)


@pytest.mark.parametrize(("kwargs", "field", "detail"), [
    ({"actions": ()}, "actions", "got tuple ()"),
    ({"actions": ("Give", "give")}, "actions", "item 1 repeats the name 'give'"),
    ({"actions": ("Give", "")}, "actions", "item 1 is str ''"),
    ({"actions": ("Give", 3)}, "actions", "item 1 is int 3"),
    ({"actions": "Give"}, "actions", "got str 'Give'"),
    ({"actions": ("Give",), "objects": ("sword",)}, "objects", "item 0 is str 'sword'"),
    ({"actions": ("Give",), "objects": (SceneObject("sword"), SceneObject("Sword"))}, "objects",
     "repeats the name 'Sword'"),
    ({"actions": ("Give",), "characters": (SceneObject("Ada"),)}, "characters", "item 0 is SceneObject"),
    ({"actions": ("Give",), "current_attention_object": "lamp", "objects": (SceneObject("sword"),)},
     "current_attention_object", "got 'lamp'"),
    ({"actions": ("Give",), "current_attention_object": ""}, "current_attention_object", "got str ''"),
])
def test_action_config_refuses_naming_the_field(kwargs: dict[str, Any], field: str, detail: str) -> None:
    message = _refused(ActionConfig, **kwargs)
    assert message.startswith(f"ActionConfig.{field} must ")
    assert detail in message


def test_scene_items_need_a_name() -> None:
    assert _refused(SceneObject, name="  ").startswith("SceneObject.name must be a non-empty str")
    assert _refused(SceneCharacter, name=None).startswith("SceneCharacter.name must be")
    assert _refused(SceneObject, name="door", description=5).startswith("SceneObject.description must be")


@pytest.mark.parametrize(("factory", "kwargs", "field"), [
    (BlendshapeConfig, {"format": "MHA"}, "format"), (BlendshapeConfig, {"format": "ovr"}, "format"),
    (BlendshapeConfig, {"chunk_size": 0}, "chunk_size"), (BlendshapeConfig, {"output_fps": 60.0}, "output_fps"),
    (BlendshapeConfig, {"output_fps": 1000}, "output_fps"),
    (DynamicInfo, {"text": None}, "text"), (DynamicInfo, {"keep_in_context": "yes"}, "keep_in_context"),
    (VadParams, {"confidence": 1.5}, "confidence"), (VadParams, {"stop_secs": math.nan}, "stop_secs"),
    (VadParams, {"min_volume": True}, "min_volume"),
    (TurnDetectionConfig, {"type": "server_vad"}, "type"), (TurnDetectionConfig, {"params": {"x": math.inf}}, "params"),
])
def test_other_settings_refuse_naming_the_field(factory: Any, kwargs: dict[str, Any], field: str) -> None:
    assert _refused(factory, **kwargs).startswith(f"{factory.__name__}.{field} must be ")


def test_unknown_blendshape_format_lists_the_valid_ones() -> None:
    message = _refused(BlendshapeConfig, format="fbx")
    assert "'mha', 'arkit', 'cc4_extended', 'visemes', 'cc5_hd'" in message


# ---- /connect body ----------------------------------------------------------------------------

def test_connect_body_leaves_the_settings_out_by_default() -> None:
    body = build_request(ConvaiConfig(api_key="k", character_id="c"), None)
    for key in ("action_config", "scene_description", "narrative_template_keys", "blendshape_config",
                "blendshape_provider", "dynamic_info", "debug", "vad_params", "turn_detection_config",
                "default_stt_enabled", "thinking_mode", "stt_provider", "debug_row_cap", "invocation_metadata"):
        assert key not in body


def test_connect_body_carries_every_setting() -> None:
    config = ConvaiConfig(
        api_key="k", character_id="c",
        action_config=ActionConfig(actions=("Pick Up", "Give"), objects=(SceneObject("sword", "rusty"),),
                                   characters=(SceneCharacter("Ada", "the player"),),
                                   current_attention_object="sword"),
        scene_description=(SceneObject("shop", "a small shop"),),
        narrative_template_keys={"player_name": "Ada"},
        blendshape_config=BlendshapeConfig(format="arkit", chunk_size=5, output_fps=30),
        dynamic_info=DynamicInfo(text="raining", static_text="a village", keep_in_context=True),
        debug=True, vad_params=VadParams(confidence=0.5), turn_detection_config=TurnDetectionConfig(),
        stt_enabled=False, thinking_mode=True, llm_provider="gemini-live", stt_provider="deepgram",
        debug_row_cap=50, invocation_metadata={"game": "shop"})
    body = build_request(config, None)
    assert body["action_config"] == {
        "actions": ["Pick Up", "Give"], "characters": [{"name": "Ada", "bio": "the player"}],
        "objects": [{"name": "sword", "description": "rusty"}], "current_attention_object": "sword"}
    assert body["scene_description"] == [{"name": "shop", "description": "a small shop"}]
    assert body["narrative_template_keys"] == {"player_name": "Ada"}
    assert body["blendshape_provider"] == "neurosync"
    assert body["blendshape_config"] == {"enable_chunking": True, "chunk_size": 5, "format": "arkit",
                                         "frames_buffer_duration": 0, "output_fps": 30}
    assert body["dynamic_info"] == {"text": "raining", "static_text": "a village", "keep_in_context": True}
    assert body["debug"] is True
    assert body["vad_params"] == {"confidence": 0.5, "start_secs": 0.2, "stop_secs": 0.2, "min_volume": 0.6}
    assert body["turn_detection_config"] == {"type": "smart_turn"}
    assert body["default_stt_enabled"] is False
    assert body["thinking_mode"] is True
    assert body["llm_provider"] == "gemini-live" and body["stt_provider"] == "deepgram"
    assert body["debug_row_cap"] == 50 and body["invocation_metadata"] == {"game": "shop"}


def test_template_keys_are_copied_at_construction() -> None:
    keys = {"player_name": "Ada"}
    config = ConvaiConfig(narrative_template_keys=keys)
    keys["player_name"] = "Bob"
    assert config.narrative_template_keys == {"player_name": "Ada"}
