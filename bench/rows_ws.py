"""WebSocket rows: send->ack round trip, inbound throughput, connect; each beside a raw baseline.

The baseline is what a competent application would write with the same libraries and no SDK:
``requests`` for ``/connect`` and websocket-client's ``WebSocket`` (``skip_utf8_validation=True``,
as the SDK reads text: C-speed ``bytes.decode`` instead of the library's pure-Python check) with
``recv()`` + ``json.loads``. Both sides run against the same simulator, in alternating rounds so
that load from other processes falls on both alike.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import requests
import websocket

from bench.common import Row, SimHandle, client_config, no_gc, percentile, perf, start_sim, write_scenario
from convai_sync import BotText, BotTurnCompleted, ConvaiClient, EventDeliveryPolicy

GROUP = "WebSocket"
WAIT = 30.0
BURST_MARK = "burst"


# --------------------------------------------------------------------------- raw client


class RawSession:
    """``POST /connect`` + the ``/chat`` WebSocket + ``bot-ready``, with nothing else in the way."""

    def __init__(self, sim: SimHandle, http: requests.Session | None = None) -> None:
        poster = http or requests
        answer = poster.post(f"{sim.url}/connect", json={"character_id": sim.character_id, "transport": "websocket",
                                                         "connection_type": "audio"},
                             headers={"X-API-Key": sim.api_key}, timeout=WAIT)
        answer.raise_for_status()
        info = answer.json()
        self.session_id: str = info["session_id"]
        self._url = sim.url
        self.ws = websocket.create_connection(info["room_url"], timeout=WAIT, skip_utf8_validation=True,
                                              suppress_origin=True)
        self.read_until("bot-ready")

    def recv(self) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(self.ws.recv())
        return frame

    def read_until(self, wanted: str) -> dict[str, Any]:
        while True:
            frame = self.recv()
            if etype(frame) == wanted:
                return frame

    def send(self, msg_type: str, data: dict[str, Any]) -> None:
        mid = uuid.uuid4().hex
        self.ws.send(json.dumps({"label": "rtvi-ai", "type": msg_type, "id": mid, "data": data},
                                separators=(",", ":"), ensure_ascii=False))

    def send_text(self, text: str) -> None:
        mid = uuid.uuid4().hex
        self.ws.send(json.dumps({"label": "rtvi-ai", "type": "user_text_message", "id": mid,
                                 "data": {"text": text, "message_id": mid}}, separators=(",", ":"),
                                ensure_ascii=False))

    def close(self) -> None:
        self.ws.close(timeout=1.0)
        requests.post(f"{self._url}/disconnect", params={"session_id": self.session_id}, timeout=WAIT)


def etype(frame: dict[str, Any]) -> str:
    """Convai's demux rule: ``data.type`` of a ``server-message``, else ``type``."""
    data = frame.get("data")
    if frame.get("type") == "server-message" and isinstance(data, dict) and data.get("type"):
        return str(data["type"])
    return str(frame.get("type"))


# --------------------------------------------------------------------------- 1. send -> ack


class _TurnGate:
    """Set when the character's turn ends (an IMMEDIATE handler: no thread hop)."""

    def __init__(self, client: ConvaiClient) -> None:
        self.done = threading.Event()
        client.events.raw.subscribe(BotTurnCompleted, lambda _e: self.done.set(), EventDeliveryPolicy.IMMEDIATE)


def send_ack_rows(sim: SimHandle, quick: bool) -> list[Row]:
    """One SDK client and one raw session, both connected; samples alternate between them, so load
    from elsewhere falls on both alike. Each sample waits (untimed) for the reply turn to end."""
    count = 400 if quick else 3000
    sdk: list[float] = []
    raw_times: list[float] = []
    raw = RawSession(sim)
    try:
        with ConvaiClient(client_config(sim)) as client:
            client.connect(timeout=WAIT)
            gate = _TurnGate(client)
            with no_gc():
                for index in range(count + 20):
                    gate.done.clear()
                    start = perf()
                    client.send_text("ping", wait=True, timeout=WAIT)
                    elapsed = perf() - start
                    if not gate.done.wait(WAIT):
                        raise TimeoutError("no bot-turn-completed")
                    start = perf()
                    raw.send_text("ping")
                    raw.read_until("server-response")
                    raw_elapsed = perf() - start
                    raw.read_until("bot-turn-completed")
                    if index >= 20:  # the first few warm caches and connections
                        sdk.append(elapsed)
                        raw_times.append(raw_elapsed)
    finally:
        raw.close()
    n = f"{len(sdk)} sends each, alternating"
    return [
        Row(GROUP, "send->ack p50 (send_text wait=True)", "s", percentile(sdk, 0.5), percentile(raw_times, 0.5),
            "ratio<=", 1.5, n, {"samples": len(sdk)}),
        Row(GROUP, "send->ack p99", "s", percentile(sdk, 0.99), percentile(raw_times, 0.99), "ratio<=", 2.0, n),
    ]


# --------------------------------------------------------------------------- 2. inbound throughput


def burst_scenario(frames: int) -> list[dict[str, Any]]:
    """``frames`` ``bot-llm-text`` frames after the session's first ``update-dynamic-info`` (and its ack)."""
    frame = {"label": "rtvi-ai", "type": "bot-llm-text", "data": {"text": BURST_MARK}}
    steps: list[dict[str, Any]] = [{"after_messages": 1, "type": "update-dynamic-info", "send": frame}]
    steps += [{"send": frame}] * (frames - 1)
    return steps


def _sdk_burst(sim: SimHandle, frames: int) -> float:
    with ConvaiClient(client_config(sim, event_queue_size=frames + 100)) as client:
        client.connect(timeout=WAIT)
        seen = [0]
        done = threading.Event()

        def handler(event: BotText) -> None:
            if event.text == BURST_MARK:
                seen[0] += 1
                if seen[0] == frames:
                    done.set()
        client.events.on_bot_text.subscribe(handler, EventDeliveryPolicy.BACKGROUND)
        start = perf()
        client.update_dynamic_info("go")
        if not done.wait(WAIT * 4):
            raise TimeoutError(f"BACKGROUND handler saw {seen[0]} of {frames} frames")
        elapsed = perf() - start
        dropped = client.diagnostics()["frames_dropped"]
        if dropped:
            raise RuntimeError(f"{dropped} frames dropped")
    return frames / elapsed


def _raw_burst(sim: SimHandle, frames: int) -> float:
    raw = RawSession(sim)
    try:
        seen = 0
        start = perf()
        raw.send("update-dynamic-info", {"text": "go"})
        while seen < frames:
            frame = raw.recv()
            if frame.get("type") == "bot-llm-text" and frame["data"].get("text") == BURST_MARK:
                seen += 1
        elapsed = perf() - start
    finally:
        raw.close()
    return frames / elapsed


def throughput_rows(inproc: bool, quick: bool) -> list[Row]:
    frames, rounds = (5_000, 4) if quick else (10_000, 8)  # the simulator reads scenario files up to 1 MiB
    sim = start_sim(inproc, write_scenario(burst_scenario(frames), "burst"))
    try:
        sdk: list[float] = []
        raw: list[float] = []
        for _ in range(rounds):
            sdk.append(_sdk_burst(sim, frames))
            raw.append(_raw_burst(sim, frames))
    finally:
        sim.stop()
    return [Row(GROUP, "inbound bot-llm-text -> BACKGROUND handler", "/s", max(sdk), max(raw), "ratio>=", 0.8,
                f"best of {len(sdk)} bursts of {frames:,} frames; raw = recv()+json.loads")]


# --------------------------------------------------------------------------- 3. connect


def connect_rows(sim: SimHandle, quick: bool) -> list[Row]:
    """Alternating samples: a new ``ConvaiClient`` (built untimed) ``connect()``, then the raw sequence
    on a fresh ``requests.Session`` (a new ConvaiClient also opens a new HTTP connection)."""
    count = 40 if quick else 300
    sdk: list[float] = []
    raw: list[float] = []
    for _ in range(count):
        client = ConvaiClient(client_config(sim))
        try:
            start = perf()
            client.connect(timeout=WAIT)
            sdk.append(perf() - start)
        finally:
            client.close()
        start = perf()
        with requests.Session() as http:
            session = RawSession(sim, http)
        raw.append(perf() - start)
        session.close()
    return [Row(GROUP, "connect (POST /connect + open + bot-ready) p50", "s", percentile(sdk, 0.5),
                percentile(raw, 0.5), "ratio<=", 1.3, f"{len(sdk)} connects each, alternating; p99 "
                f"{percentile(sdk, 0.99) * 1e3:.1f} ms vs {percentile(raw, 0.99) * 1e3:.1f} ms")]
