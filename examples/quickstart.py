"""Talk to a Convai character in a plain script: connect, ask two questions, disconnect.

Run with no arguments to use an embedded local simulator (no account needed):

    python examples/quickstart.py

Set CONVAI_API_KEY and CONVAI_CHARACTER_ID (and optionally CONVAI_URL) to talk to the real
service instead. Replies stream in through a BACKGROUND handler while ask() blocks.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Iterator

from convai_sync import (
    BotText,
    BotTurnCompleted,
    ConvaiClient,
    ConvaiConfig,
    ConvaiError,
    EventDeliveryPolicy,
    ServerMessage,
    SessionStateChanged,
)

QUESTIONS = ("Hello! Who are you?", "What can you do for me today?")


@contextlib.contextmanager
def service(force_simulator: bool) -> Iterator[ConvaiConfig]:
    """Yield a config for the real service when credentials are set, else for a simulator."""
    if not force_simulator and os.environ.get("CONVAI_API_KEY") and os.environ.get("CONVAI_CHARACTER_ID"):
        print("Using the real Convai service")
        yield ConvaiConfig.from_env()
        return
    from simulator import Simulator

    with Simulator() as sim:
        print(f"Using the embedded Convai simulator at {sim.url}")
        yield sim.client_config()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", action="store_true", help="use the simulator even if credentials are set")
    args = parser.parse_args(argv)

    with service(args.simulator) as config, ConvaiClient(config) as client:
        turn_done = threading.Event()

        def on_state(change: SessionStateChanged) -> None:
            print(f"[state] {change.old_state.name} -> {change.new_state.name}")

        def on_message(message: ServerMessage) -> None:
            if isinstance(message, BotText):
                print(message.text, end="", flush=True)
            elif isinstance(message, BotTurnCompleted):
                print()
                turn_done.set()

        client.events.on_session_state_changed.subscribe(on_state, EventDeliveryPolicy.BACKGROUND)
        client.events.on_message.subscribe(on_message, EventDeliveryPolicy.BACKGROUND)
        try:
            client.connect()
            for question in QUESTIONS:
                turn_done.clear()
                print(f"\nYou: {question}\nCharacter: ", end="", flush=True)
                reply = client.ask(question, timeout=30)
                turn_done.wait(5)  # let the streaming handler print the last chunk first
                if reply.emotion:
                    print(f"  (emotion: {reply.emotion})")
            client.disconnect()
        except ConvaiError as exc:
            print(f"\nConvai error {exc.error_code.value}: {exc.error.message}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
