"""A game as it ships: no API key inside, a fresh auth token from your backend for every connect attempt.

Run with no arguments for a self-contained demo: an embedded simulator, the token backend of
``token_backend.py`` on a free port, and this game talking to the character through them (the first
connect attempt fails on purpose and is retried with a new token; a dropped connection is restored
with another one):

    python examples/shipped_game.py

Or point it at a backend you run (``token_backend.py``) and the service it mints for:

    python examples/shipped_game.py --backend http://127.0.0.1:8765 --convai-url http://127.0.0.1:8080 \\
        --character-id sim-character
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Callable, Iterator

import requests

from convai_sync import (
    ConvaiClient,
    ConvaiConfig,
    ConvaiError,
    DisconnectReason,
    ErrorCode,
    ReconnectPolicy,
    SessionStore,
)


class BackendTokens:
    """``ConvaiConfig.token_provider``: asks the backend for a new token each time it is called."""

    def __init__(self, backend_url: str) -> None:
        self.url = backend_url.rstrip("/") + "/convai-token"
        self.fetched = 0

    def __call__(self) -> str:
        # A bounded call: the SDK also bounds the whole attempt by connection_timeout.
        answer = requests.post(self.url, timeout=5.0)
        answer.raise_for_status()
        token = answer.json()["token"]
        self.fetched += 1
        print(f"[game] fetched token #{self.fetched} from the backend")
        return str(token)


def play(config: ConvaiConfig, tokens: BackendTokens, drop: Callable[[], object] | None = None) -> int:
    with ConvaiClient(config) as client:
        reconnected = threading.Event()
        client.events.on_reconnected.subscribe(lambda _event: reconnected.set())
        try:
            client.connect(timeout=60)
            print(f"[game] connected after {client.diagnostics()['connect_attempts']} attempt(s)")
            print(f"Character: {client.ask('Hello! Who are you?', timeout=30).text}")
            if drop is not None:
                drop()  # the demo drops the connection here
                if not reconnected.wait(30):
                    print("[game] not reconnected within 30 s", file=sys.stderr)
                    return 1
                print("[game] reconnected with a fresh token")
            print(f"Character: {client.ask('Nice to meet you.', timeout=30).text}")
            client.disconnect()
        except ConvaiError as exc:
            if exc.error_code is ErrorCode.CONNECTION_INVALID_TOKEN:
                print("[game] the token was refused: is the provider minting a new one per attempt?",
                      file=sys.stderr)
            print(f"[game] Convai error {exc.error_code.value}: {exc.error.message}", file=sys.stderr)
            return 1
    print(f"[game] tokens used: {tokens.fetched}; API keys shipped: 0")
    return 0


@contextlib.contextmanager
def _demo_services() -> Iterator[tuple[object, str]]:
    """An embedded simulator and the token backend in front of it."""
    from token_backend import TokenBackend

    from simulator import Simulator

    with Simulator() as sim:
        backend = TokenBackend(sim.api_key, sim.url)  # the key stays on the "server" side
        thread = threading.Thread(target=backend.serve_forever, name="token-backend", daemon=True)
        thread.start()
        try:
            print(f"[demo] simulator at {sim.url}; token backend at {backend.url}")
            yield sim, backend.url
        finally:
            backend.shutdown()
            backend.server_close()
            thread.join(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", help="your token backend's URL (default: a self-contained demo)")
    parser.add_argument("--convai-url", default="https://live.convai.com", help="the realtime service")
    parser.add_argument("--character-id", default="")
    parser.add_argument("--sessions", help="a sessions.json to resume the conversation after a restart")
    args = parser.parse_args(argv)
    store = SessionStore(args.sessions) if args.sessions else None
    if args.backend:
        tokens = BackendTokens(args.backend)
        config = ConvaiConfig(token_provider=tokens, character_id=args.character_id, url=args.convai_url,
                              session_store=store)
        return play(config, tokens)
    with _demo_services() as (sim, backend_url):
        from simulator import Simulator

        assert isinstance(sim, Simulator)
        tokens = BackendTokens(backend_url)
        config = sim.client_config(api_key="", token_provider=tokens, session_store=store,
                                   reconnect_policy=ReconnectPolicy(delays=(0.1,), server_shutdown_delay=0.1))
        sim.inject("connection.connect_bot_start_failed")  # the first attempt fails: retried with a new token
        return play(config, tokens, drop=lambda: sim.inject(DisconnectReason.SERVER_SHUTDOWN))


if __name__ == "__main__":
    sys.exit(main())
