"""Server-side helpers for Convai's short-lived auth tokens: mint, extend, revoke.

Run these on your own backend, never in a shipped game: they need the API key. The game asks the
backend for a token before each connect attempt (``ConvaiConfig(token_provider=...)``) and sends
it as ``API-AUTH-TOKEN``. Source: Convai Web SDK docs, "Auth tokens":
``POST https://api.convai.com/user/connect`` with header ``CONVAI-API-KEY`` answers
``{"apiAuthToken": "...", "expirationTime": ...}`` (a token lives one hour);
``POST /user/extend-token`` and ``POST /user/revoke-token`` take ``{"apiAuthToken": "..."}``.
The docs do not fix the type of ``expirationTime``: an ISO 8601 string or epoch seconds (or
milliseconds) are accepted. A revoked or expired token does not end a session already running.

Each call opens its own HTTP connection and is bounded by ``timeout`` seconds from the call.

Thread ownership: none; the functions may be called from any thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .errors import ErrorCode
from .rest import (
    DEFAULT_REST_URL,
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    RestApi,
    RestError,
    ServerError,
    rest_error,
)

__all__ = ["AuthToken", "AuthenticationError", "NotFoundError", "RateLimitError", "RestError", "ServerError",
           "extend_token", "mint_token", "revoke_token"]

MINT_PATH = "/user/connect"
EXTEND_PATH = "/user/extend-token"
REVOKE_PATH = "/user/revoke-token"


@dataclass(frozen=True)
class AuthToken:
    """A minted auth token.

    Attributes:
        token: The token (``str``), for ``ConvaiConfig.auth_token`` / a ``token_provider``'s
            return value. Never shown by ``repr``.
        expires_at: When it expires (aware UTC ``datetime``).
    """

    token: str = field(repr=False)
    expires_at: datetime

    def __str__(self) -> str:
        return f"AuthToken(expires {self.expires_at.isoformat()})"


def _expiry(value: Any, path: str) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000.0 if value > 1e11 else float(value)  # milliseconds past 5138 AD are not seconds
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            pass
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)
    raise rest_error(ErrorCode.CONNECTION_FAILED,
                     f"POST {path}: expirationTime is not a time ({type(value).__name__})", 200)


def _token_from(data: Any, path: str, fallback: str | None = None) -> AuthToken:
    if not isinstance(data, dict):
        raise rest_error(ErrorCode.CONNECTION_FAILED, f"POST {path}: the response is not a JSON object", 200)
    token = data.get("apiAuthToken", fallback)
    if not isinstance(token, str) or not token.strip():
        raise rest_error(ErrorCode.CONNECTION_FAILED, f"POST {path}: the response has no apiAuthToken", 200)
    return AuthToken(token.strip(), _expiry(data.get("expirationTime"), path))


def _check_token(token: object) -> str:
    if not isinstance(token, str) or not token.strip():
        raise ValueError(f"token must be a non-empty str, got {type(token).__name__} (value not shown)")
    return token.strip()


def mint_token(api_key: str, *, base_url: str = DEFAULT_REST_URL, timeout: float = 10.0) -> AuthToken:
    """Mint a new auth token (``POST {base_url}/user/connect``).

    Args:
        api_key: The Convai API key (server side only).
        base_url: Convai's REST gateway, or a simulator's ``url``.
        timeout: Seconds the whole call may take, in (0, 3600].

    Returns:
        :class:`AuthToken`: ``token`` and ``expires_at`` (aware UTC; one hour ahead on Convai).

    Raises:
        AuthenticationError: HTTP 401/403 (``"The request contains an invalid API key."``).
        RateLimitError: HTTP 429. ServerError: 5xx, network error or ``timeout``.
        RestError: any other failure, or a response without ``apiAuthToken``/``expirationTime``
            (``connection.failed``).
        ValueError: a bad argument, naming it.
    """
    api = RestApi(api_key, base_url=base_url, timeout=timeout)
    try:
        return _token_from(api.call("POST", MINT_PATH, body={}), MINT_PATH)
    finally:
        api.close()


def extend_token(api_key: str, token: str, *, base_url: str = DEFAULT_REST_URL, timeout: float = 10.0) -> AuthToken:
    """Extend ``token``'s lifetime (``POST {base_url}/user/extend-token``, body ``{"apiAuthToken"}``).

    Returns:
        The same token with its new ``expires_at`` (the response's ``expirationTime``).

    Raises:
        AuthenticationError: bad key; NotFoundError / AuthenticationError: the token is unknown,
            expired or revoked (HTTP 404/401). RateLimitError, ServerError, RestError and
            ValueError as :func:`mint_token`. No message shows the token.
    """
    token = _check_token(token)
    api = RestApi(api_key, base_url=base_url, timeout=timeout)
    try:
        data = api.call("POST", EXTEND_PATH, body={"apiAuthToken": token}, secrets=(token,))
        return _token_from(data, EXTEND_PATH, fallback=token)
    finally:
        api.close()


def revoke_token(api_key: str, token: str, *, base_url: str = DEFAULT_REST_URL, timeout: float = 10.0) -> None:
    """Revoke ``token`` (``POST {base_url}/user/revoke-token``, body ``{"apiAuthToken"}``): no new
    connect accepts it; sessions it already opened go on (Convai Web SDK docs, "Auth tokens").

    Raises:
        As :func:`extend_token`.
    """
    token = _check_token(token)
    api = RestApi(api_key, base_url=base_url, timeout=timeout)
    try:
        api.call("POST", REVOKE_PATH, body={"apiAuthToken": token}, secrets=(token,))
    finally:
        api.close()
