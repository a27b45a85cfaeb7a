"""Stand-ins for ``sounddevice``: :class:`FakeStream` (a Raw stream the test drives as PortAudio's
audio thread would) and :class:`FakeSoundDevice` (the module, with devices to list and choose)."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from convai_sync.devices import StreamFactory


class FakeStream:
    """Stands in for sounddevice's Raw streams: the test plays PortAudio's audio thread."""

    def __init__(self, rate: int, channels: int, block: int, callback: Callable[..., None]) -> None:
        self.rate, self.channels, self.block, self.callback = rate, channels, block, callback
        self.started = self.stopped = self.closed = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        self.closed = True

    def pull(self, frames: int | None = None) -> bytes:
        """One output block, as PortAudio asks for it."""
        n = frames or self.block
        out = bytearray(n * 2 * self.channels)
        self.callback(out, n, None, None)
        return bytes(out)

    def capture(self, pcm: bytes) -> None:
        """One input block, as PortAudio delivers it."""
        self.callback(pcm, len(pcm) // (2 * self.channels), None, None)


class FakePortAudioError(Exception):
    pass


class FakeSoundDevice(types.ModuleType):
    """Stands in for the ``sounddevice`` module: four devices (``busy`` ones refuse to open); its
    streams are :class:`FakeStream` unless factories are given (e.g. a simulated room's)."""

    PortAudioError = FakePortAudioError

    def __init__(self, input_factory: StreamFactory | None = None, output_factory: StreamFactory | None = None) -> None:
        super().__init__("sounddevice")
        self.input_factory, self.output_factory = input_factory, output_factory
        self.default = types.SimpleNamespace(device=[0, 1])
        self.busy: set[int] = set()
        self.opened: list[tuple[str, dict[str, Any], Any]] = []
        self.devices = [
            {"name": "Built-in Microphone", "hostapi": 0, "max_input_channels": 2, "max_output_channels": 0,
             "default_samplerate": 48000.0},
            {"name": "Built-in Speakers", "hostapi": 0, "max_input_channels": 0, "max_output_channels": 2,
             "default_samplerate": 48000.0},
            {"name": "USB Headset", "hostapi": 0, "max_input_channels": 1, "max_output_channels": 2,
             "default_samplerate": 16000.0},
            {"name": "Bluetooth Headset", "hostapi": 0, "max_input_channels": 1, "max_output_channels": 2,
             "default_samplerate": 16000.0},
        ]

    def query_devices(self) -> list[dict[str, Any]]:
        return self.devices

    def query_hostapis(self) -> list[dict[str, Any]]:
        return [{"name": "ALSA"}]

    def _open(self, kind: str, **kw: Any) -> Any:
        if kw["device"] in self.busy:
            raise FakePortAudioError("Error opening RawInputStream: Device unavailable [PaErrorCode -9985]")
        factory = (self.input_factory if kind == "input" else self.output_factory) or FakeStream
        stream = factory(kw["samplerate"], kw["channels"], kw["blocksize"], kw["callback"])
        self.opened.append((kind, kw, stream))
        return stream

    def RawInputStream(self, **kw: Any) -> Any:
        return self._open("input", **kw)

    def RawOutputStream(self, **kw: Any) -> Any:
        return self._open("output", **kw)
