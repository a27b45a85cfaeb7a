"""One connect attempt's blocking work, run on a ``convai-connect-<n>`` worker thread.

:class:`AttemptRunner` does what an attempt must wait for (the attempt's credential, which may
call the application's ``token_provider``; ``POST /connect``, then the
transport's ``open()``: the WebSocket handshake or the LiveKit join), each step aborted through the
attempt's :class:`~convai_sync.netio.Canceller` when the session thread's deadline timer fires or
the application disconnects. It never touches session state: it returns an :class:`AttemptResult`
that the session thread adopts or discards.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from .config import ConvaiConfig
from .connect import ConnectFailed, ConnectService, Endpoint
from .credentials import CredentialFailed, Credentials
from .errors import ErrorCode, SessionError
from .netio import Aborted, Canceller
from .redact import scrubbed_copy, secrets_scrubber
from .transports.base import Transport, TransportListener, TransportOpenError
from .workers import Workers

log = logging.getLogger("convai_sync")


@dataclass
class AttemptResult:
    """What one attempt acquired: an endpoint (the server holds a session and a slot for it), an
    open transport, or the error that ended it (then ``transport`` is None)."""

    attempt_id: int
    endpoint: Endpoint | None
    transport: Transport | None
    error: SessionError | None


class AttemptRunner:
    """Runs attempts (worker threads) and releases what a late one acquired."""

    def __init__(self, config: ConvaiConfig, api: ConnectService, new_transport: Callable[[], Transport],
                 workers: Workers) -> None:
        self._config = config
        self._api = api
        self._new_transport = new_transport
        self._workers = workers
        self._credentials = Credentials(config)
        self._steps_lock = threading.Lock()
        self._steps: dict[int, str] = {}  # attempt id -> what it is waiting for (for timeout messages)

    def waiting_for(self, attempt_id: int) -> str | None:
        """What attempt ``attempt_id`` is blocked in, in words (e.g. ``"a token from token_provider"``)."""
        with self._steps_lock:
            return self._steps.get(attempt_id)

    def _step(self, attempt_id: int, what: str | None) -> None:
        with self._steps_lock:
            if what is None:
                self._steps.pop(attempt_id, None)
            else:
                self._steps[attempt_id] = what

    def run(self, attempt_id: int, csid: str | None, timeout: float, listener: TransportListener,
            canceller: Canceller) -> AttemptResult:
        """The blocking HTTP and handshake of one attempt, bounded by ``timeout`` seconds."""
        started = time.monotonic()
        endpoint: Endpoint | None = None
        transport: Transport | None = None
        error: SessionError | None = None
        token: str | None = None
        # A session released just before (a drop, a disconnect) must free its slot first, or a
        # plan at its concurrency limit answers this connect with 429.
        self._workers.wait(started + min(timeout, self._config.disconnect_timeout), role="http")
        try:
            self._step(attempt_id, "a token from token_provider")
            credential = self._credentials.for_attempt()
            self._step(attempt_id, None)
            canceller.check()  # a provider that returned after the deadline: its token is never used
            if credential.is_token:
                token = credential.value
                endpoint = self._api.connect(csid, timeout=min(timeout, self._config.http_timeout),
                                             canceller=canceller, credential=credential)
            else:
                endpoint = self._api.connect(csid, timeout=min(timeout, self._config.http_timeout),
                                             canceller=canceller)
            self._record(endpoint)
            transport = self._new_transport()
            remaining = max(0.001, timeout - (time.monotonic() - started))
            transport.open(endpoint, listener, timeout=remaining, canceller=canceller)
        except (ConnectFailed, CredentialFailed) as exc:
            error = exc.error
        except TransportOpenError as exc:
            error = exc.error
        except Aborted as exc:
            error = SessionError.of(ErrorCode.CONNECTION_TIMEOUT, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug below us must fail the attempt, not hang connect()
            copy = scrubbed_copy(exc, self._config.api_key, self._config.auth_token, token)
            scrub = secrets_scrubber(self._config.api_key, self._config.auth_token, token)
            log.error("unexpected error during a connect attempt: %s\n%s", copy,
                      scrub("".join(traceback.format_exception(exc))))
            error = SessionError.of(ErrorCode.CONNECTION_FAILED, str(copy), exception=copy)
        finally:
            self._step(attempt_id, None)
        return AttemptResult(attempt_id, endpoint, None if error is not None else transport, error)

    def _record(self, endpoint: Endpoint) -> None:
        """Keep the conversation id in the configured :class:`~convai_sync.SessionStore` (file I/O
        here, on the worker, not on the session thread)."""
        store = self._config.session_store
        if store is not None and endpoint.character_session_id:
            store.set(self._config.character_id, endpoint.character_session_id)

    def discard_late(self, result: AttemptResult) -> None:
        """Release a result nobody will adopt, on the worker thread (the session thread stopped)."""
        if result.transport is not None:
            result.transport.close(timeout=self._config.close_timeout)
        if result.endpoint is not None:
            self._api.disconnect(result.endpoint.session_id, timeout=self._config.close_timeout)
