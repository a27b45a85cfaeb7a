"""Drive a Convai character from a game engine's fixed-timestep loop (no engine needed).

Game engines (Blender, Unreal, Maya, Panda3D, Pygame) only let their API be touched from the
main thread. This example is such a host: a 60 Hz loop on the main thread that

* subscribes every handler with ``EventDeliveryPolicy.MAIN_THREAD``, so the SDK only queues
  events, and calls ``client.pump()`` once per tick to run the queued handlers right there;
* shows a "thinking…" / "speaking…" / "idle" indicator driven by events
  (``BotLLMStarted`` -> thinking, ``BotStartedSpeaking`` -> speaking, ``BotTurnCompleted`` -> idle),
  printing only its transitions, with the tick they happened on;
* sends the player's lines with the non-blocking ``client.send_text()`` (never ``ask()``, which
  would stall the frame);
* records ``threading.current_thread()`` in every handler and checks at the end that all of them
  ran on the loop's thread (exit status 1 otherwise).

``client.connect()`` is called once before the loop starts: it blocks until the character is
ready and does not need ``pump()``. The only ``time.sleep`` is the host's frame pacing.

Run with no arguments to use an embedded local simulator (no account needed):

    python examples/game_loop.py

Set CONVAI_API_KEY and CONVAI_CHARACTER_ID (and optionally CONVAI_URL) to use the real service.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from _service import service

from convai_sync import (
    BotLLMStarted,
    BotStartedSpeaking,
    BotText,
    BotTurnCompleted,
    Connected,
    ConvaiClient,
    ConvaiError,
    Disconnected,
    EventDeliveryPolicy,
)

LINES = ("Hello there, traveller!", "Where can I find the blacksmith?", "Thanks, goodbye!")
MAIN = EventDeliveryPolicy.MAIN_THREAD


class Game:
    """The host's state: everything here is touched only from the loop's thread."""

    def __init__(self) -> None:
        self.tick = 0
        self.indicator = "idle"
        self.reply: list[str] = []
        self.turn_in_flight = False
        self.lines_left = list(LINES)
        self.connected = False
        self.handler_threads: dict[str, set[threading.Thread]] = {}

    def _record(self, name: str) -> None:
        self.handler_threads.setdefault(name, set()).add(threading.current_thread())

    def _set_indicator(self, value: str) -> None:
        if value != self.indicator:
            print(f"  [tick {self.tick:4d}] indicator: {self.indicator} -> {value}")
            self.indicator = value

    # ---- handlers (MAIN_THREAD: run inside client.pump()) ----------------------------------

    def on_connected(self, event: Connected) -> None:
        self._record("on_connected")
        self.connected = True
        print(f"  [tick {self.tick:4d}] connected (session {event.session_id[:8]}…)")

    def on_llm_started(self, _event: BotLLMStarted) -> None:
        self._record("on_llm_started")
        self._set_indicator("thinking…")

    def on_text(self, event: BotText) -> None:
        self._record("on_text")
        self.reply.append(event.text)

    def on_speaking(self, _event: BotStartedSpeaking) -> None:
        self._record("on_speaking")
        self._set_indicator("speaking…")

    def on_turn_completed(self, _event: BotTurnCompleted) -> None:
        self._record("on_turn_completed")
        self._set_indicator("idle")
        print(f"  Character: {''.join(self.reply).strip()}")
        self.reply.clear()
        self.turn_in_flight = False

    def on_disconnected(self, event: Disconnected) -> None:
        self._record("on_disconnected")
        print(f"  [tick {self.tick:4d}] disconnected ({event.reason.name})")


def run_loop(client: ConvaiClient, game: Game, hz: float, max_seconds: float) -> bool:
    """The host's fixed-timestep loop; returns True when every line got its reply."""
    dt = 1.0 / hz
    next_frame = time.perf_counter()
    max_ticks = int(max_seconds * hz)
    while game.tick < max_ticks:
        game.tick += 1
        client.pump()  # run queued MAIN_THREAD handlers here, on the loop's thread
        # --- game logic for this frame ---
        if game.connected and not game.turn_in_flight:
            if not game.lines_left:
                return True
            line = game.lines_left.pop(0)
            print(f"  [tick {game.tick:4d}] You: {line}")
            client.send_text(line)  # returns at once; the reply arrives as events
            game.turn_in_flight = True
        # --- frame pacing: the host's tick, not synchronisation ---
        next_frame += dt
        time.sleep(max(0.0, next_frame - time.perf_counter()))
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", action="store_true", help="use the simulator even if credentials are set")
    parser.add_argument("--hz", type=float, default=60.0, help="loop frequency (default 60)")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="give up after this long (default 8)")
    args = parser.parse_args(argv)

    game = Game()
    loop_thread = threading.current_thread()
    # A realistic pace for the embedded character (a real one takes a while to think and speak), so
    # the indicator visibly goes thinking -> speaking -> idle over several ticks.
    pace = {"chunk_delay": 0.08, "bot_ready_delay": 0.0}
    with service(args.simulator, simulator_options=pace) as config, ConvaiClient(config) as client:
        ev = client.events
        ev.on_connected.subscribe(game.on_connected, MAIN)
        ev.on_disconnected.subscribe(game.on_disconnected, MAIN)
        ev.raw.subscribe(BotLLMStarted, game.on_llm_started, MAIN)
        ev.raw.subscribe(BotText, game.on_text, MAIN)
        ev.raw.subscribe(BotStartedSpeaking, game.on_speaking, MAIN)
        ev.raw.subscribe(BotTurnCompleted, game.on_turn_completed, MAIN)
        try:
            client.connect()  # blocks until ready; needs no pump()
            print(f"Game loop running at {args.hz:g} Hz on thread {loop_thread.name!r}")
            finished = run_loop(client, game, args.hz, args.max_seconds)
            client.disconnect()
            client.pump()  # deliver the Disconnected event on this thread too
        except ConvaiError as exc:
            print(f"Convai error {exc.error_code.value}: {exc.error.message}", file=sys.stderr)
            return 1

    print(f"Loop ran {game.tick} ticks; handlers ran on:")
    ok = finished
    for name, threads in game.handler_threads.items():
        names = ", ".join(sorted(t.name for t in threads))
        same = threads == {loop_thread}
        ok = ok and same
        print(f"  {name:20s} {names}{'' if same else '   <-- NOT the loop thread'}")
    if not finished:
        print("The conversation did not finish in time", file=sys.stderr)
    if ok:
        print(f"OK: all {len(game.handler_threads)} handlers ran on the loop's thread ({loop_thread.name})")
        return 0
    print("FAIL: a handler ran off the loop's thread", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
