"""Show a "Reconnecting…" banner for recoverable failures and a "Please reload" prompt for the rest.

An app should not treat every failure alike. This example drives one client through faults
injected on an embedded simulator and shows what the user would see for each:

1. ``DisconnectReason.SIGNAL_CLOSE`` (the connection dropped; recoverable): the SDK reconnects on
   its own, resuming the conversation. ``on_reconnecting`` shows "Reconnecting… (attempt n/m)" and
   ``on_reconnected`` clears it.
2. ``server.error`` (a recoverable pipeline error): ``on_session_error`` reports it with
   ``is_recoverable=True``; the app shows a transient notice and the session simply continues.
3. ``DisconnectReason.DUPLICATE_IDENTITY`` (another login took the session; not retried): the
   session ends with ``on_disconnected``; the app shows "Please reload".
4. After the user "reloads" (a fresh ``connect()``), ``server.fatal_error``: ``on_session_error``
   with ``is_recoverable=False`` and the session ends; again "Please reload".

The banner is decided only from the event payloads: ``SessionError.is_recoverable`` and
``Disconnected.reason``/``.error``. Each step waits for its outcome on a ``threading.Event`` set
by a handler (no sleeps). It always uses the simulator, because it injects faults.

    python examples/error_banner.py
"""

from __future__ import annotations

import argparse
import sys
import threading

from convai_sync import (
    ConvaiClient,
    ConvaiError,
    Disconnected,
    DisconnectReason,
    EventDeliveryPolicy,
    Reconnected,
    Reconnecting,
    ReconnectPolicy,
    SessionError,
)


class Banner:
    """The app's status line; prints only when it changes."""

    def __init__(self) -> None:
        self._text = ""
        self._lock = threading.Lock()

    def show(self, text: str) -> None:
        with self._lock:
            if text != self._text:
                self._text = text
                print(f"    ┃ {text}" if text else "    ┃ (banner cleared)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each outcome")
    args = parser.parse_args(argv)

    from simulator import Simulator

    banner = Banner()
    reconnected = threading.Event()
    recoverable_error = threading.Event()
    ended = threading.Event()

    def on_reconnecting(event: Reconnecting) -> None:
        banner.show(f"Reconnecting… (attempt {event.attempt}/{event.max_attempts})")

    def on_reconnected(event: Reconnected) -> None:
        banner.show(f"Reconnected after {event.attempts} attempt(s)")
        reconnected.set()

    def on_session_error(error: SessionError) -> None:
        if error.is_recoverable:
            banner.show(f"Something went wrong ({error.error_code.value}); still connected")
            recoverable_error.set()
        else:
            banner.show(f"Please reload: {error.message} [{error.error_code.value}]")

    def on_disconnected(event: Disconnected) -> None:
        # An ending caused by an error was already shown by on_session_error.
        if event.reason is not DisconnectReason.CLIENT_INITIATED and event.error is None:
            banner.show(f"Please reload: {event.reason.message} [{event.reason.name}]")
        ended.set()

    def wait(flag: threading.Event, what: str) -> None:
        if not flag.wait(args.timeout):
            raise TimeoutError(f"no {what} within {args.timeout} s")
        flag.clear()

    with Simulator() as sim:
        print(f"Using the embedded Convai simulator at {sim.url}")
        config = sim.client_config(reconnect_policy=ReconnectPolicy(delays=(0.1,)))
        with ConvaiClient(config) as client:
            bg = EventDeliveryPolicy.BACKGROUND
            client.events.on_reconnecting.subscribe(on_reconnecting, bg)
            client.events.on_reconnected.subscribe(on_reconnected, bg)
            client.events.on_session_error.subscribe(on_session_error, bg)
            client.events.on_disconnected.subscribe(on_disconnected, bg)
            try:
                client.connect()
                print(f"Connected. Character: {client.ask('Hello!').text}")

                print("\n1) The connection drops (SIGNAL_CLOSE: recoverable)")
                sim.inject(DisconnectReason.SIGNAL_CLOSE)
                wait(reconnected, "reconnect")
                print(f"   Character: {client.ask('Are you still there?').text}")
                banner.show("")

                print("\n2) The server reports a pipeline error (server.error: recoverable)")
                sim.inject("server.error")
                wait(recoverable_error, "server.error")
                print(f"   Character: {client.ask('Did something break?').text}")
                banner.show("")

                print("\n3) Someone else logs in with this identity (DUPLICATE_IDENTITY: not retried)")
                sim.inject(DisconnectReason.DUPLICATE_IDENTITY)
                wait(ended, "disconnect")
                print(f"   state={client.state.name} last_disconnect_reason={client.last_disconnect_reason!r}")

                print("\n   The user clicks 'Reload' -> connect() again")
                banner.show("")
                client.connect()
                print(f"   Character: {client.ask('Hi again!').text}")

                print("\n4) The server's pipeline fails for good (server.fatal_error: unrecoverable)")
                sim.inject("server.fatal_error")
                wait(ended, "disconnect")
                last = client.last_error
                print(f"   state={client.state.name} last_error={last.error_code.value if last else None} "
                      f"is_recoverable={last.is_recoverable if last else None}")
            except (ConvaiError, TimeoutError) as exc:
                print(f"\nUnexpected: {exc}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
