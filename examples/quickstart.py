"""Talk to a Convai character in a plain script: connect, ask two questions, disconnect.

Run with no arguments to use an embedded local simulator (no account needed):

    python examples/quickstart.py

Set CONVAI_API_KEY and CONVAI_CHARACTER_ID (and optionally CONVAI_URL) to talk to the real
service instead. Replies stream in through a BACKGROUND handler while ask() blocks.
"""

from __future__ import annotations

import argparse
import sys
import threading

from _service import service

from convai_sync import (
    BotText,
    BotTurnCompleted,
    ConvaiClient,
    ConvaiError,
    EventDeliveryPolicy,
    ServerMessage,
    SessionStateChanged,
)

QUESTIONS = ("Hello! Who are you?", "What can you do for me today?")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", action="store_true", help="use the simulator even if credentials are set")
    args = parser.parse_args(argv)

    with service(args.simulator) as config, ConvaiClient(config) as client:
        turn_done = threading.Event()
        connected_shown = threading.Event()

        def on_state(change: SessionStateChanged) -> None:
            print(f"[state] {change.old_state.name} -> {change.new_state.name}")
            if change.is_connection_established:
                connected_shown.set()

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
            connected_shown.wait(5)  # handlers run on the dispatcher thread: let it print first
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
