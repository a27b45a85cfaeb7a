"""One LiveKit load-generator process for the capacity row: ``count`` raw ``rtc.Room`` clients of one simulator.

Run by ``bench/rows_capacity.py`` (several at once, so that the generator's Python is not one GIL-bound
process), never by hand. It speaks JSON lines: it prints ``{"ready": n}`` once its rooms have joined and
heard ``bot-ready``, waits for a ``go`` line on stdin, makes every room ask for a spoken reply at once, and
prints ``{"figures": [...], "failures": [...], "cpu": seconds}``; then it leaves and releases its sessions.
Every figure is measured on this process's clock from the moment its room sent the message (see
``bench/rows_capacity.py`` for what each one means).

Why it turns the ``livekit`` wheel's log capture off: the wheel hands every libwebrtc log line (debug level
included) to a Python callback on a native thread, which parses it and throws it away unless
``LIVEKIT_RTC_DEBUG`` is set. While candidate pairs that cannot work on loopback are being checked, that is
tens of thousands of lines a second at a few dozen rooms, measured here as 0.7 of a core: the load
generator, not the simulator, became the limit the row reported. The switch is the second argument of the
FFI's ``livekit_ffi_initialize`` (``capture_logs``); only this process, which holds no SDK, changes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script by rows_capacity

from bench.common import process_cpu_seconds
from bench.rows_livekit import RawRoom

logger = logging.getLogger("bench.lk_loadgen")
WAIT = 30.0


def quiet_native_logs() -> bool:
    """Start the ``livekit`` FFI with log capture off; False (and a note on stderr) when its private
    initialisation no longer looks as expected, in which case it starts as usual."""
    from livekit.rtc import _ffi_client as ffi

    original = getattr(ffi, "get_ffi_lib", None)
    if original is None or getattr(ffi.FfiClient, "_instance", None) is not None:
        print("lk_loadgen: cannot turn the livekit log capture off; running with it", file=sys.stderr)
        return False

    def library() -> Any:
        lib = original()
        initialize = lib.livekit_ffi_initialize

        class Uncaptured:
            """``livekit_ffi_initialize(callback, capture_logs, sdk, version)`` with ``capture_logs`` False."""

            argtypes: Any = None

            def __call__(self, callback: Any, _capture: bool, *rest: Any) -> Any:
                initialize.argtypes = self.argtypes
                return initialize(callback, False, *rest)

        lib.livekit_ffi_initialize = Uncaptured()
        return lib

    ffi.get_ffi_lib = library
    return True


async def _ask(room: RawRoom) -> dict[str, float]:
    mark, loud_mark = len(room.messages), len(room.loud)
    sent = time.monotonic()
    await room.send("user_text_message", {"text": "hello"})
    acked = await room.wait(lambda: room.index_of("server-response", mark), WAIT)
    spoke = await room.wait(lambda: room.index_of("bot-started-speaking", mark), WAIT)
    first = await room.wait(lambda: next(iter(room.loud[loud_mark:]), None), WAIT)
    ended = await room.wait(lambda: room.index_of("bot-turn-completed", mark), WAIT)
    loud = room.loud[loud_mark:]
    frame = room.frame_ms / 1000
    return {"ack": room.messages[acked][0] - sent, "speaking": room.messages[spoke][0] - sent,
            "audio": first - sent, "stall": loud[-1] + frame - first - frame * len(loud),
            "done": room.messages[ended][0] - loud[-1]}


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def run(infos: list[dict[str, Any]], frame_ms: int, client: str) -> None:
    if client == "wire":
        from bench import lk_wire

        rooms: list[Any] = [lk_wire.WireRoom() for _ in infos]
        asker: Any = lk_wire.ask
    else:
        rooms = [RawRoom.new(frame_ms) for _ in infos]
        asker = _ask
    try:
        await asyncio.wait_for(asyncio.gather(*(r.connect(i["room_url"], i["token"])
                                                for r, i in zip(rooms, infos, strict=True))), WAIT)
        await asyncio.gather(*(r.wait(lambda r=r: r.index_of("bot-ready", 0) is not None, WAIT) for r in rooms))
        _emit({"ready": len(rooms)})
        line = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline), 600)
        if line.strip() != "go":
            return
        cpu = process_cpu_seconds()
        results = await asyncio.gather(*(asker(room) for room in rooms), return_exceptions=True)
        _emit({"figures": [r for r in results if not isinstance(r, BaseException)],
               "failures": [repr(r) for r in results if isinstance(r, BaseException)],
               "cpu": process_cpu_seconds() - cpu})
    finally:
        await asyncio.gather(*(r.close() for r in rooms), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frame-ms", type=int, default=100)
    parser.add_argument("--keep-logs", action="store_true", help="leave the livekit log capture on")
    parser.add_argument("--client", choices=("wire", "livekit"), default="wire",
                        help="wire: bench/lk_wire.py's participant (no media work); livekit: the real rtc.Room")
    args = parser.parse_args()
    infos = json.loads(sys.stdin.readline())  # the /connect answers, made by the parent
    if args.client == "livekit" and not args.keep_logs:
        quiet_native_logs()
    asyncio.run(run(infos, args.frame_ms, args.client))


if __name__ == "__main__":
    main()
