"""Calls to Convai's REST gateway (``https://api.convai.com``), shared by :mod:`convai_sync.tokens`
and :mod:`convai_sync.memory`.

The gateway authenticates with the ``CONVAI-API-KEY`` header and answers errors with the
envelope ``{"ERROR": "<message>"}`` (Convai REST API docs; e.g. ``"The request contains an invalid
API key."``, ``"API rate limit exceeded. Please try again later."``). Each failure becomes a
typed :class:`RestError` whose ``error_code`` is the matching connection code; neither the key
nor any token in the request ever appears in its text.

Every call is bounded from its start: ``timeout`` seconds for the whole request, however slowly
the server drip-feeds its answer (a ``convai-rest-deadline`` timer aborts the socket; it is
joined before the call returns, so no thread outlives a call).

Thread ownership: a :class:`RestApi` holds one ``requests.Session``; calls from several threads
are safe as ``requests`` sessions are for independent requests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import requests

from .connect import describe_failure, extract_message
from .errors import ConvaiError, ErrorCode, SessionError, SessionErrorStage
from .netio import AbortableAdapter, Canceller, cancelled_by
from .redact import scrubbed_copy, secrets_scrubber
from .validation import base_url as base_url_rule
from .validation import number

log = logging.getLogger("convai_sync")

DEFAULT_REST_URL = "https://api.convai.com"
API_KEY_HEADER = "CONVAI-API-KEY"


class RestError(ConvaiError):
    """A REST call failed. ``error_code``: ``connection.connect_invalid_api_key`` (401),
    ``connection.auth_failed`` (403), ``connection.not_found`` (404), ``connection.rate_limited``
    (429), ``connection.service_unavailable`` (503), ``connection.server_error`` (other 5xx),
    ``connection.bad_request`` (other 4xx), ``connection.network_error`` or ``connection.timeout``.
    ``status`` is the HTTP status (0 without a response)."""

    @property
    def status(self) -> int:
        return self.error.http_status_code or 0


class AuthenticationError(RestError):
    """HTTP 401/403: the API key is missing, invalid or not allowed (or the token is unknown)."""


class NotFoundError(RestError):
    """HTTP 404: the resource (memory, end user, token) does not exist."""


class RateLimitError(RestError):
    """HTTP 429: ``"API rate limit exceeded. Please try again later."``; back off and retry."""


class ServerError(RestError):
    """HTTP 5xx, or no response at all (network error, timeout): worth retrying later."""


_CLASSES: dict[ErrorCode, type[RestError]] = {
    ErrorCode.CONNECTION_CONNECT_INVALID_API_KEY: AuthenticationError,
    ErrorCode.CONNECTION_AUTH_FAILED: AuthenticationError,
    ErrorCode.CONNECTION_NOT_FOUND: NotFoundError,
    ErrorCode.CONNECTION_RATE_LIMITED: RateLimitError,
    ErrorCode.CONNECTION_SERVICE_UNAVAILABLE: ServerError,
    ErrorCode.CONNECTION_SERVER_ERROR: ServerError,
    ErrorCode.CONNECTION_NETWORK_ERROR: ServerError,
    ErrorCode.CONNECTION_TIMEOUT: ServerError,
}


def classify_rest(status: int) -> ErrorCode:
    """The :class:`ErrorCode` of a REST gateway status (0 = no response)."""
    if status == 0:
        return ErrorCode.CONNECTION_NETWORK_ERROR
    return {401: ErrorCode.CONNECTION_CONNECT_INVALID_API_KEY, 403: ErrorCode.CONNECTION_AUTH_FAILED,
            404: ErrorCode.CONNECTION_NOT_FOUND, 429: ErrorCode.CONNECTION_RATE_LIMITED,
            503: ErrorCode.CONNECTION_SERVICE_UNAVAILABLE}.get(
        status, ErrorCode.CONNECTION_SERVER_ERROR if status >= 500 else ErrorCode.CONNECTION_BAD_REQUEST)


def rest_error(code: ErrorCode, message: str, status: int | None,
               exception: BaseException | None = None) -> RestError:
    """The :class:`RestError` subclass for ``code``."""
    cls = _CLASSES.get(code, RestError)
    return cls(SessionError.of(code, message, http_status_code=status, exception=exception,
                               stage=SessionErrorStage.CONNECT_API))


def check_api_key(api_key: object) -> str:
    """The stripped key, or ``ValueError`` naming ``api_key`` (its value never shown)."""
    if not isinstance(api_key, str) or not api_key.strip():
        raise ValueError(f"api_key must be a non-empty str, got {type(api_key).__name__} (value not shown)")
    key = api_key.strip()
    if not all("!" <= ch <= "~" for ch in key):
        raise ValueError("api_key must be printable ASCII without whitespace inside (value not shown)")
    return key


class RestApi:
    """``POST``/``GET``/``DELETE`` JSON calls to the REST gateway with the API key.

    Args:
        api_key: The Convai API key (server side only: never ship it in a game).
        base_url: The gateway (``https://api.convai.com``) or a simulator's URL.
        timeout: Seconds each call may take in all, in (0, 3600].

    Raises:
        ValueError: a bad ``api_key``, ``base_url`` or ``timeout``, naming it
            (:class:`~convai_sync.ConfigurationError` for the last two).
    """

    def __init__(self, api_key: str, *, base_url: str = DEFAULT_REST_URL, timeout: float = 10.0) -> None:
        self._key = check_api_key(api_key)
        base_url = base_url_rule().validate("base_url", base_url)
        number(0.0, 3600.0).validate("timeout", timeout)
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self._http = requests.Session()
        self._http.headers["User-Agent"] = "convai-sync"
        for prefix in ("http://", "https://"):
            self._http.mount(prefix, AbortableAdapter())

    def __repr__(self) -> str:
        return f"RestApi(base_url={self.base_url!r})"

    def close(self) -> None:
        """Free the HTTP connections."""
        self._http.close()

    def call(self, method: str, path: str, *, body: Mapping[str, Any] | None = None,
             params: Mapping[str, Any] | None = None, secrets: tuple[str, ...] = ()) -> Any:
        """One request; returns the decoded JSON body (None for an empty one).

        Args:
            method: ``"POST"``, ``"GET"`` or ``"DELETE"``.
            path: Appended to ``base_url`` (``"/user/connect"``).
            body: JSON body. params: Query parameters.
            secrets: More values to keep out of every error text (tokens in the body).

        Raises:
            RestError: a subclass per status (see :class:`RestError`).
        """
        url = f"{self.base_url}{path}"
        scrub = secrets_scrubber(self._key, *secrets)
        canceller = Canceller(f"{method} {path}")
        timer = threading.Timer(self.timeout, canceller.abort, args=(f"timeout={self.timeout:g} s elapsed",))
        timer.name = "convai-rest-deadline"
        timer.daemon = True
        failure: RestError | None = None
        timer.start()
        try:
            with cancelled_by(canceller):
                # No redirects: requests would forward the key header to another host.
                resp = self._http.request(method, url, json=body, params=params, timeout=self.timeout,
                                          allow_redirects=False, headers={API_KEY_HEADER: self._key})
        except (requests.RequestException, ValueError) as exc:
            copy = scrubbed_copy(exc, self._key, *secrets)
            if canceller.aborted or isinstance(exc, requests.Timeout):
                failure = rest_error(ErrorCode.CONNECTION_TIMEOUT,
                                     f"{method} {path} took longer than {self.timeout:g} s", None, copy)
            else:
                failure = rest_error(ErrorCode.CONNECTION_NETWORK_ERROR,
                                     f"{method} {url} failed: {scrub(describe_failure(exc, url))}", 0, copy)
        finally:
            timer.cancel()
            timer.join()
            canceller.release()
        if failure is not None:
            raise failure  # outside the except block: the original holds the request's headers
        log.debug("%s %s -> %d", method, url, resp.status_code)
        if not 200 <= resp.status_code < 300:
            message = scrub(extract_message(resp.text) or f"HTTP {resp.status_code}")
            raise rest_error(classify_rest(resp.status_code), f"{method} {path}: HTTP {resp.status_code}: {message}",
                             resp.status_code)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise rest_error(ErrorCode.CONNECTION_FAILED, f"{method} {path}: the response is not JSON",
                             resp.status_code) from None
