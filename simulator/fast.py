"""The fast client configuration for tests against the simulator: no retry waits, short deadlines (no state)."""

from __future__ import annotations

from typing import Any

#: Seconds of each bound in the fast configuration: long enough for a loaded CI machine on loopback,
#: short enough that a test of a failure path fails or passes in seconds.
FAST_CONNECTION_TIMEOUT = 5.0
FAST_ACK_TIMEOUT = 2.0
FAST_HTTP_TIMEOUT = 5.0
FAST_DISCONNECT_TIMEOUT = 0.5


def fast_overrides() -> dict[str, Any]:
    """``ConvaiConfig`` keywords for fast tests: ``Simulator.client_config(fast=True)`` applies them.

    * ``retry_policy``: the default 4 attempts and retryable codes, every delay 0 s (the default
      waits 0, 1, 2 and 4 s, so a test of a retried 429 took 7 s);
    * ``reconnect_policy``: the default 3 attempts, every delay 0 s, and no 5 s pause after
      ``SERVER_SHUTDOWN``;
    * ``connection_timeout`` 5 s (default 30), ``ack_timeout`` 2 s (10), ``http_timeout`` 5 s (15),
      ``disconnect_timeout`` 0.5 s (2).

    Keywords given to ``client_config`` next to ``fast=True`` win over these.
    """
    from convai_sync import ReconnectPolicy, RetryPolicy

    return {
        "retry_policy": RetryPolicy(delays=(0.0,)),
        "reconnect_policy": ReconnectPolicy(delays=(0.0,), server_shutdown_delay=0.0),
        "connection_timeout": FAST_CONNECTION_TIMEOUT,
        "ack_timeout": FAST_ACK_TIMEOUT,
        "http_timeout": FAST_HTTP_TIMEOUT,
        "disconnect_timeout": FAST_DISCONNECT_TIMEOUT,
    }
