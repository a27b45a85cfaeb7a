"""LiveKit rows: connect, data round trip and first audio after ``bot-started-speaking``.

The baseline is the real ``livekit.rtc.Room`` driven directly (``POST /connect`` with requests,
``room.connect(room_url, token)``, ``publish_data``/``data_received``, an ``rtc.AudioStream`` on the
character's track) against the same simulator. The SDK rows use
``ConvaiClient(config(transport="livekit"))`` and ``client.events.on_audio``; until the SDK's LiveKit
transport exists they print ``n/a (transport not available)`` and the raw figures stand alone.

Needs the loopback shim (``convai_sync/loopback.py``): ``bench/run.py`` re-executes itself under it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy
import requests

from bench.common import Row, SimHandle, client_config, na, percentile

GROUP = "LiveKit"
WAIT = 20.0
LOUD = 1000  # PCM16 peak above which a frame is the character's voice, not jitter-buffer silence
QUIET = 0.3


def livekit_info(sim: SimHandle) -> dict[str, Any]:
    answer = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id, "transport": "livekit"},
                           headers={"X-API-Key": sim.api_key}, timeout=WAIT)
    answer.raise_for_status()
    info: dict[str, Any] = answer.json()
    return info


def release(sim: SimHandle, session_id: str) -> None:
    requests.post(f"{sim.url}/disconnect", params={"session_id": session_id}, timeout=WAIT)


# --------------------------------------------------------------------------- raw client


class Inbox:
    """A participant's received data messages, ``(time.monotonic(), type)`` each, and waiting on them."""

    messages: list[tuple[float, str]]
    changed: asyncio.Event
    #: Seconds between re-checks when something ``changed`` does not signal can satisfy a wait (None: never).
    poll: float | None = None

    def index_of(self, wanted: str, after: int) -> int | None:
        return next((i for i in range(after, len(self.messages)) if self.messages[i][1] == wanted), None)

    async def wait(self, check: Any, timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while not (found := check()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met; messages: {[m for _, m in self.messages][-10:]}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(remaining, self.poll or remaining))
            except asyncio.TimeoutError:
                pass
        return found


@dataclass
class RawRoom(Inbox):
    """A raw ``rtc.Room`` that timestamps every data message and every loud audio frame."""

    room: Any
    messages: list[tuple[float, str]] = field(default_factory=list)
    loud: list[float] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    #: Duration of the AudioStream's frames: 10 ms times a first sound finely; the capacity row reads 100 ms
    #: frames so that its hundreds of streams cost the load generator a tenth of the wake-ups.
    frame_ms: int = 10

    @classmethod
    def new(cls, frame_ms: int = 10) -> RawRoom:
        from livekit import rtc

        raw = cls(rtc.Room(), frame_ms=frame_ms)
        raw.room.on("data_received", raw._data)
        raw.room.on("track_subscribed", raw._track)
        return raw

    def _data(self, packet: Any) -> None:
        frame = json.loads(packet.data)
        data = frame.get("data")
        kind = data.get("type") if frame.get("type") == "server-message" and isinstance(data, dict) else None
        self.messages.append((time.monotonic(), str(kind or frame.get("type"))))
        self.changed.set()

    def _track(self, track: Any, publication: Any, participant: Any) -> None:
        self.readers.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: Any) -> None:
        from livekit import rtc

        stream = rtc.AudioStream(track, sample_rate=48_000, num_channels=1, frame_size_ms=self.frame_ms)
        try:
            async for event in stream:
                # numpy (a livekit dependency): a Python loop over every sample would be the load generator's
                # biggest cost in the capacity row.
                data = numpy.frombuffer(event.frame.data, dtype=numpy.int16)
                if data.size and int(numpy.abs(data.astype(numpy.int32)).max()) >= LOUD:
                    self.loud.append(time.monotonic())
                    self.changed.set()
        finally:
            await stream.aclose()

    async def connect(self, url: str, token: str) -> None:
        await self.room.connect(url, token)

    async def send(self, msg_type: str, data: dict[str, Any]) -> None:
        payload = json.dumps({"label": "rtvi-ai", "type": msg_type, "data": data}).encode()
        await self.room.local_participant.publish_data(payload, reliable=True)

    async def close(self) -> None:
        if self.room.isconnected():
            await asyncio.wait_for(self.room.disconnect(), WAIT)
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


async def _raw_join(sim: SimHandle, audio: bool = True) -> tuple[RawRoom, str, float]:
    from livekit import rtc

    raw = RawRoom.new()
    start = time.perf_counter()
    info = await asyncio.get_running_loop().run_in_executor(None, livekit_info, sim)
    options = rtc.RoomOptions(auto_subscribe=audio)
    await asyncio.wait_for(raw.room.connect(info["room_url"], info["token"], options), WAIT)
    await raw.wait(lambda: raw.index_of("bot-ready", 0) is not None)
    return raw, info["session_id"], time.perf_counter() - start


async def _raw_connect_once(sim: SimHandle) -> float:
    raw, session_id, took = await _raw_join(sim)
    await raw.close()
    release(sim, session_id)
    return took


async def _raw_trip(raw: RawRoom) -> float:
    mark = len(raw.messages)
    start = time.perf_counter()
    await raw.send("reset-idle-timer", {})
    await raw.wait(lambda: raw.index_of("server-response", mark) is not None)
    return time.perf_counter() - start


async def _raw_turn(raw: RawRoom) -> float:
    mark, loud_mark = len(raw.messages), len(raw.loud)
    await raw.send("user_text_message", {"text": "hello"})
    at = await raw.wait(lambda: raw.index_of("bot-started-speaking", mark))
    first = await raw.wait(lambda: next(iter(raw.loud[loud_mark:]), None))
    await raw.wait(lambda: raw.index_of("bot-turn-completed", mark) is not None)
    await _quiet(lambda: raw.loud)
    return float(first - raw.messages[at][0])


async def _raw_close(raw: RawRoom, sim: SimHandle, session_id: str) -> None:
    await raw.close()
    release(sim, session_id)


class _RawLoop:
    """The raw client's own asyncio loop on a thread (``bench-raw-loop``), so raw and SDK samples can
    alternate; each raw figure is timed inside its coroutine, on that loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-raw-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT * 3)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


async def _quiet(loud: Any) -> None:
    """Until no loud frame has arrived for :data:`QUIET` s (the voice's tail trails the turn's last
    message by the jitter buffer's delay), so it is not taken for the next turn's first audio."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        frames = loud()
        if not frames or time.monotonic() - frames[-1] >= QUIET:
            return
        await asyncio.sleep(0.02)  # bench pacing, bounded


def _quiet_sync(loud: list[float]) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and loud and time.monotonic() - loud[-1] < QUIET:
        time.sleep(0.02)  # bench pacing, bounded


# --------------------------------------------------------------------------- SDK client


def sdk_unavailable(sim: SimHandle) -> str | None:
    """None when ``ConvaiClient`` can connect over LiveKit; else why not (one short attempt)."""
    from convai_sync import ConvaiClient, ConvaiError, ErrorCode

    client = ConvaiClient(client_config(sim, transport="livekit", connection_timeout=WAIT))
    try:
        client.connect(timeout=WAIT)
    except ConvaiError as exc:
        if exc.error_code is ErrorCode.TRANSPORT_LIVEKIT_ERROR:
            return "transport not available"
        return f"connect failed: {exc.error_code.value}"
    finally:
        client.close()
    return None


def _figures(sim: SimHandle, joins: int, trips: int, turns: int, sdk: bool) -> dict[str, dict[str, list[float]]]:
    """Alternating samples of the SDK (when ``sdk``) and the raw client: connects, round trips, turns."""
    from convai_sync import AudioFrame, BotStartedSpeaking, BotTurnCompleted, ConvaiClient, EventDeliveryPolicy

    out: dict[str, dict[str, list[float]]] = {side: {"connect": [], "rtt": [], "audio": []} for side in ("sdk", "raw")}
    config = client_config(sim, transport="livekit")
    raw_loop = _RawLoop()
    try:
        for _ in range(joins):
            if sdk:
                client = ConvaiClient(config)
                try:
                    start = time.perf_counter()
                    client.connect(timeout=WAIT)
                    out["sdk"]["connect"].append(time.perf_counter() - start)
                finally:
                    client.close()
            out["raw"]["connect"].append(raw_loop.run(_raw_connect_once(sim)))
        # Round trips with no audio subscribed on either side: the other room's 50 frames/s of decoded
        # silence would otherwise land on whichever side is being timed.
        raw, session_id, _ = raw_loop.run(_raw_join(sim, audio=False))
        try:
            with ConvaiClient(client_config(sim, transport="livekit", receive_audio=False)) as client:
                if sdk:
                    client.connect(timeout=WAIT)
                for _ in range(trips):
                    if sdk:
                        start = time.perf_counter()
                        client.reset_idle_timer(wait=True, timeout=WAIT)
                        out["sdk"]["rtt"].append(time.perf_counter() - start)
                    out["raw"]["rtt"].append(raw_loop.run(_raw_trip(raw)))
        finally:
            raw_loop.run(_raw_close(raw, sim, session_id))
        raw, session_id, _ = raw_loop.run(_raw_join(sim))
        try:
            with ConvaiClient(config) as client:
                if sdk:
                    client.connect(timeout=WAIT)
                spoke: list[float] = []
                loud: list[float] = []
                ended = threading.Event()
                imm = EventDeliveryPolicy.IMMEDIATE
                client.events.raw.subscribe(BotStartedSpeaking, lambda _e: spoke.append(time.monotonic()), imm)
                client.events.raw.subscribe(BotTurnCompleted, lambda _e: ended.set(), imm)

                def heard(frame: AudioFrame) -> None:
                    samples = memoryview(frame.data).cast("h")
                    if len(samples) and max(max(samples), -min(samples)) >= LOUD:
                        loud.append(time.monotonic())  # as delivered, like bot-started-speaking's time
                client.events.on_audio.subscribe(heard, imm)
                for _ in range(turns):
                    if sdk:
                        ended.clear()
                        mark, loud_mark = len(spoke), len(loud)
                        client.send_text("hello")
                        if not ended.wait(WAIT) or len(spoke) <= mark or len(loud) <= loud_mark:
                            raise TimeoutError("no spoken reply over LiveKit")
                        out["sdk"]["audio"].append(loud[loud_mark] - spoke[mark])
                        _quiet_sync(loud)
                    out["raw"]["audio"].append(raw_loop.run(_raw_turn(raw)))
        finally:
            raw_loop.run(_raw_close(raw, sim, session_id))
    finally:
        raw_loop.close()
    return out


def livekit_rows(sim: SimHandle, quick: bool) -> list[Row]:
    joins, trips, turns = (5, 100, 3) if quick else (20, 500, 10)
    why = sdk_unavailable(sim)
    figures = _figures(sim, joins, trips, turns, sdk=why is None)
    raw = figures["raw"]
    sdk: dict[str, list[float]] | None = None if why else figures["sdk"]
    specs = (("connect", "connect (POST /connect + join + bot-ready) p50", "ratio<=", 1.3),
             ("rtt", "data round trip (reset-idle-timer ack) p50", "ratio<=", 1.5),
             ("audio", "first audio after bot-started-speaking p50", "info", None))
    rows: list[Row] = []
    for key, name, kind, limit in specs:
        base = percentile(raw[key], 0.5)
        note = f"raw p99 {percentile(raw[key], 0.99) * 1e3:.1f} ms over {len(raw[key])}"
        if sdk is None:
            row = na(GROUP, name, "s", why or "")
            row.baseline = base
            row.note += f"; {note}"
        else:
            row = Row(GROUP, name, "s", percentile(sdk[key], 0.5), base, kind, limit, note)
        rows.append(row)
    return rows
