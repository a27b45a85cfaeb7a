"""``convai-sim`` / ``python -m simulator``: run the Convai simulator standalone until Ctrl-C or SIGTERM.
The main thread waits for a signal; the simulator serves on its own loop thread.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from simulator.core import limits
from simulator.core.accounts import DEFAULT_MAX_CONVERSATIONS
from simulator.core.characters import characters_file_path, shipped_character_names
from simulator.core.ice import TurnUnavailable
from simulator.core.scenario import shipped_scenarios
from simulator.core.sessions import DEFAULT_SEND_TIMEOUT
from simulator.core.toxics import make_toxic
from simulator.http.control import route_table
from simulator.server import DEFAULT_CHARACTERS, Simulator
from simulator.workers import TOKEN_ENV, free_port, start_workers, stop_workers, watch

LOOPBACK_NAMES = ("localhost",)
#: Seconds to wait for the worker watcher thread after the workers stopped.
STOP_JOIN = 2.0
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
DEFAULT_API_KEY = "sim-api-key"
#: Limit values that mean "not set" (these are left out of the banner).
_UNSET_LIMITS: dict[str, object] = {"realtime_allowed": True, "bot_ready_delay": 0.0, "chunk_delay": 0.0}


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _port(text: str) -> int:
    """argparse type: a TCP port number (0 = any free port)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number 0..65535, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0..65535, got {port}")
    return port


def _toxic(text: str) -> tuple[str, dict[str, Any]]:
    """argparse type: ``KIND[:NAME=VALUE,...]`` (values read as JSON where they parse, else as text),
    checked as ``Simulator.toxic`` checks it."""
    kind, _, rest = text.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {item!r}")
        try:
            options[name.strip()] = json.loads(value)
        except ValueError:
            options[name.strip()] = value
    if "session_id" in options:
        raise argparse.ArgumentTypeError("a --toxic acts on every session (no session_id)")
    try:
        make_toxic("check", kind.strip(), **options)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return kind.strip(), options


def _checked(name: str, number: Callable[[str], float], check: Callable[[str, Any], Any]) -> Callable[[str], Any]:
    """argparse type: ``number(text)`` checked by ``check(name, value)`` (the constructor's own rule, so
    the CLI refuses what the constructor would, naming the setting and its range)."""
    def parse(text: str) -> Any:
        try:
            value = number(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a{'n int' if number is int else ' number'}, "
                                             f"got {text!r}") from None
        try:
            return check(name, value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _limit(name: str) -> Callable[[str], Any]:
    """argparse type of the runtime limit ``name`` (:data:`simulator.limits.LIMITS`)."""
    kind = limits.LIMITS[name]
    return _checked(name, int if kind in (limits.Kind.COUNT, limits.Kind.QUOTA) else float,
                    lambda n, v: limits.check_value(n, kind, v))


def _range(name: str) -> str:
    return limits.RANGES[limits.LIMITS[name]]


def _epilog() -> str:
    return (f"Shipped scenarios: {', '.join(shipped_scenarios())}.\n\n"
            "Control API (header X-Sim-Control-Token with the printed token):\n"
            f"{route_table()}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convai-sim",
        description="Run the local Convai simulator (Convai's /connect, /chat and /disconnect, and a LiveKit "
                    "server for /connect's LiveKit rooms, on one port).",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the route table's layout
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; anything else is reachable "
                                            "from the network and prints a warning)")
    add("--port", type=_port, default=0, help="port to bind, 0..65535 (default 0: any free port; the URL is "
                                              "printed)")
    add("--api-key", action="append", dest="api_keys", metavar="KEY",
        help="accepted API key (repeatable; default sim-api-key)")
    add("--character", action="append", dest="characters", metavar="ID",
        help="character id (repeatable; default sim-character)")
    add("--characters", dest="characters_file", metavar="FILE",
        help="JSON characters file ({\"characters\": [...]}: name, backstory, replies, narrative, actions...; "
             "see simulator.core.characters); shipped samples: " + ", ".join(shipped_character_names()))
    add("--concurrency-limit", type=_limit("concurrency_limit"), metavar="N",
        help=f"live sessions per key (429 beyond), {_range('concurrency_limit')}")
    add("--speaker-limit", type=_limit("speaker_limit"), metavar="N",
        help=f"distinct end_user_id values per key, {_range('speaker_limit')}")
    add("--connect-rate-limit", type=_limit("connect_rate_limit"), metavar="N",
        help=f"accepted connects per key per minute, {_range('connect_rate_limit')}")
    add("--usage-quota", type=_limit("usage_quota"), metavar="N",
        help=f"interactions per key (then usage-limit-reached), {_range('usage_quota')}")
    add("--idle-timeout", type=_limit("idle_timeout"), metavar="S",
        help=f"close a session idle this long (1000 'Idle timeout'), {_range('idle_timeout')}")
    add("--idle-warning-lead", type=_limit("idle_warning_lead"), metavar="S",
        help="send user-idle-warning this long before the idle timeout (needs --idle-timeout, at most it), "
             f"{_range('idle_warning_lead')}")
    add("--token-ttl", type=_limit("token_ttl"), metavar="S",
        help=f"session lifetime from /connect ('Session expired'), {_range('token_ttl')}")
    add("--auth-token-ttl", type=float, default=3600.0, metavar="S",
        help="lifetime of an auth token from POST /user/connect (default 3600, as Convai's)")
    add("--reusable-tokens", action="store_true",
        help="let an auth token connect more than once (default: the first /connect consumes it)")
    add("--no-realtime", action="store_true", help="answer every /connect with 403 (plan has no realtime)")
    add("--bot-ready-delay", type=_limit("bot_ready_delay"), default=0.0, metavar="S",
        help=f"delay before bot-ready, {_range('bot_ready_delay')} (default 0)")
    add("--chunk-delay", type=_limit("chunk_delay"), default=0.0, metavar="S",
        help=f"delay between reply chunks, {_range('chunk_delay')} (default 0)")
    add("--scenario", metavar="FILE_OR_NAME", help="scenario JSON file, or a shipped scenario's name")
    add("--scenario-dir", metavar="DIR", help="directory POST /_sim/scenario may load scenario files from "
                                              "(default: none; the control API then reads no files)")
    add("--send-timeout", type=_checked("send_timeout", float, limits.check_seconds), default=DEFAULT_SEND_TIMEOUT,
        metavar="S", help="drop a session whose client does not read a frame for this long, "
                          f"{limits.RANGES[limits.Kind.SECONDS]} (default {DEFAULT_SEND_TIMEOUT:g})")
    add("--max-conversations", type=_checked("max_conversations", int, limits.check_positive_int),
        default=DEFAULT_MAX_CONVERSATIONS, metavar="N",
        help=f"character_session_id histories remembered, 1..{limits.MAX_COUNT} "
             f"(default {DEFAULT_MAX_CONVERSATIONS:,})")
    add("--control-token", metavar="TOKEN", help="token for the /_sim/* control API (default: random)")
    add("--transport-default", choices=("livekit", "websocket"), default="livekit",
        help="transport of a /connect that names none (default livekit, as the real service)")
    add("--websocket-audio", action="store_true",
        help="voice replies on the /chat WebSocket too (binary Pipecat Frame.audio; PROPOSED)")
    add("--turn", metavar="URL",
        help="TURN server the LiveKit side advertises (relay-only clients such as Convai's Web SDK need one): "
             "turn://USER:PASSWORD@HOST:PORT[?transport=udp|tcp], or 'auto' to run coturn's turnserver on "
             "127.0.0.1 with random credentials while the simulator runs (Debian package coturn)")
    add("--cors-origin", action="append", dest="cors_origins", metavar="ORIGIN", default=[],
        help="browser origin allowed besides loopback ones (http://localhost:*, http://127.0.0.1:*, "
             "http://[::1]:*); repeatable; '*' allows any web page (warned)")
    add("--message-form", choices=("top-level", "server-message"), default="top-level",
        help="form of user-transcription, bot-started/stopped-speaking, action-response and the other types "
             "Convai's Web SDK reads only at the top level (default top-level; PROPOSED)")
    add("--replay", metavar="RECORDING", help="serve a convai_sync recording (ConvaiConfig(record_to=...)) back: "
                                              "matching inputs get the recorded replies and timing")
    add("--replay-speed", type=float, default=1.0, metavar="X",
        help="replay X times faster than recorded (default 1)")
    add("--toxic", action="append", dest="toxics", type=_toxic, metavar="KIND[:NAME=VALUE,...]",
        help="a network fault on every session from the start (repeatable), e.g. latency:latency=0.2,jitter=0.05 "
             "or reset_peer:probability=0.1,seed=7 (kinds and parameters: GET /_sim/toxics, simulator.core.toxics)")
    add("--workers", type=int, default=1, metavar="N",
        help="run N worker processes on one port (needs --state; default 1: this process serves)")
    add("--state", metavar="URL", help="share the plan state (slots, rate windows, speakers, usage, auth tokens, "
                                       "memories) in Redis at redis://HOST:PORT/DB with every simulator given the "
                                       "same URL")
    add("--slot-lease", type=float, default=15.0, metavar="S",
        help="with --state: a dead worker's slots are freed within S seconds (default 15)")
    add("--advertise-host", metavar="HOST", help="the host room URLs name (default --host; the address other "
                                                 "machines reach this one at)")
    add("--reuse-port", action="store_true", help="bind --port with SO_REUSEPORT beside a port of this process's "
                                                  "own, named in room URLs (what each --workers worker does)")
    add("--log-level", default="INFO", type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), help="logging level (default INFO)")
    return parser


def _simulator(args: argparse.Namespace) -> Simulator:
    return Simulator(
        args.host,
        args.port,
        api_keys=tuple(args.api_keys or ("sim-api-key",)),
        characters=tuple(args.characters) if args.characters else DEFAULT_CHARACTERS,
        characters_file=_characters_file(args.characters_file),
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
        control_token=args.control_token or os.environ.get(TOKEN_ENV),
        transport_default=args.transport_default,
        send_timeout=args.send_timeout,
        max_conversations=args.max_conversations,
        scenario_dir=args.scenario_dir,
        websocket_audio=args.websocket_audio,
        turn=args.turn,
        cors_origins=tuple(args.cors_origins),
        message_form=args.message_form,
        auth_token_ttl=args.auth_token_ttl,
        single_use_tokens=not args.reusable_tokens,
        replay=args.replay,
        replay_speed=args.replay_speed,
        state=args.state,
        slot_lease=args.slot_lease,
        reuse_port=args.reuse_port,
        advertise_host=args.advertise_host,
    )


def _characters_file(name: str | None) -> str | None:
    """A ``--characters`` value: a path, or the name of a shipped sample (``shopkeeper``)."""
    return None if name is None else characters_file_path(name)


def _limits_line(sim: Simulator) -> str | None:
    """``Limits: concurrency_limit=2, idle_timeout=30 s`` for the limits that are set (None: none)."""
    shown = []
    for name, value in sim.limits.items():
        if value is None or _UNSET_LIMITS.get(name, object()) == value:
            continue
        unit = " s" if limits.LIMITS[name] in (limits.Kind.SECONDS, limits.Kind.DELAY) else ""
        shown.append(f"{name}={value:g}{unit}" if unit else f"{name}={value}")
    return f"Limits: {', '.join(shown)}" if shown else None


def _banner(sim: Simulator) -> str:
    scenario = sim.scenario
    # A wildcard bind listens on every interface; clients on this machine reach it on loopback.
    url = f"http://127.0.0.1:{sim.port}" if sim.host in WILDCARD_HOSTS else sim.url
    livekit_url = f"ws://127.0.0.1:{sim.port}" if sim.host in WILDCARD_HOSTS else sim.livekit_url
    lines = [
        f"Convai simulator listening on {sim.url}",
        *([f"Worker URL: {sim.worker_url}"] if sim.worker_url != sim.url else []),
        f"Control token: {sim.control_token}  (header X-Sim-Control-Token for {url}/_sim/*)",
        f"LiveKit URL: {livekit_url}" + ("" if sim.livekit_available else "  (unavailable: install the "
                                         "'simulator-livekit' extra)"),
    ]
    lines.append("Characters: " + ", ".join(f"{d.id} ({d.display_name})" if d.name else d.id
                                            for d in sim.characters))
    if scenario is not None:
        lines.append(f"Scenario: {scenario.name}: {scenario.description}".rstrip(": "))
    toxics = sim.toxics()
    if toxics:
        lines.append("Toxics: " + "; ".join(f"{t['kind']} (seed {t['seed']})" for t in toxics))
    lines.append(f"Dashboard: {url}/_sim/ui#token=<the control token>")
    active = _limits_line(sim)
    if active is not None:
        lines.append(active)
    # A key given on the command line is the user's own: never echo it (it would land in logs).
    key = sim.api_key if sim.api_key == DEFAULT_API_KEY else "<your first --api-key>"
    lines += [
        "Connect with:",
        "    from convai_sync import ConvaiConfig",
        f'    config = ConvaiConfig(api_key="{key}", character_id="{sim.character_id}", url="{url}")',
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def _worker_args(argv: list[str]) -> list[str]:
    """``argv`` without the options the supervisor sets for its workers itself."""
    dropped = {"--workers", "--port", "--control-token"}
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in dropped:
            skip = True
        elif arg.split("=", 1)[0] not in dropped and arg != "--reuse-port":
            out.append(arg)
    return out


def _supervise(args: argparse.Namespace, argv: list[str], stop: threading.Event) -> int:
    """Run ``args.workers`` workers until ``stop`` is set (the banner names the shared port and each worker)."""
    port = args.port or free_port(args.host)
    token = args.control_token or secrets.token_urlsafe(24)
    try:
        workers = start_workers(args.workers, port, _worker_args(argv), token)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    shown = "127.0.0.1" if args.host in WILDCARD_HOSTS else args.host
    url = f"http://{shown}:{port}"
    lines = [f"Convai simulator listening on http://{args.host}:{port} ({args.workers} workers; plan state in Redis)",
             f"Control token: {token}  (header X-Sim-Control-Token for {url}/_sim/*)"]
    lines += [f"Worker {worker.pid}: {worker.own_url}" for worker in workers]
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)
    watcher = threading.Thread(target=watch, args=(workers, stop), name="sim-workers-watch", daemon=True)
    watcher.start()
    try:
        stop.wait()
    except KeyboardInterrupt:  # only when signals could not be installed (not the main thread)
        pass
    stop.set()
    print("stopping", flush=True)
    stop_workers(workers)
    watcher.join(STOP_JOIN)
    print("stopped", flush=True)
    return 0


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
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1 and args.state is None:
        parser.error("--workers needs --state redis://HOST:PORT/DB (the workers share the plan state there)")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    on_main = threading.current_thread() is threading.main_thread()
    if on_main:
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, on_signal)
    try:
        if args.workers > 1:
            return _supervise(args, list(sys.argv[1:] if argv is None else argv), stop)
        try:
            sim.start()
        except OSError as exc:
            # asyncio wraps the bind error's text; the errno's own message is the clear part.
            detail = os.strerror(exc.errno) if exc.errno else str(exc)
            print(f"error: cannot bind {args.host}:{args.port}: {detail}", file=sys.stderr, flush=True)
            return 1
        except TurnUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 1
        for kind, options in args.toxics or ():
            sim.toxic(kind, **options)
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
