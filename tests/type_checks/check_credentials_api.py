"""Type-checked by ``mypy --strict`` in ``.ci/run`` (not run by pytest): credentials, tokens, memory and the
session store as a user's type checker sees them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from typing_extensions import assert_type

from convai_sync import ConvaiConfig, SessionStore
from convai_sync.identity import device_end_user_id
from convai_sync.memory import AddResult, Memory, MemoryClient, MemoryPage
from convai_sync.tokens import AuthToken, extend_token, mint_token, revoke_token


def check(key: str, url: str) -> None:
    token = mint_token(key, base_url=url, timeout=5.0)
    assert_type(token, AuthToken)
    assert_type(token.token, str)
    assert_type(token.expires_at, datetime)
    assert_type(extend_token(key, token.token, base_url=url), AuthToken)
    assert_type(revoke_token(key, token.token), None)
    config = ConvaiConfig(token_provider=lambda: mint_token(key).token, character_id="c",
                          session_store=SessionStore("sessions.json"), end_user_id=device_end_user_id("MyGame"))
    assert_type(config.token_provider, Callable[[], str] | None)
    store = SessionStore("sessions.json")
    assert_type(store.get("c"), str | None)
    assert_type(store.set("c", "csid"), None)
    assert_type(store.forget("c"), None)
    with MemoryClient(key, base_url=url) as memory:
        assert_type(memory.list("user", "c"), Iterator[Memory])
        assert_type(memory.list_page("user", "c", page=1, page_size=10), MemoryPage)
        assert_type(memory.add("user", "c", ["You like tea."]), AddResult)
        assert_type(memory.get("user", "c", "mem-1"), Memory)
        assert_type(memory.delete("user", "c", "mem-1"), None)
        assert_type(memory.delete_all("user"), None)
