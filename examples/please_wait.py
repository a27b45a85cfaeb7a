"""Show "Please wait…" while the plan's concurrency limit is reached, and remove it when a slot frees.

A Convai plan allows a fixed number of concurrent sessions. A slot is occupied from a
successful ``POST /connect`` until the session ends, and ``disconnect()`` frees it at once
(it closes the WebSocket and calls ``POST /disconnect``). When every slot is taken, connect fails
with ``connection.connect_concurrency_limit_reached``, raised as ``ConcurrencyLimitError``.

With ``ConvaiConfig(slot_wait=SlotWaitPolicy(max_wait, interval))`` the SDK keeps trying instead:
before each wait it fires ``on_waiting_for_slot`` (the app shows "Please wait…"), and when a
slot frees it connects and fires ``on_connected`` (the app removes the message). After
``max_wait`` seconds it gives up with ``ConcurrencyLimitError``.

Here an embedded simulator has ``concurrency_limit=1``. Player A takes the only slot; player B
connects on a background thread and sees "Please wait…"; after B has been told twice, A leaves
and B gets in. It always uses the simulator (the limit is the simulator's).

    python examples/please_wait.py
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from convai_sync import (
    ConcurrencyLimitError,
    Connected,
    ConvaiClient,
    ConvaiError,
    EventDeliveryPolicy,
    SlotWaitPolicy,
    WaitingForSlot,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between B's tries (default 0.5)")
    parser.add_argument("--max-wait", type=float, default=30.0, help="B gives up after this long (default 30)")
    args = parser.parse_args(argv)

    from simulator import Simulator

    start = time.monotonic()

    def say(who: str, text: str) -> None:
        print(f"[{time.monotonic() - start:5.2f} s] {who}: {text}")

    with Simulator(concurrency_limit=1) as sim:
        print(f"Using the embedded Convai simulator at {sim.url} (concurrency_limit=1)")
        config_b = sim.client_config(slot_wait=SlotWaitPolicy(max_wait=args.max_wait, interval=args.interval))
        with ConvaiClient(sim.client_config()) as a, ConvaiClient(config_b) as b:
            waited_twice = threading.Event()
            b_connected = threading.Event()
            b_outcome: list[BaseException | None] = []

            def on_waiting(event: WaitingForSlot) -> None:
                say("B", f"Please wait… (attempt {event.attempt}, waited {event.waited:.1f} s, "
                         f"next try in {event.retry_in:.1f} s)")
                if event.attempt >= 2:
                    waited_twice.set()

            def on_connected(_event: Connected) -> None:
                say("B", "Slot free — connected!")
                b_connected.set()

            b.events.on_waiting_for_slot.subscribe(on_waiting, EventDeliveryPolicy.BACKGROUND)
            b.events.on_connected.subscribe(on_connected, EventDeliveryPolicy.BACKGROUND)

            def connect_b() -> None:
                try:
                    b.connect()
                    b_outcome.append(None)
                except ConvaiError as exc:
                    b_outcome.append(exc)

            try:
                a.connect()
                say("A", f"connected; slots in use: {sim.slots_in_use()}/1")
                b_thread = threading.Thread(target=connect_b, name="player-b-connect")
                say("B", "connecting…")
                b_thread.start()
                if not waited_twice.wait(10):
                    say("main", "B was never told to wait")
                    return 1
                say("A", "leaves (disconnect() frees the slot at once)")
                a.disconnect()
                b_thread.join(args.max_wait + 10)
                if not b_outcome or b_outcome[0] is not None:
                    reason = b_outcome[0] if b_outcome else "connect() did not return"
                    kind = "gave up" if isinstance(reason, ConcurrencyLimitError) else "failed"
                    say("B", f"{kind}: {reason}")
                    return 1
                b_connected.wait(5)  # let B's BACKGROUND handler print first
                say("B", f"state={b.state.name}; slots in use: {sim.slots_in_use()}/1")
                say("B", f"Character: {b.ask('Finally! Hello!').text}")
                b.disconnect()
                say("main", f"B left; slots in use: {sim.slots_in_use()}/1")
            except ConvaiError as exc:
                print(f"Convai error {exc.error_code.value}: {exc.error.message}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
