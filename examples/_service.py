"""Shared by the examples: the real Convai service when credentials are set, else a simulator."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from convai_sync import ConvaiConfig


@contextlib.contextmanager
def service(force_simulator: bool, **overrides: Any) -> Iterator[ConvaiConfig]:
    """Yield a config for the real service (``CONVAI_API_KEY`` + ``CONVAI_CHARACTER_ID`` set and
    ``force_simulator`` false), else for an embedded simulator that stops on exit."""
    if not force_simulator and os.environ.get("CONVAI_API_KEY") and os.environ.get("CONVAI_CHARACTER_ID"):
        print("Using the real Convai service")
        yield ConvaiConfig.from_env(**overrides)
        return
    from simulator import Simulator

    with Simulator() as sim:
        print(f"Using the embedded Convai simulator at {sim.url}")
        yield sim.client_config(**overrides)
