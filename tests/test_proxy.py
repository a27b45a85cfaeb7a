"""The WebSocket transport honours HTTPS_PROXY / HTTP_PROXY / NO_PROXY as the connect API's HTTP calls do.

Against a real CONNECT proxy on 127.0.0.1 (tests/support/proxy.py) and the real simulator: a
session works through the tunnel, NO_PROXY bypasses it, and a proxy that refuses, stalls or
answers garbage fails ``connect()`` with a documented error within its deadline, never showing
the proxy's credentials.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import pytest

from convai_sync import ConvaiClient, ConvaiError, RetryPolicy
from convai_sync.proxy import Proxy, proxy_for
from simulator import Simulator
from tests.support.proxy import local_proxy

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
ONE_ATTEMPT = RetryPolicy(max_attempts=1, delays=(0,))


@pytest.fixture(autouse=True)
def clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


def use_proxy(monkeypatch: pytest.MonkeyPatch, url: str, no_proxy: str = "") -> None:
    for name in ("http_proxy", "https_proxy"):
        monkeypatch.setenv(name, url)
    monkeypatch.setenv("no_proxy", no_proxy)


def test_a_websocket_session_works_through_the_proxy(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    with local_proxy() as proxy:
        use_proxy(monkeypatch, proxy.url)
        with ConvaiClient(sim.client_config(transport="websocket")) as client:
            client.connect(timeout=10)
            assert client.ask("Hello through the proxy", timeout=10).text
        port = sim.url.rsplit(":", 1)[1]
        assert proxy.tunnels == [f"127.0.0.1:{port}"], "the /chat WebSocket went through one CONNECT tunnel"
        assert any(line.startswith("POST http://127.0.0.1") and "/connect" in line for line in proxy.forwarded)


def test_no_proxy_bypasses_the_proxy(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    with local_proxy() as proxy:
        use_proxy(monkeypatch, proxy.url, no_proxy="127.0.0.1")
        with ConvaiClient(sim.client_config(transport="websocket")) as client:
            client.connect(timeout=10)
        assert proxy.tunnels == [] and proxy.forwarded == []


def test_proxy_credentials_are_sent_and_never_shown(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    with local_proxy(mode="refuse") as proxy:
        use_proxy(monkeypatch, f"http://player:s3cret-pass@127.0.0.1:{proxy.port}")
        config = sim.client_config(transport="websocket", retry_policy=ONE_ATTEMPT)
        with ConvaiClient(config) as client, pytest.raises(ConvaiError) as raised:
            client.connect(timeout=10)
        assert raised.value.error_code == "connection.failed"
        assert raised.value.error.http_status_code == 407
        assert f"127.0.0.1:{proxy.port}" in str(raised.value)
        assert "s3cret" not in str(raised.value) and "s3cret" not in repr(raised.value.error)
        expected = "Basic " + base64.b64encode(b"player:s3cret-pass").decode()
        assert expected in proxy.auth_headers


@pytest.mark.parametrize(("mode", "code"), [("silent", "connection.timeout"),
                                              ("garbage", "connection.network_error")])
def test_a_misbehaving_proxy_fails_connect_within_its_deadline(
        sim: Simulator, monkeypatch: pytest.MonkeyPatch, mode: str, code: str) -> None:
    with local_proxy(mode=mode) as proxy:
        use_proxy(monkeypatch, proxy.url)
        config = sim.client_config(transport="websocket", retry_policy=ONE_ATTEMPT, connection_timeout=2.0)
        with ConvaiClient(config) as client:
            started = time.monotonic()
            with pytest.raises(ConvaiError) as raised:
                client.connect()
            waited = time.monotonic() - started
        assert raised.value.error_code == code
        assert waited < 2.0 + 1.0, f"connect() took {waited:.2f} s against connection_timeout=2.0"


def test_proxy_selection_follows_the_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://plain.example:3128")
    monkeypatch.setenv("https_proxy", "secure.example:8080")
    assert proxy_for("ws://host.example/chat") == Proxy("plain.example", 3128)
    assert proxy_for("wss://host.example/chat") == Proxy("secure.example", 8080)
    monkeypatch.setenv("no_proxy", "host.example")
    assert proxy_for("wss://host.example/chat") is None


def test_a_socks_proxy_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "socks5://user:pw@proxy.example:1080")
    with pytest.raises(ValueError, match="socks5:// proxy") as raised:
        proxy_for("wss://host.example/chat")
    assert "pw" not in str(raised.value)


def test_proxy_repr_hides_credentials() -> None:
    assert "secret" not in repr(Proxy("p.example", 8080, "user", "secret"))
