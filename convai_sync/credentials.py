"""The credential of each connect attempt: the API key, the one-shot auth token, or a fresh token
from the application's ``token_provider``.

Convai's ``/connect`` takes ``X-API-Key: <key>`` or ``API-AUTH-TOKEN: <token>`` (Convai realtime
API docs, "Authentication"). Convai's Unity SDK resolves a token afresh for every connection
attempt, retries and reconnects included, in this order: the explicit one-shot token, then the
registered provider (Convai Unity SDK docs, "How authentication works"); this module does the
same, so a token is never sent twice.

Thread ownership: :class:`Credentials` is called from connect-attempt worker threads (one at a
time per client, but a late one may overlap the next); its lock guards only the one-shot token's
"spent" flag, and is never held while the provider runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .config import ConvaiConfig
from .errors import ErrorCode, SessionError
from .redact import secrets_scrubber

API_KEY_HEADER = "X-API-Key"
TOKEN_HEADER = "API-AUTH-TOKEN"


@dataclass(frozen=True)
class Credential:
    """What one ``POST /connect`` authenticates with: the header name and its value (never shown)."""

    header: str
    value: str = field(repr=False)

    @property
    def is_token(self) -> bool:
        """True for an auth token (``API-AUTH-TOKEN``), False for the API key."""
        return self.header == TOKEN_HEADER


class CredentialFailed(Exception):
    """No credential for this attempt; carries the :class:`SessionError` that fails it."""

    def __init__(self, error: SessionError) -> None:
        super().__init__(error.message)
        self.error = error


def _header_safe(token: str) -> bool:
    return all("!" <= ch <= "~" for ch in token)


class Credentials:
    """Hands each connect attempt its credential (:meth:`for_attempt`)."""

    def __init__(self, config: ConvaiConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._one_shot_spent = False
        self._scrub = secrets_scrubber(config.api_key, config.auth_token)

    @property
    def uses_tokens(self) -> bool:
        """True when attempts authenticate with auth tokens rather than the API key."""
        return bool(self._config.auth_token) or self._config.token_provider is not None

    def for_attempt(self) -> Credential:
        """The credential of a new attempt; calls ``token_provider`` (on the calling thread).

        Raises:
            CredentialFailed: ``config.auth_token_provider_missing`` when the one-shot
                ``auth_token`` was spent by an earlier attempt; ``connection.auth_token_fetch_failed``
                when the provider raised (chained as ``SessionError.exception``) or returned
                something other than a non-blank header-safe ``str``. No message shows a token.
        """
        config = self._config
        if config.auth_token:
            with self._lock:
                spent, self._one_shot_spent = self._one_shot_spent, True
            if spent:
                raise CredentialFailed(SessionError.of(
                    ErrorCode.CONFIG_AUTH_TOKEN_PROVIDER_MISSING,
                    "ConvaiConfig.auth_token is single-use and an earlier connect attempt spent it; set "
                    "ConvaiConfig.token_provider to mint a fresh token for every attempt, retry and reconnect"))
            return Credential(TOKEN_HEADER, config.auth_token)
        provider = config.token_provider
        if provider is None:
            return Credential(API_KEY_HEADER, config.api_key)
        try:
            token = provider()
        except Exception as exc:  # noqa: BLE001 - the application's code: any failure fails this attempt
            raise CredentialFailed(SessionError.of(
                ErrorCode.CONNECTION_AUTH_TOKEN_FETCH_FAILED,
                f"ConvaiConfig.token_provider raised {type(exc).__name__}: {self._scrub(str(exc))}",
                exception=exc)) from None
        if not isinstance(token, str):
            raise CredentialFailed(SessionError.of(
                ErrorCode.CONNECTION_AUTH_TOKEN_FETCH_FAILED,
                f"ConvaiConfig.token_provider returned {type(token).__name__}, expected a str token"))
        token = token.strip()  # a token read from a file or a response ends with a newline
        if not token:
            raise CredentialFailed(SessionError.of(
                ErrorCode.CONNECTION_AUTH_TOKEN_FETCH_FAILED,
                "ConvaiConfig.token_provider returned a blank str, expected a token"))
        if not _header_safe(token):
            raise CredentialFailed(SessionError.of(
                ErrorCode.CONNECTION_AUTH_TOKEN_FETCH_FAILED,
                "ConvaiConfig.token_provider returned a str with whitespace, control or non-ASCII "
                "characters inside it (value not shown), which an HTTP header cannot carry"))
        return Credential(TOKEN_HEADER, token)
