"""One connect attempt's blocking work, run on a ``convai-connect-<n>`` worker thread.

:class:`AttemptRunner` does what an attempt must wait for (``POST /connect``, then the
transport's ``open()``: the WebSocket handshake or the LiveKit join), each step aborted through the
attempt's :class:`~convai_sync.netio.Canceller` when the session thread's deadline timer fires or
the application disconnects. It never touches session state: it returns an :class:`AttemptResult`
that the session thread adopts or discards.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from .config import ConvaiConfig
from .connect import ConnectFailed, ConnectService, Endpoint
from .errors import ErrorCode, SessionError
from .netio import Canceller
from .redact import scrub, scrubbed_copy
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

    def run(self, attempt_id: int, csid: str | None, timeout: float, listener: TransportListener,
            canceller: Canceller) -> AttemptResult:
        """The blocking HTTP and handshake of one attempt, bounded by ``timeout`` seconds."""
        started = time.monotonic()
        endpoint: Endpoint | None = None
        transport: Transport | None = None
        error: SessionError | None = None
        # A session released just before (a drop, a disconnect) must free its slot first, or a
        # plan at its concurrency limit answers this connect with 429.
        self._workers.wait(started + min(timeout, self._config.disconnect_timeout), role="http")
        try:
            endpoint = self._api.connect(csid, timeout=min(timeout, self._config.http_timeout),
                                         canceller=canceller)
            transport = self._new_transport()
            remaining = max(0.001, timeout - (time.monotonic() - started))
            transport.open(endpoint, listener, timeout=remaining, canceller=canceller)
        except ConnectFailed as exc:
            error = exc.error
        except TransportOpenError as exc:
            error = exc.error
        except Exception as exc:  # noqa: BLE001 - a bug below us must fail the attempt, not hang connect()
            copy = scrubbed_copy(exc, self._config.api_key)
            log.error("unexpected error during a connect attempt: %s\n%s", copy,
                      scrub("".join(traceback.format_exception(exc)), self._config.api_key))
            error = SessionError.of(ErrorCode.CONNECTION_FAILED, str(copy), exception=copy)
        return AttemptResult(attempt_id, endpoint, None if error is not None else transport, error)

    def discard_late(self, result: AttemptResult) -> None:
        """Release a result nobody will adopt, on the worker thread (the session thread stopped)."""
        if result.transport is not None:
            result.transport.close(timeout=self._config.close_timeout)
        if result.endpoint is not None:
            self._api.disconnect(result.endpoint.session_id, timeout=self._config.close_timeout)
