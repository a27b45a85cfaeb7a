"""Cap a session's length ("at most 60 minutes per player") with warnings before the end.

``ConvaiConfig(max_session_duration=seconds)`` makes the SDK end a session cleanly when the cap
is reached: it closes the transport and calls ``POST /disconnect``, so the plan's concurrency
slot frees at once. Before that, ``on_session_duration_warning`` fires at each lead time of
``session_duration_warnings`` (default 60 s and 10 s before the end) so the app can show
"Session ends in N s". The session then ends with ``on_disconnected`` whose ``error`` names the
cause: ``session.duration_limit_reached``.

A real app would use ``max_session_duration=3600``; this demo uses a 3 s cap with warnings 2 s
and 1 s before it, so it finishes at once. It waits for the end on a ``threading.Event`` set by
the ``on_disconnected`` handler.

Run with no arguments to use an embedded local simulator (no account needed):

    python examples/session_timer.py

Set CONVAI_API_KEY and CONVAI_CHARACTER_ID (and optionally CONVAI_URL) to use the real service.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from _service import service

from convai_sync import (
    ConvaiClient,
    ConvaiError,
    Disconnected,
    EventDeliveryPolicy,
    SessionDurationWarning,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", action="store_true", help="use the simulator even if credentials are set")
    parser.add_argument("--cap", type=float, default=3.0, help="max_session_duration in seconds (default 3)")
    parser.add_argument("--warnings", type=float, nargs="+", default=[2.0, 1.0],
                        help="lead times of the warnings in seconds (default 2 1)")
    args = parser.parse_args(argv)

    ended = threading.Event()
    outcome: list[Disconnected] = []
    start = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - start:5.2f} s] {text}")

    def on_warning(event: SessionDurationWarning) -> None:
        say(f"Session ends in {event.remaining_seconds:g} s (cap {event.max_session_duration:g} s)")

    def on_disconnected(event: Disconnected) -> None:
        say(f"Session over: {event.message}")
        outcome.append(event)
        ended.set()

    with service(args.simulator) as base:
        config = base.replace(max_session_duration=args.cap, session_duration_warnings=tuple(args.warnings))
        with ConvaiClient(config) as client:
            client.events.on_session_duration_warning.subscribe(on_warning, EventDeliveryPolicy.BACKGROUND)
            client.events.on_disconnected.subscribe(on_disconnected, EventDeliveryPolicy.BACKGROUND)
            try:
                client.connect()
                start = time.monotonic()
                say(f"Connected; this session is capped at {args.cap:g} s")
                say(f"Character: {client.ask('Hi! How long can we talk?').text}")
                if not ended.wait(args.cap + 5):
                    say("the cap did not end the session")
                    return 1
            except ConvaiError as exc:
                print(f"Convai error {exc.error_code.value}: {exc.error.message}", file=sys.stderr)
                return 1
            say(f"state={client.state.name}: the SDK ended the session when its {args.cap:g} s cap was reached")
    event = outcome[0]
    return 0 if event.error is not None and event.error.error_code == "session.duration_limit_reached" else 1


if __name__ == "__main__":
    sys.exit(main())
