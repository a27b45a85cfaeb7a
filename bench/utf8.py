"""UTF-8 validation of inbound text frames: what the reader thread pays per megabyte.

websocket-client validates text frames in pure Python (``websocket._utf8validator``) unless the
optional C accelerator ``wsaccel`` is installed; convai_sync skips that check and decodes each
message with ``bytes.decode("utf-8")`` (CPython's C decoder), refusing invalid text for that
message only. This prints the cost of each on the same payloads, side by side.

    python bench/utf8.py            # wsaccel is measured too when it is installed
"""

from __future__ import annotations

import time
from collections.abc import Callable

from websocket._utils import validate_utf8  # websocket-client's own check (wsaccel when installed)

SIZES = (64 * 1024, 1024 * 1024, 16 * 1024 * 1024)


def _payload(size: int) -> bytes:
    unit = '{"type":"bot-llm-text","data":{"text":"Grüße, 世界! "}}'.encode()
    return (unit * (size // len(unit) + 1))[:size].rsplit(b"}", 1)[0] + b"}"


def _time(fn: Callable[[bytes], object], data: bytes, budget: float = 0.5) -> float:
    runs, start = 0, time.perf_counter()
    while True:
        fn(data)
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget or runs >= 50:
            return elapsed / runs


def main() -> None:
    candidates: list[tuple[str, Callable[[bytes], object]]] = [
        ("bytes.decode (convai_sync)", lambda b: b.decode("utf-8")),
    ]
    try:
        from wsaccel.utf8validator import Utf8Validator  # type: ignore[import-not-found]

        candidates.append(("wsaccel Utf8Validator", lambda b: Utf8Validator().validate(b)))
        print("(wsaccel is installed, so websocket-client's validate_utf8 uses it)")
    except ImportError:
        print("(wsaccel not installed: websocket-client's validate_utf8 is pure Python)")
    candidates.append(("websocket-client validate_utf8", validate_utf8))
    print(f"{'validator':32s}" + "".join(f"{s // 1024:>10d} KiB" for s in SIZES) + "   (ms per message)")
    for name, fn in candidates:
        cells = []
        for size in SIZES:
            data = _payload(size)
            budget = 0.01 if fn is validate_utf8 and size > 1024 * 1024 else 0.5
            cells.append(f"{_time(fn, data, budget) * 1000:14.3f}")
        print(f"{name:32s}" + "".join(cells))


if __name__ == "__main__":
    main()
