"""``python -m simulator``: run the Convai simulator standalone until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence

from simulator.server import Simulator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulator", description="Run the local Convai simulator.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind (0 = any free port)")
    parser.add_argument("--api-key", action="append", dest="api_keys", help="accepted API key (repeatable)")
    parser.add_argument("--character", action="append", dest="characters", help="character id (repeatable)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {args.host}: the simulator has no real security", file=sys.stderr)
    sim = Simulator(
        args.host,
        args.port,
        api_keys=tuple(args.api_keys or ("sim-api-key",)),
        characters=tuple(args.characters or ("sim-character",)),
    )
    sim.start()
    print(f"Convai simulator listening on {sim.url}")
    print("Connect with:")
    print("    from convai_sync import ConvaiConfig")
    print(f"    config = ConvaiConfig(api_key={sim.api_key!r}, character_id={sim.character_id!r}, url={sim.url!r})")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
