"""Warn an idle player with a countdown banner, let them stay with one click, or end the session.

Convai closes a session whose user has been idle for a while, warning first with a
``user-idle-warning`` message (``remaining_seconds`` until the close); any message from the
client resets the server's idle timer. The SDK surfaces this as:

* ``on_user_idle_warning`` (``UserIdleWarningReceived.remaining_seconds``): show a countdown;
* ``client.reset_idle_timer()``: the player clicked "I'm still here" (any ``send_*`` also resets);
* ``on_user_idle_timeout`` (``UserIdleTimeoutElapsed``): the SDK's local deadline (warning time +
  ``remaining_seconds``) passed while still connected (Unity's ``OnUserIdleTimeoutElapsed``);
* ``on_disconnected``: the server closed the session (simulator/WebSocket: close 1000 "Idle
  timeout", which the SDK reports as ``DisconnectReason.ROOM_DELETED``, as LiveKit would).

The embedded simulator here has ``idle_timeout=3`` and ``idle_warning_lead=2``: one warning 1 s
into a quiet spell ("disconnected in 2 s"), then the close at 3 s. The first warning is answered
with ``reset_idle_timer()``; the second is left to run out. The banner refreshes by waiting on
the "session ended" ``threading.Event`` with a short timeout (no sleeps). It always uses the
simulator, whose idle timings are configurable (the real service's are minutes).

    python examples/idle_countdown.py
"""

from __future__ import annotations

import argparse
import math
import queue
import sys
import threading
import time

from convai_sync import (
    ConvaiClient,
    ConvaiError,
    Disconnected,
    EventDeliveryPolicy,
    UserIdleTimeoutElapsed,
    UserIdleWarningReceived,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-timeout", type=float, default=3.0, help="simulator idle_timeout (default 3)")
    parser.add_argument("--warning-lead", type=float, default=2.0, help="simulator idle_warning_lead (default 2)")
    args = parser.parse_args(argv)

    from simulator import Simulator

    start = time.monotonic()
    warnings: queue.Queue[tuple[float, UserIdleWarningReceived]] = queue.Queue()
    ended = threading.Event()
    outcome: dict[str, object] = {}

    def say(text: str) -> None:
        print(f"[{time.monotonic() - start:5.2f} s] {text}")

    def on_idle_warning(event: UserIdleWarningReceived) -> None:
        warnings.put((time.monotonic(), event))  # the main thread owns the banner

    def on_idle_timeout(event: UserIdleTimeoutElapsed) -> None:
        say(f"on_user_idle_timeout: local idle deadline {event.deadline:%H:%M:%S} passed")
        outcome["idle_timeout"] = event

    def on_disconnected(event: Disconnected) -> None:
        outcome["disconnected"] = event
        ended.set()

    def countdown(received_at: float, warning: UserIdleWarningReceived, stop: threading.Event | None) -> None:
        """Show the banner until the deadline, ``stop`` is set, or the session ends."""
        deadline = received_at + warning.remaining_seconds
        shown = None
        while not ended.is_set():
            left = math.ceil(deadline - time.monotonic())
            if left <= 0:
                break
            if left != shown:
                say(f"┃ You'll be disconnected in {left} s — press any key to stay")
                shown = left
            if stop is not None and stop.is_set():
                break
            ended.wait(min(0.1, max(0.0, deadline - time.monotonic())))

    with Simulator(idle_timeout=args.idle_timeout, idle_warning_lead=args.warning_lead) as sim:
        print(f"Using the embedded Convai simulator at {sim.url} "
              f"(idle_timeout={args.idle_timeout:g} s, idle_warning_lead={args.warning_lead:g} s)")
        with ConvaiClient(sim.client_config()) as client:
            client.events.on_user_idle_warning.subscribe(on_idle_warning, EventDeliveryPolicy.BACKGROUND)
            client.events.on_user_idle_timeout.subscribe(on_idle_timeout, EventDeliveryPolicy.BACKGROUND)
            client.events.on_disconnected.subscribe(on_disconnected, EventDeliveryPolicy.BACKGROUND)
            try:
                client.connect()
                start = time.monotonic()
                say(f"Character: {client.ask('Hello! I will go quiet now.').text}")
                say("(the player stops typing)")

                received_at, warning = warnings.get(timeout=args.idle_timeout + 5)
                say(f"on_user_idle_warning: remaining_seconds={warning.remaining_seconds} "
                    f"message={warning.message!r}")
                clicked = threading.Event()
                clicked.set()  # the player reacts at once; drop this line to watch the whole countdown
                countdown(received_at, warning, clicked)
                client.reset_idle_timer(wait=True)
                say("┃ (banner cleared) the player clicked 'I'm still here' -> reset_idle_timer()")

                received_at, warning = warnings.get(timeout=args.idle_timeout + 5)
                say(f"on_user_idle_warning: remaining_seconds={warning.remaining_seconds}; "
                    "this time nobody answers")
                countdown(received_at, warning, None)
                if not ended.wait(5):
                    say("the session was not closed")
                    return 1
            except (ConvaiError, queue.Empty) as exc:
                print(f"Unexpected: {exc!r}", file=sys.stderr)
                return 1
            event = outcome["disconnected"]
            assert isinstance(event, Disconnected)
            say(f"on_disconnected: {event.message}")
            if "idle_timeout" not in outcome:
                say("(the server's close came before the SDK's local idle deadline, so "
                    "on_user_idle_timeout did not fire)")
            say(f"┃ The server closed the session because nobody spoke for {args.idle_timeout:g} s. "
                f"state={client.state.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
