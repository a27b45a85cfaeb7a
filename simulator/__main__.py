"""``convai-sim`` / ``python -m simulator``: run the Convai simulator standalone until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from simulator.scenario import shipped_scenarios
from simulator.server import Simulator

LOOPBACK_NAMES = ("localhost",)
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convai-sim",
        description="Run the local Convai simulator (Convai's /connect, /chat and /disconnect on one port).",
        epilog=f"Shipped scenarios: {', '.join(shipped_scenarios())}.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; anything else is reachable "
                                            "from the network and prints a warning)")
    add("--port", type=int, default=0, help="port to bind (default 0: any free port; the URL is printed)")
    add("--api-key", action="append", dest="api_keys", metavar="KEY",
        help="accepted API key (repeatable; default sim-api-key)")
    add("--character", action="append", dest="characters", metavar="ID",
        help="character id (repeatable; default sim-character)")
    add("--concurrency-limit", type=int, metavar="N", help="live sessions per key (429 beyond)")
    add("--speaker-limit", type=int, metavar="N", help="distinct end_user_id values per key")
    add("--connect-rate-limit", type=int, metavar="N", help="accepted connects per key per minute")
    add("--usage-quota", type=int, metavar="N", help="interactions per key (then usage-limit-reached)")
    add("--idle-timeout", type=float, metavar="S", help="close a session idle this long (1000 'Idle timeout')")
    add("--idle-warning-lead", type=float, metavar="S", help="send user-idle-warning this long before")
    add("--token-ttl", type=float, metavar="S", help="session lifetime from /connect ('Session expired')")
    add("--no-realtime", action="store_true", help="answer every /connect with 403 (plan has no realtime)")
    add("--bot-ready-delay", type=float, default=0.0, metavar="S", help="delay before bot-ready (default 0)")
    add("--chunk-delay", type=float, default=0.0, metavar="S", help="delay between reply chunks (default 0)")
    add("--scenario", metavar="FILE_OR_NAME", help="scenario JSON file, or a shipped scenario's name")
    add("--control-token", metavar="TOKEN", help="token for the /_sim/* control API (default: random)")
    add("--transport-default", choices=("livekit", "websocket"), default="livekit",
        help="transport of a /connect that names none (default livekit, as the real service)")
    add("--log-level", default="INFO", type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), help="logging level (default INFO)")
    return parser


def _simulator(args: argparse.Namespace) -> Simulator:
    return Simulator(
        args.host,
        args.port,
        api_keys=tuple(args.api_keys or ("sim-api-key",)),
        characters=tuple(args.characters or ("sim-character",)),
        concurrency_limit=args.concurrency_limit,
        speaker_limit=args.speaker_limit,
        connect_rate_limit=args.connect_rate_limit,
        usage_quota=args.usage_quota,
        idle_timeout=args.idle_timeout,
        idle_warning_lead=args.idle_warning_lead,
        token_ttl=args.token_ttl,
        realtime_allowed=not args.no_realtime,
        bot_ready_delay=args.bot_ready_delay,
        chunk_delay=args.chunk_delay,
        scenario=args.scenario,
        control_token=args.control_token,
        transport_default=args.transport_default,
    )


def _banner(sim: Simulator) -> str:
    scenario = sim.scenario
    # A wildcard bind listens on every interface; clients on this machine reach it on loopback.
    url = f"http://127.0.0.1:{sim.port}" if sim.host in WILDCARD_HOSTS else sim.url
    lines = [
        f"Convai simulator listening on {sim.url}",
        f"Control token: {sim.control_token}  (header X-Sim-Control-Token for {url}/_sim/*)",
        f"LiveKit URL: {sim.livekit_url}" + ("" if sim.livekit_available else "  (unavailable: install the "
                                             "'simulator-livekit' extra)"),
    ]
    if scenario is not None:
        lines.append(f"Scenario: {scenario.name}: {scenario.description}".rstrip(": "))
    lines += [
        "Connect with:",
        "    from convai_sync import ConvaiConfig",
        f'    config = ConvaiConfig(api_key="{sim.api_key}", character_id="{sim.character_id}", url="{url}")',
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGINT or SIGTERM; returns the exit status (0 after a clean stop, 2 on bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not _is_loopback(args.host):
        print(f"warning: binding {args.host} exposes the simulator to the network; it has no real "
              "security (any listed API key works, control token aside)", file=sys.stderr, flush=True)
    try:
        sim = _simulator(args)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    on_main = threading.current_thread() is threading.main_thread()
    if on_main:
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, on_signal)
    try:
        try:
            sim.start()
        except OSError as exc:
            print(f"error: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True)
            return 1
        print(_banner(sim), flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:  # only when signals could not be installed (not the main thread)
            pass
        print("stopping", flush=True)
        sim.stop()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
