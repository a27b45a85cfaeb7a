"""The package's public surface: ``__all__``, ``dir()``, and consistent timeout errors.

Regressions: ``dir(convai_sync)`` listed internal modules (``loop``, ``turns``, ``session``,
``clock``…); ``wait_for`` raised a plain ``TimeoutError`` where every other blocking call raises
``ConvaiTimeoutError``, and took a negative or NaN timeout.
"""

from __future__ import annotations

import importlib
import math
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest

import convai_sync
from convai_sync import BotText, ConvaiError, ConvaiTimeoutError, ErrorCode, EventHub

pytestmark = pytest.mark.timeout(10)


def test_every_name_in_all_is_importable() -> None:
    module = importlib.import_module("convai_sync")
    for name in convai_sync.__all__:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec(f"from convai_sync import {', '.join(convai_sync.__all__)}", namespace)
    assert set(convai_sync.__all__) <= set(namespace)


def test_dir_lists_the_public_names_and_no_module() -> None:
    names = dir(convai_sync)
    assert names == sorted(convai_sync.__all__)
    assert not [n for n in names if isinstance(getattr(convai_sync, n), types.ModuleType)]
    for internal in ("loop", "turns", "session", "clock", "hub", "protocol", "validation"):
        assert internal not in names


def test_all_has_no_duplicates_and_private_modules_stay_importable() -> None:
    assert len(convai_sync.__all__) == len(set(convai_sync.__all__))
    assert importlib.import_module("convai_sync.testing").FakeClock is not None


def test_convai_timeout_error_lives_in_errors_and_is_both_kinds() -> None:
    from convai_sync import client, errors
    assert ConvaiTimeoutError is errors.ConvaiTimeoutError is client.ConvaiTimeoutError
    assert issubclass(ConvaiTimeoutError, ConvaiError) and issubclass(ConvaiTimeoutError, TimeoutError)


@pytest.fixture
def hub() -> Iterator[EventHub]:
    h = EventHub()
    yield h
    h.close(2.0)


def test_wait_for_timeout_is_a_convai_timeout_error(hub: EventHub) -> None:
    with pytest.raises(ConvaiTimeoutError) as info:
        hub.wait_for(BotText, timeout=0.01)
    assert info.value.error_code is ErrorCode.CONNECTION_TIMEOUT
    assert isinstance(info.value, TimeoutError)
    assert "BotText" in str(info.value)
    assert hub.subscription_count == 0


@pytest.mark.parametrize("timeout", [-1, -0.001, -math.inf, math.nan])
def test_wait_for_refuses_negative_or_nan_timeout(hub: EventHub, timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        hub.wait_for(BotText, timeout=timeout)
    assert hub.subscription_count == 0


@pytest.mark.parametrize("timeout", ["1", True, [1]])
def test_wait_for_refuses_non_numeric_timeout(hub: EventHub, timeout: object) -> None:
    with pytest.raises(TypeError):
        hub.wait_for(BotText, timeout=timeout)  # type: ignore[arg-type]


def test_wait_for_zero_timeout_returns_at_once(hub: EventHub) -> None:
    with pytest.raises(ConvaiTimeoutError):
        hub.wait_for(BotText, timeout=0)


class SignallingHub(EventHub):
    """Says when ``wait_for`` has put its internal subscription in place."""

    def __init__(self) -> None:
        super().__init__()
        self.subscribed = threading.Event()

    def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        sub = super().subscribe(*args, **kwargs)
        self.subscribed.set()
        return sub


@pytest.mark.parametrize("timeout", [math.inf, 1e300, None])
def test_wait_for_unbounded_timeout_waits_for_the_event(timeout: float | None) -> None:
    hub = SignallingHub()
    got: list[BotText] = []
    failed: list[BaseException] = []

    def waiter() -> None:
        try:
            got.append(hub.wait_for(BotText, timeout=timeout))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=waiter, name="test-waiter", daemon=True)
    try:
        thread.start()
        assert hub.subscribed.wait(5.0)
        hub.publish(BotText(type="bot-llm-text", text="hi"))
        thread.join(5.0)
        assert not failed and [e.text for e in got] == ["hi"]
    finally:
        hub.close(2.0)
        thread.join(5.0)
