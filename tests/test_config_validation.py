"""Every ConvaiConfig field and every policy field is validated at construction.

Regressions: ``retry_policy=None``, ``slot_wait=5``, ``reconnect_policy="none"``, ``end_user_id=42``,
``tts_enabled="no"``, ``enable_emotion=None`` and a URL with a leading space used to be accepted
(the first ones then failed on the SDK thread, ``connect()`` hanging or reporting
``connection.failed: AttributeError``); policies took strings, bools, NaN and lists.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest

from convai_sync import (
    ConfigurationError,
    ConvaiConfig,
    ErrorCode,
    EventDeliveryPolicy,
    ReconnectPolicy,
    RetryPolicy,
    SessionErrorStage,
    SlotWaitPolicy,
)
from convai_sync.character import SceneObject

pytestmark = pytest.mark.timeout(10)


def stable_repr(value: object) -> str:
    """``repr(value)`` without object addresses, so a test's id is the same in every process (pytest-xdist
    refuses to run when two workers collect different ids)."""
    return re.sub(r" at 0x[0-9a-f]+", "", repr(value))

KEY = "sk-validation-KEY-0123456789"


def _invalid(factory: Any, **kwargs: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        factory(**kwargs)
    err = info.value
    assert err.error_code is ErrorCode.CONFIG_INVALID
    assert err.error.stage is SessionErrorStage.CONFIGURATION
    assert isinstance(err, ValueError)
    return err


# ---- the reported findings, with the exact message shape --------------------------------------


def test_slot_wait_int_names_field_type_and_value() -> None:
    err = _invalid(ConvaiConfig, slot_wait=5)
    assert err.error.message == "ConvaiConfig.slot_wait must be a SlotWaitPolicy or None, got int 5"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("retry_policy", None, "ConvaiConfig.retry_policy must be a RetryPolicy, got None"),
        ("reconnect_policy", "none", "ConvaiConfig.reconnect_policy must be a ReconnectPolicy, got str 'none'"),
        ("end_user_id", 42, "ConvaiConfig.end_user_id must be a str without control characters or None, got int 42"),
        ("tts_enabled", "no", "ConvaiConfig.tts_enabled must be a bool (True or False), got str 'no'"),
        ("enable_emotion", None, "ConvaiConfig.enable_emotion must be a bool (True or False), got None"),
    ],
)
def test_reported_findings_are_refused(name: str, value: object, expected: str) -> None:
    assert _invalid(ConvaiConfig, **{name: value}).error.message == expected


@pytest.mark.parametrize("url", [" https://live.convai.com", "https://live.convai.com ", "https://live.convai.com\n",
                                 "https://live .convai.com", "https://live.convai.com/\t"])
def test_url_with_whitespace_is_refused(url: str) -> None:
    err = _invalid(ConvaiConfig, url=url)
    assert err.error.message.startswith("ConvaiConfig.url must be an http(s) base URL")


# ---- every field: one or more invalid values each ------------------------------------------------

INVALID: list[tuple[str, object]] = [
    ("api_key", 123), ("api_key", b"bytes-key"), ("api_key", None),
    ("character_id", None), ("character_id", 7), ("character_id", "abc\x00def"),
    ("url", None), ("url", 42), ("url", "ftp://live.convai.com"), ("url", "https://user:pw@live.convai.com"),
    ("url", "https://live.convai.com/?x=1"), ("url", "https://live.convai.com/#frag"), ("url", "http://h:99999"),
    ("transport", None), ("transport", "WebSocket"), ("transport", 1),
    ("connection_timeout", True), ("connection_timeout", None), ("connection_timeout", "30"),
    ("connection_timeout", math.inf), ("connection_timeout", -math.inf),
    ("retry_policy", None), ("retry_policy", {"max_attempts": 2}), ("retry_policy", ReconnectPolicy()),
    ("reconnect_policy", None), ("reconnect_policy", "none"), ("reconnect_policy", RetryPolicy()),
    ("slot_wait", 5), ("slot_wait", True), ("slot_wait", RetryPolicy()),
    ("delivery_policy", None), ("delivery_policy", "BACKGROUND"), ("delivery_policy", 1),
    ("end_user_id", 42), ("end_user_id", ["u"]), ("end_user_id", "user\n1"),
    ("end_user_metadata", "name=Ann"), ("end_user_metadata", {"when": object()}),
    ("end_user_metadata", {"score": math.nan}), ("end_user_metadata", {"score": math.inf}),
    ("end_user_metadata", {1: "not a str key"}), ("end_user_metadata", {"name": 5}),
    ("character_session_id", 5), ("character_session_id", b"abc"),
    ("tts_enabled", "no"), ("tts_enabled", None), ("tts_enabled", 0), ("tts_enabled", 1),
    ("enable_emotion", None), ("enable_emotion", "yes"),
    ("max_session_duration", True), ("max_session_duration", math.nan), ("max_session_duration", math.inf),
    ("max_session_duration", 86400.5), ("max_session_duration", "60"),
    ("session_duration_warnings", [60.0, 10.0]), ("session_duration_warnings", (math.nan,)),
    ("session_duration_warnings", (True,)), ("session_duration_warnings", (-1.0,)), ("session_duration_warnings", None),
    ("session_duration_warnings", 60.0),
    ("reset_duration_on_reconnect", "false"), ("reset_duration_on_reconnect", None),
    ("ack_timeout", True), ("ack_timeout", None), ("ack_timeout", math.inf), ("ack_timeout", 1e12),
    ("strict_handlers", 1), ("strict_handlers", None),
    ("auto_reset_idle", "True"), ("auto_reset_idle", None),
    ("immediate_handler_budget", 0), ("immediate_handler_budget", False), ("immediate_handler_budget", 61),
    ("event_queue_size", True), ("event_queue_size", 5.0), ("event_queue_size", None), ("event_queue_size", 10**9),
    ("close_timeout", None), ("close_timeout", math.nan), ("close_timeout", False), ("close_timeout", 1e12),
    ("http_timeout", None), ("http_timeout", math.inf), ("http_timeout", True), ("http_timeout", -1),
    ("disconnect_timeout", 0), ("disconnect_timeout", None), ("disconnect_timeout", True),
    ("keepalive_interval", 0), ("keepalive_interval", math.nan), ("keepalive_interval", "20"),
    ("keepalive_timeout", None), ("keepalive_timeout", -1), ("keepalive_timeout", 1e12),
    ("max_message_bytes", 100), ("max_message_bytes", 17 * 1024 * 1024), ("max_message_bytes", 2.5e6),
    ("max_message_bytes", True),
    ("send_queue_bytes", 0), ("send_queue_bytes", None), ("send_queue_bytes", 1 << 31),
    ("close_grace", 0), ("close_grace", 11), ("close_grace", None),
    ("ice_transport_policy", "RELAY"), ("ice_transport_policy", None),
    ("audio_routing", "audio"), ("audio_routing", None),
    ("audio_sample_rate", 7999), ("audio_sample_rate", 16000.0), ("audio_sample_rate", True),
    ("receive_audio", "yes"), ("receive_audio", None),
    ("audio_queue_frames", 0), ("audio_queue_frames", None),
    ("action_config", {"actions": ["Pick Up"]}), ("action_config", "Pick Up"),
    ("scene_description", (SceneObject("door"), SceneObject("Door"))), ("scene_description", ("door",)),
    ("scene_description", None),
    ("narrative_template_keys", None), ("narrative_template_keys", {"name": 5}), ("narrative_template_keys", {"": "x"}),
    ("narrative_template_keys", "name=Ada"),
    ("blendshape_config", "arkit"), ("blendshape_config", {"format": "arkit"}),
    ("dynamic_info", "the player has a lantern"), ("dynamic_info", {"text": "x"}),
    ("debug", "true"), ("debug", None), ("debug", 1),
    ("vad_params", {"confidence": 0.5}), ("vad_params", 0.7),
    ("turn_detection_config", "smart_turn"),
    ("stt_enabled", None), ("stt_enabled", "yes"),
    ("thinking_mode", 1), ("thinking_mode", None),
    ("pending_trigger_limit", 0), ("pending_trigger_limit", None), ("pending_trigger_limit", 10**6),
    ("llm_provider", "gpt"), ("llm_provider", None),
    ("stt_provider", 5), ("stt_provider", "a\nb"),
    ("debug_row_cap", 0), ("debug_row_cap", True), ("debug_row_cap", 2.5),
    ("invocation_metadata", "game"), ("invocation_metadata", {"n": math.nan}),
    ("auth_token", 5), ("auth_token", "tok en"), ("auth_token", "tok\u00e9n"),
    ("token_provider", "not callable"), ("token_provider", 5),
    ("session_store", "sessions.json"), ("session_store", {}),
    ("record_to", 42), ("record_to", ""), ("record_to", b"session.jsonl"),
]


@pytest.mark.parametrize(("name", "value"), INVALID, ids=[f"{n}={stable_repr(v)}" for n, v in INVALID])
def test_every_field_refuses_wrong_values_naming_the_field(name: str, value: object) -> None:
    err = _invalid(ConvaiConfig, **{name: value})
    assert err.error.message.startswith(f"ConvaiConfig.{name} must be ")
    assert " got " in err.error.message


def test_every_field_has_a_case_above_and_a_rule() -> None:
    names = {f.name for f in dataclasses.fields(ConvaiConfig)}
    assert {name for name, _ in INVALID} == names
    assert set(ConvaiConfig.field_rules()) == names


@pytest.mark.parametrize("name", ["connection_timeout", "ack_timeout", "close_timeout", "http_timeout",
                                  "immediate_handler_budget", "max_session_duration", "event_queue_size"])
@pytest.mark.parametrize("value", [True, False])
def test_bool_is_never_a_number(name: str, value: bool) -> None:
    _invalid(ConvaiConfig, **{name: value})


def test_replace_validates_too() -> None:
    cfg = ConvaiConfig(api_key=KEY, character_id="c")
    err = _invalid(cfg.replace, slot_wait=5)
    assert "ConvaiConfig.slot_wait" in err.error.message


def test_long_values_are_shortened_in_the_message() -> None:
    err = _invalid(ConvaiConfig, transport="x" * 10_000)
    assert len(err.error.message) < 300


def test_url_with_credentials_is_not_echoed() -> None:
    err = _invalid(ConvaiConfig, url="https://admin:hunter22@live.convai.com")
    assert "hunter22" not in str(err)


def test_api_key_in_an_invalid_url_is_not_echoed() -> None:
    err = _invalid(ConvaiConfig, api_key=KEY, url=f"https://live.convai.com/?key={KEY}")
    assert KEY not in str(err) and "***" in str(err)


def test_deeply_nested_metadata_is_refused_not_crashing() -> None:
    nested: dict[str, Any] = {}
    node = nested
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]
    err = _invalid(ConvaiConfig, end_user_metadata=nested)
    assert "RecursionError" in err.error.message


# ---- what stays accepted --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"api_key": "", "character_id": ""},
        {"url": "http://127.0.0.1:8080", "transport": "livekit"},
        {"url": "https://proxy.example/convai/"},
        {"connection_timeout": 120, "ack_timeout": 3600, "close_timeout": 0.01, "http_timeout": 1},
        {"slot_wait": SlotWaitPolicy(max_wait=10, interval=1)},
        {"slot_wait": None, "max_session_duration": None},
        {"end_user_id": "user-1", "end_user_metadata": {"name": "Ann", "tags": ["a", "b"], "n": 1.5}},
        {"end_user_metadata": {"name": None}},
        {"character_session_id": "3f1c2b4e-0000-4000-8000-000000000000"},
        {"session_duration_warnings": ()},
        {"session_duration_warnings": (600, 60.0, 0.5)},
        {"event_queue_size": 1},
        {"delivery_policy": EventDeliveryPolicy.IMMEDIATE, "strict_handlers": True, "auto_reset_idle": True},
    ],
    ids=lambda kw: ",".join(kw) or "defaults",
)
def test_valid_values_are_kept(kwargs: dict[str, Any]) -> None:
    cfg = ConvaiConfig(**kwargs)
    for name, value in kwargs.items():
        assert getattr(cfg, name) == value


def test_empty_credentials_fail_only_at_connect_validation() -> None:
    cfg = ConvaiConfig.from_env({})
    with pytest.raises(ConfigurationError) as info:
        cfg.validate_for_connect()
    assert info.value.error_code is ErrorCode.CONFIG_API_KEY_MISSING


def test_from_env_still_builds_a_config() -> None:
    cfg = ConvaiConfig.from_env({"CONVAI_API_KEY": KEY + "\n", "CONVAI_CHARACTER_ID": " char-9\n",
                                 "CONVAI_URL": "http://127.0.0.1:9000"})
    assert (cfg.api_key, cfg.character_id, cfg.url) == (KEY, "char-9", "http://127.0.0.1:9000")


def test_from_env_url_with_trailing_newline_is_refused() -> None:
    err = _invalid(ConvaiConfig.from_env, environ={"CONVAI_URL": "https://live.convai.com\n"})
    assert err.error.message.startswith("ConvaiConfig.url ")


# ---- api_key hygiene --------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [f"{KEY}\n", f"  {KEY}", f"\t{KEY}\r\n", f"\n{KEY} \n"])
def test_api_key_surrounding_whitespace_is_stripped(raw: str) -> None:
    assert ConvaiConfig(api_key=raw).api_key == KEY


@pytest.mark.parametrize("bad", [" ", "\t", "\x00", "\x7f", "\u00a0", "\u200b", "\u2019", "é", "\ufeff"])
def test_api_key_with_inner_whitespace_control_or_non_ascii_is_refused_without_echo(bad: str) -> None:
    key = KEY[:10] + bad + KEY[10:]
    err = _invalid(ConvaiConfig, api_key=key)
    message = err.error.message
    assert message.startswith("ConvaiConfig.api_key must be ")
    assert f"U+{ord(bad):04X}" in message
    for shown in (key, KEY[:10], KEY[10:], repr(key)):
        assert shown not in message and shown not in str(err) and shown not in repr(err)


def test_api_key_of_wrong_type_is_not_echoed() -> None:
    err = _invalid(ConvaiConfig, api_key=b"sk-bytes-secret-123")
    assert "sk-bytes-secret-123" not in str(err)
    assert "bytes (value not shown)" in err.error.message


def test_api_key_kept_out_of_other_fields_messages() -> None:
    err = _invalid(ConvaiConfig, api_key=KEY, character_id=KEY + "\x00")
    assert KEY not in str(err)


# ---- policies -----------------------------------------------------------------------------------

POLICY_INVALID: list[tuple[type, str, object]] = [
    (RetryPolicy, "max_attempts", "3"), (RetryPolicy, "max_attempts", True), (RetryPolicy, "max_attempts", 2.0),
    (RetryPolicy, "max_attempts", 0), (RetryPolicy, "max_attempts", None), (RetryPolicy, "max_attempts", 10**6),
    (RetryPolicy, "delays", [0, 1, 2]), (RetryPolicy, "delays", ()), (RetryPolicy, "delays", (0.0, math.nan)),
    (RetryPolicy, "delays", (math.inf,)), (RetryPolicy, "delays", (-1.0,)), (RetryPolicy, "delays", (True, 1.0)),
    (RetryPolicy, "delays", ("1",)), (RetryPolicy, "delays", 1.0), (RetryPolicy, "delays", (7200.0,)),
    (RetryPolicy, "retryable", None), (RetryPolicy, "retryable", "connection.timeout"),
    (ReconnectPolicy, "max_attempts", "3"), (ReconnectPolicy, "max_attempts", False),
    (ReconnectPolicy, "max_attempts", -1), (ReconnectPolicy, "delays", [0.5]),
    (ReconnectPolicy, "delays", (math.nan,)), (ReconnectPolicy, "server_shutdown_delay", math.nan),
    (ReconnectPolicy, "server_shutdown_delay", True), (ReconnectPolicy, "server_shutdown_delay", -5.0),
    (ReconnectPolicy, "resume", "yes"), (ReconnectPolicy, "resume", None), (ReconnectPolicy, "resume", 1),
    (SlotWaitPolicy, "max_wait", math.inf), (SlotWaitPolicy, "max_wait", True), (SlotWaitPolicy, "max_wait", -1),
    (SlotWaitPolicy, "max_wait", "120"), (SlotWaitPolicy, "interval", math.nan), (SlotWaitPolicy, "interval", 0),
    (SlotWaitPolicy, "interval", True), (SlotWaitPolicy, "interval", None),
]


@pytest.mark.parametrize(("cls", "name", "value"), POLICY_INVALID,
                         ids=[f"{c.__name__}.{n}={v!r}" for c, n, v in POLICY_INVALID])
def test_policy_fields_are_validated_naming_the_field(cls: type, name: str, value: object) -> None:
    err = _invalid(cls, **{name: value})
    assert err.error.message.startswith(f"{cls.__name__}.{name} must be ")


def test_policy_message_shape() -> None:
    err = _invalid(RetryPolicy, max_attempts="3")
    assert err.error.message == "RetryPolicy.max_attempts must be an int in [1, 1000], got str '3'"
    err = _invalid(RetryPolicy, delays=(0.0, math.nan))
    assert "item 1 is float nan" in err.error.message


def test_every_policy_field_has_a_case() -> None:
    for cls in (RetryPolicy, ReconnectPolicy, SlotWaitPolicy):
        covered = {n for c, n, _ in POLICY_INVALID if c is cls}
        assert covered == {f.name for f in dataclasses.fields(cls)}, cls.__name__


@pytest.mark.parametrize(
    "policy",
    [RetryPolicy(), RetryPolicy(max_attempts=1, delays=(0,)), RetryPolicy(retryable=lambda code: False),
     ReconnectPolicy(max_attempts=0), ReconnectPolicy(delays=(0, 0.5), server_shutdown_delay=0, resume=False),
     SlotWaitPolicy(max_wait=0, interval=0.05), SlotWaitPolicy(max_wait=86400, interval=3600)],
    ids=stable_repr,
)
def test_valid_policies_are_accepted(policy: object) -> None:
    field = {RetryPolicy: "retry_policy", ReconnectPolicy: "reconnect_policy", SlotWaitPolicy: "slot_wait"}
    name = field[type(policy)]
    # The field is picked by the policy's type at run time, which mypy cannot follow into **kwargs.
    assert getattr(ConvaiConfig(**{name: policy}), name) is policy  # type: ignore[arg-type]
