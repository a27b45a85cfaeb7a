"""Auth tokens end to end: ``ConvaiConfig(token_provider=...)`` / ``auth_token`` against the simulator's
``/user/connect`` tokens, over real sockets on 127.0.0.1, on both transports (websocket and livekit).

The simulator consumes a token at the first ``/connect`` that presents it, so a test that passes proves
each attempt carried a fresh one; token lifetimes run on a FakeClock given to the simulator.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from convai_sync import (
    ConvaiClient,
    ConvaiConfig,
    ConvaiError,
    DisconnectReason,
    ErrorCode,
    EventDeliveryPolicy,
    Reconnected,
    ReconnectPolicy,
    RetryPolicy,
    SessionError,
    SessionState,
)
from convai_sync.testing import FakeClock, Recorder
from convai_sync.tokens import mint_token, revoke_token
from simulator import Simulator

pytestmark = pytest.mark.timeout(90)

E = ErrorCode
WAIT = 20.0
TRANSPORTS = ["websocket", "livekit"]


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def sim(clock: FakeClock) -> Iterator[Simulator]:
    with Simulator(clock=clock.monotonic) as server:
        yield server


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


class Minter:
    """A token_provider that mints through the REST route (as a game's backend would) and keeps what it gave."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.given: list[str] = []
        self.lock = threading.Lock()

    def __call__(self) -> str:
        token = mint_token(self.sim.api_key, base_url=self.sim.url).token
        with self.lock:
            self.given.append(token)
        return token


def config(sim: Simulator, transport: str, **overrides: Any) -> ConvaiConfig:
    values: dict[str, Any] = {
        "api_key": "", "transport": transport, "connection_timeout": 15.0,
        "retry_policy": RetryPolicy(delays=(0.0,)),
        "reconnect_policy": ReconnectPolicy(delays=(0.0,), server_shutdown_delay=0.0),
        "tts_enabled": False,  # text only: over LiveKit each ask() would wait the reply's voice out in real time
    }
    values.update(overrides)
    return sim.client_config(**values)


def test_provider_gives_a_fresh_token_to_every_attempt_retry_and_reconnect(sim: Simulator, transport: str) -> None:
    minter = Minter(sim)
    with ConvaiClient(config(sim, transport, token_provider=minter)) as client:
        sim.inject(E.CONNECTION_CONNECT_BOT_START_FAILED)  # the first attempt fails, retryable
        client.connect(timeout=WAIT)
        assert client.diagnostics()["connect_attempts"] == 2
        assert len(minter.given) == 2
        first_session = client.session_id
        assert client.ask("Hello", timeout=WAIT).text
        sim.inject(DisconnectReason.SERVER_SHUTDOWN)  # retried with a new /connect
        client.wait_for(Reconnected, timeout=WAIT)
        assert client.session_id != first_session
        assert client.state is SessionState.CONNECTED
        assert client.ask("Still there?", timeout=WAIT).text
    assert len(minter.given) == 3 and len(set(minter.given)) == 3  # a token is never reused
    assert sim.token_stats()["active"] == 0  # each was consumed by the connect it was minted for


def test_a_reused_token_is_refused_with_invalid_token(sim: Simulator, transport: str) -> None:
    token = sim.mint_token()
    errors: Recorder[SessionError] = Recorder()
    with ConvaiClient(config(sim, transport, auth_token=token)) as client:
        client.connect(timeout=WAIT)
    with ConvaiClient(config(sim, transport, token_provider=lambda: token)) as client:
        client.events.on_session_error.subscribe(errors, EventDeliveryPolicy.IMMEDIATE)
        with pytest.raises(ConvaiError) as raised:
            client.connect(timeout=WAIT)
    error = raised.value.error
    assert error.error_code is E.CONNECTION_INVALID_TOKEN and error.http_status_code == 401
    assert "single-use" in error.message and "mint a fresh one for every connection attempt" in error.message
    assert "already been consumed" in error.message
    assert client.diagnostics()["connect_attempts"] == 1  # not retried
    assert token not in str(raised.value) and token not in repr(error)


def test_the_one_shot_auth_token_serves_one_attempt_only(sim: Simulator, transport: str) -> None:
    token = sim.mint_token()
    with ConvaiClient(config(sim, transport, auth_token=token,
                             retry_policy=RetryPolicy(delays=(0.0,), max_attempts=2))) as client:
        sim.inject(E.CONNECTION_CONNECT_BOT_START_FAILED)
        with pytest.raises(ConvaiError) as raised:
            client.connect(timeout=WAIT)
    assert raised.value.error_code is E.CONFIG_AUTH_TOKEN_PROVIDER_MISSING
    assert "token_provider" in str(raised.value)


def test_expiry_and_revocation_mid_session_end_nothing(sim: Simulator, clock: FakeClock, transport: str) -> None:
    token = sim.mint_token()
    with ConvaiClient(config(sim, transport, auth_token=token)) as client:
        client.connect(timeout=WAIT)
        revoke_token(sim.api_key, token, base_url=sim.url)
        clock.advance(2 * 3600.0)  # past the token's hour
        assert client.ask("Are you still there?", timeout=WAIT).text
        assert client.state is SessionState.CONNECTED
        client.reset_idle_timer(wait=True, timeout=WAIT)


@pytest.mark.parametrize(("reason", "text"), [("expired", "expired"), ("consumed", "already been consumed"),
                                              ("revoked", "revoked")])
def test_injected_token_refusals_are_invalid_token(sim: Simulator, transport: str, reason: str, text: str) -> None:
    minter = Minter(sim)
    sim.inject(E.CONNECTION_INVALID_TOKEN, reason=reason)
    client = ConvaiClient(config(sim, transport, token_provider=minter))
    with client, pytest.raises(ConvaiError) as raised:
        client.connect(timeout=WAIT)
    assert raised.value.error_code is E.CONNECTION_INVALID_TOKEN
    assert text in str(raised.value) and "single-use" in str(raised.value)


def test_an_expired_token_is_refused_at_connect(sim: Simulator, clock: FakeClock, transport: str) -> None:
    token = sim.mint_token()
    clock.advance(3600.0)
    with ConvaiClient(config(sim, transport, auth_token=token)) as client, pytest.raises(ConvaiError) as raised:
        client.connect(timeout=WAIT)
    assert raised.value.error_code is E.CONNECTION_INVALID_TOKEN and "expired" in str(raised.value)


class Boom(RuntimeError):
    pass


def _raise() -> str:
    raise Boom("backend unreachable")


@pytest.mark.parametrize(("provider", "expected"), [
    (_raise, "raised Boom: backend unreachable"),
    (lambda: 42, "returned int"),
    (lambda: None, "returned NoneType"),
    (lambda: "  \n", "blank"),
    (lambda: "tok en", "whitespace, control or non-ASCII"),
], ids=["raises", "int", "none", "blank", "inner-space"])
def test_a_failing_provider_fails_the_attempt_clearly(sim: Simulator, transport: str, provider: Any,
                                                      expected: str) -> None:
    client = ConvaiClient(config(sim, transport, token_provider=provider))
    with client, pytest.raises(ConvaiError) as raised:
        client.connect(timeout=WAIT)
    assert raised.value.error_code is E.CONNECTION_AUTH_TOKEN_FETCH_FAILED
    assert expected in str(raised.value)
    if provider is _raise:
        assert isinstance(raised.value.__cause__, Boom)
        assert isinstance(raised.value.error.exception, Boom)
    assert "tok en" not in str(raised.value)


def test_a_provider_that_does_not_return_in_time_fails_the_attempt_and_leaves_no_thread(
        sim: Simulator, transport: str) -> None:
    release = threading.Event()
    entered = threading.Event()
    late = sim.mint_token()

    def slow() -> str:
        entered.set()
        release.wait(30.0)
        return late

    with ConvaiClient(config(sim, transport, token_provider=slow, connection_timeout=0.5,
                             retry_policy=RetryPolicy(max_attempts=1))) as client:
        with pytest.raises(ConvaiError) as raised:
            client.connect(timeout=WAIT)
        assert entered.is_set()
        assert raised.value.error_code is E.CONNECTION_TIMEOUT
        assert "token from token_provider" in str(raised.value)
        release.set()  # the provider returns late: its token must never be sent
    assert sim.token_stats()["tokens"] >= 1
    with ConvaiClient(config(sim, transport, auth_token=late)) as client:
        client.connect(timeout=WAIT)  # the late token was not consumed by the abandoned attempt


def test_tokens_never_reach_logs_reprs_errors_or_diagnostics(sim: Simulator, transport: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    spent = sim.mint_token()
    with ConvaiClient(config(sim, transport, auth_token=spent)) as client:
        client.connect(timeout=WAIT)
    raw = f"  {spent}\n"  # the same token, read from a file
    cfg = config(sim, transport, auth_token=raw)
    assert spent not in repr(cfg) and spent not in str(cfg)
    with ConvaiClient(cfg) as client:
        with pytest.raises(ConvaiError) as raised:
            client.connect(timeout=WAIT)
        diagnostics = json.dumps(client.diagnostics(), default=str)
    assert raised.value.error_code is E.CONNECTION_INVALID_TOKEN
    assert json.loads(diagnostics)["credential"] == "auth_token"
    for text in (str(raised.value), repr(raised.value.error), diagnostics, caplog.text, repr(client)):
        assert spent not in text


def test_several_credentials_are_refused_naming_the_fields(sim: Simulator) -> None:
    with pytest.raises(ConvaiError) as raised:
        sim.client_config(token_provider=lambda: "t")  # client_config sets the simulator's api_key
    assert raised.value.error_code is E.CONFIG_INVALID
    assert "api_key and token_provider" in str(raised.value)
    with pytest.raises(ConvaiError, match="auth_token and token_provider"):
        ConvaiConfig(auth_token="abcd-token", token_provider=lambda: "t")
    with pytest.raises(ConvaiError, match="api_key and auth_token"):
        ConvaiConfig(api_key="key-1234", auth_token="abcd-token")


def test_no_credential_fails_connect_with_api_key_missing(sim: Simulator) -> None:
    with ConvaiClient(sim.client_config(api_key="")) as client, pytest.raises(ConvaiError) as raised:
        client.connect(timeout=WAIT)
    assert raised.value.error_code is E.CONFIG_API_KEY_MISSING
