"""The connect API: ``POST {url}/connect`` and ``POST {url}/disconnect`` over ``requests``.

Maps every HTTP failure to an :class:`ErrorCode` with the classifier rules of Convai's Unity SDK
(``ClassifyConnectApiFailure``), including its substring tests. Owns no thread: the session calls
it from short-lived worker threads, each call with a :class:`~convai_sync.netio.Canceller` that
the session aborts at the call's deadline (per-read timeouts alone do not bound a peer that
drip-feeds its answer). The API key travels in the ``X-API-Key`` header and never appears in
logs or errors, whatever its whitespace.
"""

from __future__ import annotations

import errno
import json
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from .config import ConvaiConfig
from .errors import ErrorCode, SessionError, SessionErrorStage
from .netio import AbortableAdapter, Canceller, cancelled_by
from .redact import key_scrubber, scrubbed_copy

log = logging.getLogger("convai_sync")

_INVALID_ID_MARKERS = ("invalid uuid", "invalid session id", "invalid session_id",
                       "invalid character_session_id", "invalid uuid format")


@dataclass(frozen=True)
class Endpoint:
    """A successful ``/connect`` response (``session_id``, ``room_url``, ``character_session_id``,
    ``room_name``, ``token``, ``request_trace_id``; Convai's connect API docs); unknown keys kept in ``extra``."""

    session_id: str
    room_url: str
    character_session_id: str | None = None
    room_name: str | None = None
    token: str = field(default="", repr=False)
    request_trace_id: str | None = None
    transport: str = "websocket"
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)


class ConnectFailed(Exception):
    """A connect-API failure, carrying its classified :class:`SessionError`."""

    def __init__(self, error: SessionError) -> None:
        super().__init__(error.message)
        self.error = error


def extract_message(body: str) -> str:
    """Unity's ``ExtractConnectApiMessage``: ``detail`` (arrays stringified) → ``message`` →
    ``error`` → the raw body."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(data, dict):
        for key in ("detail", "message", "error", "ERROR"):
            value = data.get(key)
            if value is None:
                continue
            if isinstance(value, str):
                return value
            if isinstance(value, list):
                parts = [str(v.get("msg", v)) if isinstance(v, dict) else str(v) for v in value]
                return "; ".join(parts)
            return json.dumps(value)
    return body.strip()


def classify(status: int, message: str) -> ErrorCode:
    """Map an HTTP status and extracted message to an :class:`ErrorCode` (the Unity SDK's
    ``ClassifyConnectApiFailure`` / ``MapFallbackCode`` rules, substring tests included).

    ``status`` 0 means no response (DNS/socket error).
    """
    text = message.lower()
    if status == 0:
        return ErrorCode.CONNECTION_NETWORK_ERROR
    if status == 400:
        if any(marker in text for marker in _INVALID_ID_MARKERS):
            return ErrorCode.CONNECTION_CONNECT_INVALID_SESSION_ID
        return ErrorCode.CONNECTION_BAD_REQUEST
    if status == 401:
        return ErrorCode.CONNECTION_CONNECT_INVALID_API_KEY
    if status == 403:
        if "multi_character_v0_disabled" in text:
            return ErrorCode.CONNECTION_CONNECT_MULTI_CHARACTER_NOT_ALLOWED
        if "multi_character_roster_limit_exceeded" in text:
            return ErrorCode.CONNECTION_CONNECT_MULTI_CHARACTER_ROSTER_LIMIT
        return ErrorCode.CONNECTION_CONNECT_REALTIME_NOT_ALLOWED
    if status == 404:
        return ErrorCode.CONNECTION_CONNECT_CHARACTER_NOT_FOUND
    if status == 422:
        return ErrorCode.CONNECTION_CONNECT_VALIDATION_ERROR
    if status == 429:
        if "speaker" in text:
            return ErrorCode.CONNECTION_CONNECT_SPEAKER_LIMIT_REACHED
        return ErrorCode.CONNECTION_CONNECT_CONCURRENCY_LIMIT_REACHED
    if status == 500:
        if "failed to start bot" in text:
            return ErrorCode.CONNECTION_CONNECT_BOT_START_FAILED
        return ErrorCode.CONNECTION_CONNECT_UNHANDLED_SERVER_EXCEPTION
    if status == 503:
        return ErrorCode.CONNECTION_SERVICE_UNAVAILABLE
    if 500 <= status < 600:
        return ErrorCode.CONNECTION_SERVER_ERROR
    if 400 <= status < 500:
        return ErrorCode.CONNECTION_BAD_REQUEST
    return ErrorCode.CONNECTION_FAILED


def build_request(config: ConvaiConfig, character_session_id: str | None) -> dict[str, Any]:
    """The ``POST /connect`` body for ``config`` (fields as Convai's connect API and Web SDK 1.2.0 send them)."""
    body: dict[str, Any] = {
        "character_id": config.character_id,
        "transport": config.transport,
        "connection_type": "audio",
        "llm_provider": config.llm_provider,
        "default_tts_enabled": config.tts_enabled,
    }
    if character_session_id:
        body["character_session_id"] = character_session_id
    if config.end_user_id:
        body["end_user_id"] = config.end_user_id.strip()
        if config.end_user_metadata is not None:
            body["end_user_metadata"] = dict(config.end_user_metadata)
    if config.enable_emotion:
        body["emotion_config"] = {"provider": "llm", "min_word_threshold": 3,
                                  "low_intensity_threshold": 0.33, "high_intensity_threshold": 0.66}
    # Convai's /connect accepts audio_config with LiveKit only (any other transport: HTTP 400
    # "audio_config is only supported with LiveKit transport"); "audio_only" is its default, so it
    # is sent only to route the voice to audio-data messages.
    if config.transport == "livekit" and config.audio_routing != "audio_only":
        output: dict[str, Any] = {"audio_routing": config.audio_routing}
        if config.audio_sample_rate is not None:
            output["sample_rate"] = config.audio_sample_rate
        body["audio_config"] = {"output": output}
    _add_character_settings(body, config)
    return body


def _add_character_settings(body: dict[str, Any], config: ConvaiConfig) -> None:
    """The character features' fields (Convai's connect API request body); defaults are left out."""
    if not config.stt_enabled:
        body["default_stt_enabled"] = False
    if config.action_config is not None:
        body["action_config"] = config.action_config.to_wire()
    if config.scene_description:
        body["scene_description"] = [o.to_wire() for o in config.scene_description]
    if config.narrative_template_keys:
        body["narrative_template_keys"] = dict(config.narrative_template_keys)
    if config.blendshape_config is not None:
        body["blendshape_provider"] = "neurosync"
        body["blendshape_config"] = config.blendshape_config.to_wire()
    if config.dynamic_info is not None:
        body["dynamic_info"] = config.dynamic_info.to_wire()
    if config.debug:
        body["debug"] = True
    if config.vad_params is not None:
        body["vad_params"] = config.vad_params.to_wire()
    if config.turn_detection_config is not None:
        body["turn_detection_config"] = config.turn_detection_config.to_wire()
    if config.thinking_mode:
        body["thinking_mode"] = True
    if config.stt_provider is not None:
        body["stt_provider"] = config.stt_provider
    if config.debug_row_cap is not None:
        body["debug_row_cap"] = config.debug_row_cap
    if config.invocation_metadata is not None:
        body["invocation_metadata"] = dict(config.invocation_metadata)


#: Errors raised before anything is sent: the request itself cannot be built (a header or URL
#: requests refuses). Retrying cannot help, so they are ``config.invalid``, not network errors.
_UNSENDABLE = (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL,
               requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema,
               requests.exceptions.URLRequired, requests.exceptions.InvalidJSONError)


def describe_failure(exc: BaseException, url: str) -> str:
    """A network failure in words: the host, the cause (refused, DNS, reset…) and a hint."""
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 10:
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return f"connection refused by {where} (is the service or simulator running at {parts.scheme}://{where}?)"
        if type(cause).__name__ == "NameResolutionError" or isinstance(cause, OSError) and (
                "Name or service not known" in str(cause) or "nodename nor servname" in str(cause)):
            return f"cannot resolve host {parts.hostname!r} (DNS lookup failed; check ConvaiConfig.url)"
        if isinstance(cause, ConnectionResetError):
            return f"connection reset by {where}"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (f"the TLS certificate of {where} is not trusted ({cause.verify_message}); certificates are "
                    "always verified: use the service's real address, or http:// for a local simulator")
        if isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLCertVerificationError) \
                and cause.reason:
            return f"TLS handshake with {where} failed ({cause.reason})"
        cause = cause.__cause__ or cause.__context__ or _reason_of(cause)
        seen += 1
    return f"{type(exc).__name__} talking to {where} (is the service or simulator running?)"


def _reason_of(exc: BaseException) -> BaseException | None:
    reason = getattr(exc, "reason", None)  # urllib3 MaxRetryError wraps the real error here
    return reason if isinstance(reason, BaseException) else None


def _error(code: ErrorCode, message: str, status: int | None, exc: BaseException | None = None) -> ConnectFailed:
    return ConnectFailed(SessionError.of(code, message, http_status_code=status, exception=exc,
                                         stage=SessionErrorStage.CONNECT_API))


class ConnectService(Protocol):
    """What a session needs of the connect API: :class:`ConnectApi`, or a test's own fake.

    ``connect`` raises :class:`ConnectFailed` (with its classified ``SessionError``) or returns the
    :class:`Endpoint`; ``disconnect`` never raises and returns True on HTTP 200; ``close`` frees
    the HTTP resources. Each must return promptly once ``canceller`` is aborted.
    """

    def connect(self, character_session_id: str | None, timeout: float,
                canceller: Canceller | None = None) -> Endpoint: ...

    def disconnect(self, session_id: str, timeout: float | None = None,
                   canceller: Canceller | None = None) -> bool: ...

    def close(self) -> None: ...


class ConnectApi:
    """HTTP client for ``/connect`` and ``/disconnect`` (one ``requests.Session``; TLS verified)."""

    def __init__(self, config: ConvaiConfig) -> None:
        self._config = config
        self._scrub = key_scrubber(config.api_key)
        self._base = config.url.rstrip("/")
        self._http = requests.Session()
        self._http.headers["User-Agent"] = "convai-sync"
        for prefix in ("http://", "https://"):
            self._http.mount(prefix, AbortableAdapter())

    def connect(self, character_session_id: str | None, timeout: float,
                canceller: Canceller | None = None) -> Endpoint:
        """Create a session.

        Args:
            character_session_id: Conversation to resume, or None.
            timeout: Seconds for each socket operation (the caller bounds the whole call by
                aborting ``canceller``).
            canceller: Aborts the call from another thread (a deadline, or ``close()``).

        Raises:
            ConnectFailed: with the classified error (stage CONNECT_API); an aborted call is
                ``connection.timeout``; an unreachable URL is ``connection.network_error`` whose
                message names the host and the cause (refused, DNS) with a hint.
        """
        body = build_request(self._config, character_session_id)
        url = f"{self._base}/connect"
        canceller = canceller or Canceller("POST /connect")
        failure: ConnectFailed | None = None
        try:
            with cancelled_by(canceller):
                # No redirects: requests would forward X-API-Key to another host on a 307/308.
                resp = self._http.post(url, json=body, timeout=timeout, allow_redirects=False,
                                       headers={"X-API-Key": self._config.api_key})
        except (requests.RequestException, ValueError) as exc:
            failure = self._request_failed(exc, timeout, url, canceller)
        finally:
            canceller.release()
        if failure is not None:
            # Raised outside the except block so the original (which holds the request and its
            # headers) is not even kept as __context__.
            raise failure
        log.debug("POST %s -> %d", url, resp.status_code)
        if resp.status_code != 200:
            message = self._redact(extract_message(resp.text) or f"HTTP {resp.status_code}")
            code = classify(resp.status_code, message)
            raise _error(code, f"POST /connect: HTTP {resp.status_code}: {message}", resp.status_code)
        return self._parse(resp)

    def _request_failed(self, exc: Exception, timeout: float, url: str, canceller: Canceller) -> ConnectFailed:
        """Classify an exception of ``requests`` (or of the layers below it) without the key."""
        if canceller.aborted:
            return _error(ErrorCode.CONNECTION_TIMEOUT, f"POST /connect aborted: {canceller.reason}", None)
        copy = scrubbed_copy(exc, self._config.api_key)
        if isinstance(exc, requests.Timeout):
            return _error(ErrorCode.CONNECTION_TIMEOUT, f"POST /connect timed out after {timeout:.1f} s",
                          None, copy)
        if isinstance(exc, _UNSENDABLE) or not isinstance(exc, requests.RequestException):
            return ConnectFailed(SessionError.of(
                ErrorCode.CONFIG_INVALID,
                f"POST /connect was not sent: the request could not be built ({copy}); "
                "check ConvaiConfig.api_key and ConvaiConfig.url", exception=copy))
        return _error(ErrorCode.CONNECTION_NETWORK_ERROR,
                      f"POST {url} failed: {self._scrub(describe_failure(exc, url))}", 0, copy)

    def _redact(self, text: str) -> str:
        """Hide the API key (in any of its forms) should a server echo it back in an error body."""
        return self._scrub(text)

    def _parse(self, resp: requests.Response) -> Endpoint:
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise _error(ErrorCode.CONNECTION_FAILED, "invalid room details: response is not a JSON object", 200)
        session_id, room_url = data.get("session_id"), data.get("room_url")
        if not isinstance(session_id, str) or not session_id or not isinstance(room_url, str) or not room_url:
            raise _error(ErrorCode.CONNECTION_FAILED, "invalid room details: missing session_id or room_url", 200)
        known = {"session_id", "room_url", "character_session_id", "room_name", "token",
                 "request_trace_id", "transport"}

        def opt(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) and value else None

        return Endpoint(
            session_id=session_id, room_url=room_url,
            character_session_id=opt("character_session_id"), room_name=opt("room_name"),
            token=data.get("token") or "", request_trace_id=opt("request_trace_id"),
            transport=opt("transport") or self._config.transport,
            extra={k: v for k, v in data.items() if k not in known},
        )

    def disconnect(self, session_id: str, timeout: float | None = None,
                   canceller: Canceller | None = None) -> bool:
        """``POST /disconnect?session_id=…`` (idempotent). Frees the plan's concurrency slot.

        The server frees the slot when the request arrives, so an answer that comes too late to
        wait for (``canceller`` aborted) loses nothing but the confirmation.

        Returns True on HTTP 200; failures are logged, never raised (teardown must finish).
        """
        url = f"{self._base}/disconnect"
        canceller = canceller or Canceller("POST /disconnect")
        try:
            with cancelled_by(canceller):
                resp = self._http.post(url, params={"session_id": session_id},
                                       timeout=timeout or self._config.http_timeout, allow_redirects=False)
        except requests.RequestException as exc:
            if canceller.aborted:
                log.info("POST /disconnect not answered in time (%s); the request was sent, the server "
                         "frees the slot when it reads it", canceller.reason)
            else:
                log.warning("POST /disconnect failed (%s); the server frees the slot on its own timeout",
                            self._scrub(describe_failure(exc, url)))
            return False
        finally:
            canceller.release()
        if resp.status_code != 200:
            log.warning("POST /disconnect -> HTTP %d: %s", resp.status_code, self._redact(extract_message(resp.text)))
            return False
        return True

    def close(self) -> None:
        self._http.close()
