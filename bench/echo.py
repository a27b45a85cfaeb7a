"""Echo cancellation, measured: how much of the character's own voice the microphone path removes,
and how often the character interrupts itself with processing off and on.

Each trial is a real conversation with the simulator on 127.0.0.1 (tests/support/echo_room.py):
the character answers "Tell me a story." with 2.1 s of a speech-like synthetic voice, a
``Speaker`` plays it into a simulated room (direct path 30 ms at -10.5 dB, two reflections, a
-64 dBFS noise floor) that a ``Microphone`` captures in real time and streams back with
``client.send_audio``; the simulator's voice activity detection decides what it hears, and a reply
it hears itself in is interrupted (barge-in). Every trial listens for ``--listen`` seconds after the
question; the user stays silent, so every interruption is a self-interruption.

Echo reduction (ERLE, echo return loss enhancement) compares, on the echo-only blocks of the
processing-on trials (20 ms blocks whose echo is above -40 dBFS RMS; the user is silent throughout),
the energy the microphone captured with the energy that left the processor, in dB. It includes
the noise floor in both, and the processor's noise suppression and gain control (held off while
the speaker plays) as they run by default: it is what the service receives, not AEC3's linear
filter alone.

    python bench/echo.py                        # both transports, 3 trials each way
    python bench/echo.py --transport websocket --trials 5 --json echo.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convai_sync.loopback import LoopbackShimError, ensure_loopback_preload
from tests.support import echo_room

MIN_ERLE_DB = 15.0


def measure(transports: list[str], trials: int, listen: float) -> dict[str, Any]:
    """Run ``trials`` conversations per transport with processing off and on; the figures, overall
    (the worst trial's ERLE, the self-interruptions summed) and per transport."""
    per: dict[str, dict[str, Any]] = {}
    for transport in transports:
        off = on = 0
        erles: list[float] = []
        with echo_room.simulator() as sim:
            for processing in (False, True):
                for _ in range(trials):
                    trial = echo_room.converse(sim, transport, processing, listen=listen, user_speaks=False)
                    if processing:
                        on += trial.self_interruptions
                        assert trial.room is not None
                        rec = trial.room.recording
                        n = min(len(rec.captured), len(trial.processed))
                        erles.append(echo_room.erle_db(rec.captured[:n], trial.processed[:n], rec.echo[:n],
                                                       rec.user[:n]))
                    else:
                        off += trial.self_interruptions
                    print(f"  {transport:9} processing {'on ' if processing else 'off'}: "
                          f"{trial.self_interruptions} self-interruption(s), heard itself "
                          f"{trial.echo_started} time(s)" + (f", ERLE {erles[-1]:.1f} dB" if processing else ""),
                          flush=True)
        per[transport] = {"echo_reduction_db": round(min(erles), 1),
                          "echo_reduction_db_mean": round(sum(erles) / len(erles), 1),
                          "self_interruptions_off": off, "self_interruptions_on": on, "trials": trials}
    return {"echo_reduction_db": min(p["echo_reduction_db"] for p in per.values()),
            "self_interruptions_off": sum(p["self_interruptions_off"] for p in per.values()),
            "self_interruptions_on": sum(p["self_interruptions_on"] for p in per.values()),
            "trials": trials * len(transports), "listen_seconds": listen, "per_transport": per}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=("websocket", "livekit", "both"), default="both")
    parser.add_argument("--trials", type=int, default=3, help="conversations per transport and setting")
    parser.add_argument("--listen", type=float, default=6.0, help="seconds each conversation runs (default 6)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    transports = ["websocket", "livekit"] if args.transport == "both" else [args.transport]
    if "livekit" in transports:
        logging.getLogger("livekit").setLevel(logging.CRITICAL)  # its FFI logs a closing room's state
        try:
            ensure_loopback_preload()  # the real LiveKit client, kept on 127.0.0.1
        except LoopbackShimError as exc:
            print(f"cannot load the loopback shim (the LiveKit trials need it): {exc}", file=sys.stderr)
            return 2
    print(f"echo bench: {args.trials} trial(s) per transport and setting, {args.listen:g} s each")
    figures = measure(transports, args.trials, args.listen)
    for transport, per in figures["per_transport"].items():
        print(f"{transport}: ERLE {per['echo_reduction_db']:.1f} dB worst, "
              f"{per['echo_reduction_db_mean']:.1f} dB mean; self-interruptions "
              f"{per['self_interruptions_off']} off, {per['self_interruptions_on']} on")
    print(f"echo reduction (ERLE, echo-only blocks, worst trial): {figures['echo_reduction_db']:.1f} dB")
    print(f"self-interruptions in {figures['trials']} conversation(s) each way: "
          f"{figures['self_interruptions_off']} with processing off, {figures['self_interruptions_on']} on")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    if figures["echo_reduction_db"] < MIN_ERLE_DB or figures["self_interruptions_on"]:
        print(f"FAIL: want at least {MIN_ERLE_DB:g} dB and no self-interruption with processing on", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
