"""Credential fields of ``ConvaiConfig`` (no network): one credential only, validation naming the field
without showing the value, hygiene in repr, ``from_env`` with a token, and the per-attempt resolution."""

from __future__ import annotations

import pytest

from convai_sync import ConfigurationError, ConvaiConfig, ErrorCode, SessionStore
from convai_sync.credentials import API_KEY_HEADER, TOKEN_HEADER, CredentialFailed, Credentials

TOKEN = "tok-0123456789abcdef"


def test_auth_token_is_stripped_hidden_and_checked_without_showing_it() -> None:
    config = ConvaiConfig(auth_token=f"  {TOKEN}\n", character_id="c")
    assert config.auth_token == TOKEN
    assert TOKEN not in repr(config) and "auth_token='***'" in repr(config)
    with pytest.raises(ConfigurationError) as raised:
        ConvaiConfig(auth_token="tok 0123456789", character_id="c")
    assert "ConvaiConfig.auth_token" in str(raised.value) and "tok 0123456789" not in str(raised.value)


def test_one_credential_only_and_none_is_allowed_until_connect() -> None:
    with pytest.raises(ConfigurationError, match="api_key and auth_token and token_provider"):
        ConvaiConfig(api_key="key-12345678", auth_token=TOKEN, token_provider=lambda: TOKEN)
    empty = ConvaiConfig(character_id="c", auth_token="")  # "" counts as unset
    with pytest.raises(ConfigurationError) as raised:
        empty.validate_for_connect()
    assert raised.value.error_code is ErrorCode.CONFIG_API_KEY_MISSING
    ConvaiConfig(character_id="c", token_provider=lambda: TOKEN).validate_for_connect()
    ConvaiConfig(character_id="c", auth_token=TOKEN).validate_for_connect()


def test_from_env_leaves_the_environment_key_out_when_a_token_is_given() -> None:
    env = {"CONVAI_API_KEY": "env-key-1234", "CONVAI_CHARACTER_ID": "c"}
    config = ConvaiConfig.from_env(env, token_provider=lambda: TOKEN)
    assert config.api_key == "" and config.character_id == "c"
    assert ConvaiConfig.from_env(env).api_key == "env-key-1234"


def test_session_store_and_token_provider_are_type_checked() -> None:
    with pytest.raises(ConfigurationError, match="ConvaiConfig.session_store must be a SessionStore or None"):
        ConvaiConfig(session_store="sessions.json")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ConvaiConfig.token_provider must be a callable or None"):
        ConvaiConfig(token_provider=TOKEN)  # type: ignore[arg-type]
    assert isinstance(ConvaiConfig(session_store=SessionStore("s.json")).session_store, SessionStore)


def test_credentials_per_attempt() -> None:
    key = Credentials(ConvaiConfig(api_key="key-12345678", character_id="c")).for_attempt()
    assert (key.header, key.value, key.is_token) == (API_KEY_HEADER, "key-12345678", False)
    assert "key-12345678" not in repr(key)
    one_shot = Credentials(ConvaiConfig(auth_token=TOKEN, character_id="c"))
    first = one_shot.for_attempt()
    assert (first.header, first.value) == (TOKEN_HEADER, TOKEN)
    with pytest.raises(CredentialFailed) as spent:
        one_shot.for_attempt()
    assert spent.value.error.error_code is ErrorCode.CONFIG_AUTH_TOKEN_PROVIDER_MISSING
    minted = iter(["a-token-1", " a-token-2\n"])
    provider = Credentials(ConvaiConfig(token_provider=lambda: next(minted), character_id="c"))
    assert [provider.for_attempt().value for _ in range(2)] == ["a-token-1", "a-token-2"]
