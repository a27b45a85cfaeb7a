"""Shared by the examples: the real Convai service when credentials are set, else a simulator."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from convai_sync import ConvaiConfig


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def service(force_simulator: bool, simulator_options: dict[str, Any] | None = None,
            **overrides: Any) -> Iterator[ConvaiConfig]:
    """Yield a config for the service named by ``CONVAI_API_KEY`` + ``CONVAI_CHARACTER_ID`` (and
    ``CONVAI_URL``) when they are set and ``force_simulator`` is false, else for an embedded
    simulator (``Simulator(**simulator_options)``) that stops on exit."""
    if not force_simulator and os.environ.get("CONVAI_API_KEY") and os.environ.get("CONVAI_CHARACTER_ID"):
        config = ConvaiConfig.from_env(**overrides)
        if _is_local(config.url):
            print(f"Using the local Convai service at {config.url} (a simulator started with convai-sim?)")
        else:
            print(f"Using the Convai service at {config.url}")
        yield config
        return
    from simulator import Simulator

    with Simulator(**(simulator_options or {})) as sim:
        print(f"Using the embedded Convai simulator at {sim.url}")
        yield sim.client_config(**overrides)
