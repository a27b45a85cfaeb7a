"""Drive the real ``livekit.rtc.Room`` against the simulator (no convai_sync client code in the way).

Every test runs its scenario with ``asyncio.run`` on the test thread; each wait has a deadline. The suite
runs under the loopback shim (``tests/conftest.py``), without which libwebrtc cannot connect over 127.0.0.1.
"""

from __future__ import annotations

import array
import asyncio
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from livekit import rtc

from convai_sync import loopback
from simulator import Simulator

JSON = dict[str, Any]
WAIT = 15.0
HTTP_TIMEOUT = 5.0


def etype(frame: JSON) -> str:
    """Convai's demux rule: ``data.type`` of a ``server-message``, else ``type``."""
    data = frame.get("data")
    if frame.get("type") == "server-message" and isinstance(data, dict) and data.get("type"):
        return str(data["type"])
    return str(frame.get("type"))


def native_threads() -> int:
    """Threads of this process (Python and native), from /proc."""
    return len(os.listdir("/proc/self/task"))


def connect_info(sim: Simulator, **body: Any) -> JSON:
    """``POST /connect`` for a LiveKit session; asserts 200 and returns the answer."""
    payload: JSON = {"character_id": sim.character_id, "transport": "livekit"}
    payload.update(body)
    answer = requests.post(f"{sim.url}/connect", json=payload, headers={"x-api-key": sim.api_key},
                           timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text
    info: JSON = answer.json()
    return info


def tone_frame(index: int, rate: int = 48_000, samples: int = 480, hz: float = 300.0,
               amplitude: int = 8000) -> rtc.AudioFrame:
    """One 10 ms frame of a sine (``amplitude`` 0 = silence), PCM16 mono."""
    frame = rtc.AudioFrame.create(rate, 1, samples)
    if amplitude:
        data = frame.data
        step = 2 * math.pi * hz / rate
        for i in range(samples):
            data[i] = int(amplitude * math.sin(step * (index * samples + i)))
    return frame


@dataclass
class Heard:
    """Audio frames the client received on one remote track: (arrival time, peak, samples, sample rate)."""

    frames: list[tuple[float, int, int, int]] = field(default_factory=list)

    def loud_seconds(self, peak: int = 1000) -> float:
        """Seconds of received audio whose peak reaches ``peak``."""
        return sum(samples / rate for _t, p, samples, rate in self.frames if p >= peak)

    def rates(self) -> set[int]:
        return {rate for *_rest, rate in self.frames}


class Participant:
    """A real LiveKit client joined to a simulator room, recording what it sees."""

    def __init__(self) -> None:
        self.room = rtc.Room()
        self.messages: list[JSON] = []
        self.events: list[tuple[float, str, Any]] = []
        self.heard: dict[str, Heard] = {}
        self.disconnected: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        room = self.room
        room.on("data_received", self._data)
        room.on("disconnected", self._disconnected)
        room.on("reconnecting", lambda: self._event("reconnecting", None))
        room.on("reconnected", lambda: self._event("reconnected", None))
        room.on("participant_connected", lambda p: self._event("participant_connected", (p.identity, p.kind)))
        room.on("participant_disconnected", lambda p: self._event("participant_disconnected", p.identity))
        room.on("track_subscribed", self._track)

    def _event(self, name: str, value: Any) -> None:
        self.events.append((time.monotonic(), name, value))
        self._changed.set()

    def _data(self, packet: rtc.DataPacket) -> None:
        message = json.loads(packet.data)
        message["_from"] = packet.participant.identity if packet.participant else None
        message["_topic"] = packet.topic
        self.messages.append(message)
        self._changed.set()

    def _disconnected(self, reason: int) -> None:
        self._event("disconnected", reason)
        if not self.disconnected.done():
            self.disconnected.set_result(int(reason))

    def _track(self, track: rtc.Track, publication: rtc.RemoteTrackPublication,
               participant: rtc.RemoteParticipant) -> None:
        self._event("track_subscribed", (participant.identity, track.sid))
        heard = self.heard.setdefault(track.sid, Heard())
        self._readers.append(asyncio.ensure_future(self._read(track, heard)))

    async def _read(self, track: rtc.Track, heard: Heard) -> None:
        stream = rtc.AudioStream(track, sample_rate=48_000, num_channels=1)
        try:
            async for event in stream:
                frame = event.frame
                data = frame.data
                peak = max(max(data), -min(data)) if len(data) else 0
                heard.frames.append((time.monotonic(), peak, frame.samples_per_channel, frame.sample_rate))
        finally:
            await stream.aclose()

    async def join(self, info: JSON, timeout: float = WAIT) -> float:
        """Connect with ``/connect``'s answer; returns the ``room.connect()`` wall time in seconds."""
        started = time.monotonic()
        await asyncio.wait_for(self.room.connect(info["room_url"], info["token"]), timeout)
        return time.monotonic() - started

    async def send(self, message: JSON) -> None:
        await self.room.local_participant.publish_data(json.dumps(message).encode(), reliable=True)

    async def wait_until(self, check: Any, timeout: float = WAIT) -> Any:
        """Wait until ``check()`` returns something truthy (re-checked on every event); returns it."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout} s; messages: "
                                   f"{[etype(m) for m in self.messages]}, events: {[e[1] for e in self.events]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_message(self, wanted: str, after: int = 0, timeout: float = WAIT) -> JSON:
        """The first message of type ``wanted`` at index ``after`` or later."""
        def find() -> JSON | None:
            return next((m for m in self.messages[after:] if etype(m) == wanted), None)

        found: JSON = await self.wait_until(find, timeout)
        return found

    async def wait_disconnected(self, timeout: float = WAIT) -> int:
        return await asyncio.wait_for(asyncio.shield(self.disconnected), timeout)

    def names(self, after: int = 0) -> list[str]:
        return [etype(m) for m in self.messages[after:]]

    async def close(self) -> None:
        """Leave (if still connected) and stop reading audio."""
        if self.room.isconnected():
            await asyncio.wait_for(self.room.disconnect(), WAIT)
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def publish_voice(participant: Participant, speech_seconds: float, silence_seconds: float) -> None:
    """Publish a microphone track and say a 300 Hz tone for ``speech_seconds``, then silence, in real time."""
    source = rtc.AudioSource(48_000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    publication = await participant.room.local_participant.publish_track(track, options)
    # Audio captured before the server has the new m-line would be lost: wait for its TrackSubscribed.
    await asyncio.wait_for(publication.wait_for_subscription(), WAIT)
    frames = int(round(speech_seconds / 0.01))
    for index in range(frames):
        await source.capture_frame(tone_frame(index))
    for index in range(int(round(silence_seconds / 0.01))):
        await source.capture_frame(tone_frame(index, amplitude=0))


def pcm_peak(pcm: bytes) -> int:
    samples = array.array("h")
    samples.frombytes(pcm)
    return max(max(samples), -min(samples)) if samples else 0


def assert_only_routing_probes() -> None:
    """Nothing but libwebrtc's UDP routing probe (a connect() that sends nothing) left loopback."""
    refused = loopback.refusals()
    assert refused.other == 0, f"the shim refused {refused.other} non-loopback sends/connects"
