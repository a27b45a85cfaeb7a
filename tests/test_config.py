"""Pure unit tests of ConvaiConfig (DESIGN.md §4): defaults, validation, secrecy, from_env."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest

from convai_sync import (
    ConfigurationError,
    ConvaiConfig,
    ConvaiError,
    ErrorCode,
    EventDeliveryPolicy,
    ReconnectPolicy,
    RetryPolicy,
    SessionErrorStage,
    SlotWaitPolicy,
)

pytestmark = pytest.mark.timeout(10)

SECRET = "sk-SECRET-123"


# ---- defaults -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("api_key", ""),
        ("character_id", ""),
        ("url", "https://live.convai.com"),
        ("transport", "websocket"),
        ("connection_timeout", 30),
        ("delivery_policy", EventDeliveryPolicy.BACKGROUND),
        ("strict_handlers", False),
        ("slot_wait", None),
        ("end_user_id", None),
        ("end_user_metadata", None),
        ("character_session_id", None),
        ("max_session_duration", None),
        ("tts_enabled", True),
        ("enable_emotion", True),
    ],
)
def test_default_value(name: str, expected: object) -> None:
    assert getattr(ConvaiConfig(), name) == expected


def test_default_policies_are_the_documented_ones() -> None:
    cfg = ConvaiConfig()
    assert isinstance(cfg.retry_policy, RetryPolicy)
    assert cfg.retry_policy.max_attempts == 4
    assert isinstance(cfg.reconnect_policy, ReconnectPolicy)
    assert cfg.reconnect_policy.max_attempts == 3


def test_default_ack_timeout_is_positive_seconds() -> None:
    assert ConvaiConfig().ack_timeout > 0


# ---- frozen -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), [("api_key", "x"), ("url", "http://h"), ("connection_timeout", 5.0)])
def test_config_is_frozen(name: str, value: object) -> None:
    cfg = ConvaiConfig(api_key="k", character_id="c")
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, name, value)
    assert cfg.api_key == "k"


def test_replace_returns_a_new_validated_copy() -> None:
    cfg = ConvaiConfig(api_key="k", character_id="c")
    other = cfg.replace(connection_timeout=60)
    assert other.connection_timeout == 60 and cfg.connection_timeout == 30
    with pytest.raises(ConfigurationError) as info:
        cfg.replace(connection_timeout=0)
    assert info.value.error_code is ErrorCode.CONFIG_INVALID


# ---- invalid values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connection_timeout": 0},
        {"connection_timeout": 121},
        {"connection_timeout": 120.5},
        {"connection_timeout": -1},
        {"connection_timeout": math.nan},
        {"connection_timeout": math.inf},
        {"ack_timeout": -1},
        {"ack_timeout": 0},
        {"close_timeout": -0.1},
        {"http_timeout": 0},
        {"url": "ftp://live.convai.com"},
        {"url": "ws://live.convai.com"},
        {"url": "live.convai.com"},
        {"url": "https://"},
        {"url": ""},
        {"transport": "sse"},
        {"transport": "WebSocket"},
        {"transport": ""},
        {"event_queue_size": 0},
        {"event_queue_size": -5},
        {"max_session_duration": 0},
        {"max_session_duration": -10},
        {"session_duration_warnings": (60.0, 0.0)},
        {"delivery_policy": "background"},
        {"end_user_metadata": ["not", "a", "mapping"]},
        {"api_key": 123},
        {"character_id": None},
    ],
    ids=lambda kw: ",".join(f"{k}={v!r}" for k, v in kw.items()),
)
def test_invalid_value_raises_config_invalid(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError) as info:
        ConvaiConfig(**{"api_key": "k", "character_id": "c", **kwargs})  # type: ignore[arg-type]
    err = info.value
    assert isinstance(err, ConvaiError)
    assert isinstance(err, ValueError)
    assert err.error_code is ErrorCode.CONFIG_INVALID
    assert err.error_code == "config.invalid"  # type: ignore[comparison-overlap]  # a str enum, by design
    assert err.error.stage is SessionErrorStage.CONFIGURATION
    assert err.error.is_recoverable is False


def test_non_numeric_connection_timeout_raises_config_invalid() -> None:
    with pytest.raises(ConfigurationError) as info:
        ConvaiConfig(connection_timeout="30")  # type: ignore[arg-type]
    assert info.value.error_code is ErrorCode.CONFIG_INVALID


def test_non_integer_queue_size_raises_config_invalid() -> None:
    with pytest.raises(ConfigurationError) as info:
        ConvaiConfig(event_queue_size="big")  # type: ignore[arg-type]
    assert info.value.error_code is ErrorCode.CONFIG_INVALID


def test_nan_ack_timeout_raises_config_invalid() -> None:
    with pytest.raises(ConfigurationError):
        ConvaiConfig(ack_timeout=math.nan)


@pytest.mark.parametrize("timeout", [120, 120.0, 0.001, 1, 30])
def test_connection_timeout_in_range_is_allowed(timeout: float) -> None:
    assert ConvaiConfig(connection_timeout=timeout).connection_timeout == timeout


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "http://127.0.0.1:8080"},
        {"url": "https://live.convai.com/"},
        {"transport": "livekit"},
        {"event_queue_size": 1},
        {"max_session_duration": 1.5},
        {"slot_wait": SlotWaitPolicy(max_wait=10, interval=1)},
        {"delivery_policy": EventDeliveryPolicy.MAIN_THREAD},
        {"delivery_policy": EventDeliveryPolicy.IMMEDIATE},
        {"end_user_id": "user-1", "end_user_metadata": {"name": "Ann"}},
        {"strict_handlers": True},
    ],
    ids=lambda kw: ",".join(kw),
)
def test_valid_values_are_accepted_and_kept(kwargs: dict[str, Any]) -> None:
    cfg = ConvaiConfig(**kwargs)
    for name, value in kwargs.items():
        assert getattr(cfg, name) == value


# ---- validate_for_connect --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_key", "character_id", "code"),
    [
        ("", "char", ErrorCode.CONFIG_API_KEY_MISSING),
        ("   ", "char", ErrorCode.CONFIG_API_KEY_MISSING),
        ("\t\n", "char", ErrorCode.CONFIG_API_KEY_MISSING),
        ("", "", ErrorCode.CONFIG_API_KEY_MISSING),
        (SECRET, "", ErrorCode.CONFIG_CHARACTER_ID_MISSING),
        (SECRET, "  ", ErrorCode.CONFIG_CHARACTER_ID_MISSING),
    ],
)
def test_validate_for_connect_reports_missing_credentials(api_key: str, character_id: str, code: ErrorCode) -> None:
    cfg = ConvaiConfig(api_key=api_key, character_id=character_id)
    with pytest.raises(ConfigurationError) as info:
        cfg.validate_for_connect()
    assert info.value.error_code is code
    assert info.value.error.stage is SessionErrorStage.CONFIGURATION
    assert SECRET not in str(info.value)


def test_validate_for_connect_passes_when_both_set() -> None:
    ConvaiConfig(api_key=SECRET, character_id="char").validate_for_connect()


@pytest.mark.parametrize("code", ["config.api_key_missing", "config.character_id_missing"])
def test_missing_credential_codes_compare_to_strings(code: str) -> None:
    cfg = ConvaiConfig(api_key="" if code == "config.api_key_missing" else "k")
    with pytest.raises(ConfigurationError) as info:
        cfg.validate_for_connect()
    assert info.value.error_code == code


# ---- the API key is never shown --------------------------------------------------------------


@pytest.mark.parametrize("render", [repr, str, format, lambda c: f"{c!r} {c!s}"])
def test_api_key_not_in_repr_or_str(render: Callable[[ConvaiConfig], str]) -> None:
    cfg = ConvaiConfig(api_key=SECRET, character_id="char-1")
    text = render(cfg)
    assert SECRET not in text
    assert "SECRET" not in text
    assert "char-1" in text


def test_api_key_not_in_repr_of_containers() -> None:
    cfg = ConvaiConfig(api_key=SECRET, character_id="c")
    assert SECRET not in repr([cfg]) and SECRET not in repr({"cfg": cfg})


def test_api_key_not_in_validation_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        ConvaiConfig(api_key=SECRET, character_id="c", url="gopher://x")
    assert SECRET not in str(info.value)
    assert SECRET not in info.value.error.message


def test_api_key_still_readable_as_attribute() -> None:
    assert ConvaiConfig(api_key=SECRET).api_key == SECRET


# ---- from_env -------------------------------------------------------------------------------


def test_from_env_reads_the_three_variables() -> None:
    env = {"CONVAI_API_KEY": SECRET, "CONVAI_CHARACTER_ID": "char-9", "CONVAI_URL": "http://127.0.0.1:9000"}
    cfg = ConvaiConfig.from_env(env)
    assert cfg.api_key == SECRET
    assert cfg.character_id == "char-9"
    assert cfg.url == "http://127.0.0.1:9000"


@pytest.mark.parametrize("env", [{}, {"CONVAI_URL": ""}, {"OTHER": "x"}])
def test_from_env_defaults_when_variables_absent(env: dict[str, str]) -> None:
    cfg = ConvaiConfig.from_env(env)
    assert cfg.api_key == ""
    assert cfg.character_id == ""
    assert cfg.url == "https://live.convai.com"


def test_from_env_with_missing_key_fails_only_at_connect_validation() -> None:
    cfg = ConvaiConfig.from_env({"CONVAI_CHARACTER_ID": "c"})
    with pytest.raises(ConfigurationError) as info:
        cfg.validate_for_connect()
    assert info.value.error_code is ErrorCode.CONFIG_API_KEY_MISSING


@pytest.mark.parametrize(
    ("overrides", "name", "expected"),
    [
        ({"api_key": "override-key"}, "api_key", "override-key"),
        ({"character_id": "other"}, "character_id", "other"),
        ({"url": "https://example.test"}, "url", "https://example.test"),
        ({"connection_timeout": 90}, "connection_timeout", 90),
        ({"transport": "livekit"}, "transport", "livekit"),
        ({"strict_handlers": True}, "strict_handlers", True),
    ],
)
def test_from_env_overrides_win(overrides: dict[str, Any], name: str, expected: object) -> None:
    env = {"CONVAI_API_KEY": SECRET, "CONVAI_CHARACTER_ID": "char-9", "CONVAI_URL": "http://127.0.0.1:9000"}
    assert getattr(ConvaiConfig.from_env(env, **overrides), name) == expected


def test_from_env_invalid_url_raises_config_invalid() -> None:
    with pytest.raises(ConfigurationError) as info:
        ConvaiConfig.from_env({"CONVAI_URL": "not a url"})
    assert info.value.error_code is ErrorCode.CONFIG_INVALID


def test_from_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVAI_API_KEY", SECRET)
    monkeypatch.setenv("CONVAI_CHARACTER_ID", "from-os")
    monkeypatch.delenv("CONVAI_URL", raising=False)
    cfg = ConvaiConfig.from_env()
    assert (cfg.api_key, cfg.character_id, cfg.url) == (SECRET, "from-os", "https://live.convai.com")
