"""A tiny token-minting backend: the only place that holds your Convai API key.

A shipped game never carries the API key. It asks this backend for a short-lived Convai auth token
before every connect attempt (see ``shipped_game.py``); the backend mints one with
``convai_sync.tokens.mint_token`` and hands it out. In production, run it behind HTTPS and check who
is asking (your login session, a platform ticket) before minting.

    POST /convai-token  ->  200 {"token": "...", "expires_at": "2026-01-01T12:00:00+00:00"}
                            502 {"error": "..."} when Convai refused or could not be reached

Run it against a local simulator (``convai-sim --port 8080`` prints its key):

    CONVAI_API_KEY=sim-api-key python examples/token_backend.py --convai-url http://127.0.0.1:8080

Standard library ``http.server`` keeps the example dependency-free; one thread per request.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from convai_sync.rest import DEFAULT_REST_URL, RestError
from convai_sync.tokens import mint_token

log = logging.getLogger("token_backend")
TOKEN_PATH = "/convai-token"


class TokenBackend(ThreadingHTTPServer):
    """``POST /convai-token`` mints an auth token with ``api_key`` at ``convai_url``."""

    daemon_threads = True

    def __init__(self, api_key: str, convai_url: str, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.api_key = api_key
        self.convai_url = convai_url
        self.minted = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def mint(self) -> dict[str, str]:
        token = mint_token(self.api_key, base_url=self.convai_url, timeout=5.0)
        with self._lock:
            self.minted += 1
        return {"token": token.token, "expires_at": token.expires_at.isoformat()}


class _Handler(BaseHTTPRequestHandler):
    server: TokenBackend

    def do_POST(self) -> None:
        if self.path != TOKEN_PATH:
            self._answer(404, {"error": "not found"})
            return
        # Production: authenticate the player here before minting (a session cookie, a platform ticket).
        try:
            self._answer(200, self.server.mint())
        except RestError as exc:
            log.warning("minting failed: %s", exc)  # RestError texts never carry the key
            self._answer(502, {"error": f"Convai refused or could not be reached ({exc.error_code.value})"})

    def _answer(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log.info("%s %s", self.address_string(), format % args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--convai-url", default=DEFAULT_REST_URL, help="Convai's REST gateway or a simulator's URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    args = parser.parse_args(argv)
    api_key = os.environ.get("CONVAI_API_KEY", "")
    if not api_key:
        print("Set CONVAI_API_KEY (the backend's secret; never put it in the game).", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    backend = TokenBackend(api_key, args.convai_url, args.host, args.port)
    print(f"Token backend: POST {backend.url}{TOKEN_PATH}", flush=True)
    try:
        backend.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        backend.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
