"""convai_sync.devices with fake streams injected in place of sounddevice's."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from convai_sync import AudioFrame, AudioInterrupted, EventDeliveryPolicy, devices
from convai_sync.devices import DeviceError, Microphone, Speaker, find_device, list_devices
from convai_sync.testing import Recorder
from tests.helpers_memory import WAIT, Harness, assert_no_convai_threads, make_config
from tests.support.fake_sounddevice import FakeSoundDevice, FakeStream

pytestmark = pytest.mark.timeout(15)


@pytest.fixture(autouse=True)
def _no_convai_threads_survive() -> Iterator[None]:
    yield
    assert_no_convai_threads()


class Factory:
    def __init__(self) -> None:
        self.streams: list[FakeStream] = []

    def __call__(self, rate: int, channels: int, block: int, callback: Callable[..., None]) -> FakeStream:
        stream = FakeStream(rate, channels, block, callback)
        self.streams.append(stream)
        return stream


def frame(value: int, samples: int = 160, rate: int = 16000, turn_id: int | None = 1) -> AudioFrame:
    return AudioFrame(data=value.to_bytes(2, "little", signed=True) * samples, sample_rate=rate, num_channels=1,
                      samples_per_channel=samples, timestamp=0.0, turn_id=turn_id)


def values(block: bytes) -> set[int]:
    return {int.from_bytes(block[i:i + 2], "little", signed=True) for i in range(0, len(block), 2)}


# ---------------------------------------------------------------------------- Speaker


def test_speaker_plays_in_order_after_the_prebuffer() -> None:
    factory = Factory()
    speaker = Speaker(prebuffer=0.02, block_seconds=0.01, stream_factory=factory)
    speaker.play(frame(1))  # 10 ms: less than the prebuffer
    [stream] = factory.streams
    assert (stream.rate, stream.channels, stream.block, stream.started) == (16000, 1, 160, True)
    assert values(stream.pull()) == {0}  # still buffering
    speaker.play(frame(2))
    assert values(stream.pull()) == {1}
    assert values(stream.pull()) == {2}
    assert values(stream.pull()) == {0}  # dry: silence, then rebuffer
    speaker.close()
    assert stream.stopped and stream.closed


def test_a_reply_shorter_than_the_prebuffer_still_plays() -> None:
    factory = Factory()
    speaker = Speaker(prebuffer=0.05, block_seconds=0.01, stream_factory=factory)
    speaker.play(frame(3))
    stream = factory.streams[0]
    played = [values(stream.pull()) for _ in range(6)]
    assert {3} in played and played[0] == {0}  # waited up to the prebuffer, then played it
    speaker.close()


def test_speaker_buffer_is_bounded_and_drops_the_oldest() -> None:
    factory = Factory()
    speaker = Speaker(prebuffer=0.0, max_buffer=0.05, block_seconds=0.01, stream_factory=factory)
    for i in range(10):  # 100 ms into a 50 ms buffer
        speaker.play(frame(i))
    assert speaker.buffered_seconds == pytest.approx(0.05)
    stream = factory.streams[0]
    assert [values(stream.pull()) for _ in range(5)] == [{5}, {6}, {7}, {8}, {9}]
    assert speaker.stats["dropped_overflow_bytes"] == 5 * 320
    speaker.close()


def test_speaker_reopens_its_stream_when_the_format_changes() -> None:
    factory = Factory()
    speaker = Speaker(prebuffer=0.0, stream_factory=factory)
    speaker.play(frame(1))
    speaker.play(frame(2, samples=480, rate=48000))
    first, second = factory.streams
    assert first.closed and (second.rate, second.started) == (48000, True)
    assert values(second.pull(480)) == {2}
    speaker.close()


def test_speaker_interrupt_empties_the_buffer_and_drops_the_rest_of_the_turn() -> None:
    factory = Factory()
    speaker = Speaker(prebuffer=0.0, block_seconds=0.01, stream_factory=factory)
    for i in range(5):
        speaker.play(frame(i + 1, turn_id=1))
    stream = factory.streams[0]
    assert values(stream.pull()) == {1}
    speaker.interrupt(AudioInterrupted(turn_id=1, source="client"))
    assert values(stream.pull()) == {0}  # within a block
    speaker.play(frame(9, turn_id=1))  # a late frame of the interrupted turn
    speaker.play(frame(7, turn_id=2))
    assert values(stream.pull()) == {7}
    assert speaker.stats["dropped_stale"] == 1
    speaker.close()


def test_speaker_attached_to_a_client_stops_on_interrupt() -> None:
    factory = Factory()
    speaker = Speaker(prebuffer=0.0, block_seconds=0.01, stream_factory=factory)
    h = Harness(make_config())
    try:
        subs = speaker.attach(h.client)
        assert [s.policy for s in subs] == [EventDeliveryPolicy.IMMEDIATE] * 2
        heard = threading.Event()
        h.client.events.on_audio_interrupted.subscribe(lambda e: heard.set(), EventDeliveryPolicy.IMMEDIATE)
        played: Recorder[AudioFrame] = Recorder()
        h.client.events.on_audio.subscribe(played, EventDeliveryPolicy.IMMEDIATE)  # runs after speaker.play
        h.connect()
        h.server.push({"label": "rtvi-ai", "type": "server-message", "data": {"type": "bot-started-speaking"}})
        for i in range(20):
            h.server.push_audio(frame(i + 1).data)
        played.wait(20)
        assert speaker.buffered_seconds == pytest.approx(0.2)
        h.client.interrupt()
        assert heard.wait(WAIT)
        assert speaker.buffered_seconds == 0.0
        assert values(factory.streams[0].pull()) == {0}
    finally:
        h.close()
        speaker.close()


def test_speaker_refuses_a_malformed_frame() -> None:
    speaker = Speaker(stream_factory=Factory())
    bad = AudioFrame(data=b"\x00", sample_rate=16000, num_channels=1, samples_per_channel=0, timestamp=0.0)
    with pytest.raises(ValueError):
        speaker.play(bad)


# ---------------------------------------------------------------------------- Microphone


class Sink:
    def __init__(self, fail_first: int = 0, gate: threading.Event | None = None) -> None:
        self.blocks: list[tuple[bytes, int, int]] = []
        self.threads: set[str] = set()
        self.fail_first = fail_first
        self.gate = gate
        self.entered = threading.Event()
        self.cond = threading.Condition()

    def __call__(self, pcm: bytes, rate: int, channels: int) -> None:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(WAIT)
        with self.cond:
            self.threads.add(threading.current_thread().name)
            if self.fail_first:
                self.fail_first -= 1
                raise RuntimeError("not connected yet")
            self.blocks.append((pcm, rate, channels))
            self.cond.notify_all()

    def wait(self, n: int) -> list[tuple[bytes, int, int]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.blocks) >= n, WAIT)
            return list(self.blocks)


def test_microphone_feeds_its_sink_in_order_on_its_own_thread() -> None:
    factory = Factory()
    mic = Microphone(16000, stream_factory=factory)
    sink = Sink(fail_first=1)
    mic.start(sink)
    stream = factory.streams[0]
    assert (stream.rate, stream.block, stream.started) == (16000, 320, True)
    for i in range(4):
        stream.capture(frame(i, samples=320).data)
    blocks = sink.wait(3)
    assert [values(b[0]) for b in blocks] == [{1}, {2}, {3}]  # the first went to a failing sink
    assert {b[1:] for b in blocks} == {(16000, 1)}
    assert all(name.startswith("convai-mic-") for name in sink.threads)
    assert mic.stats["sink_errors"] == 1
    mic.stop()
    assert stream.stopped and stream.closed and not mic.running


def test_microphone_stopped_while_its_stream_opens_leaves_nothing_open() -> None:
    factory = Factory()
    mic: Microphone

    def open_while_stopped(rate: int, channels: int, block: int, callback: Callable[..., None]) -> FakeStream:
        stream = factory(rate, channels, block, callback)
        mic.stop()  # another thread's stop() landing while PortAudio opens the device
        return stream

    mic = Microphone(16000, stream_factory=open_while_stopped)
    mic.start(lambda pcm, rate, channels: None)
    [stream] = factory.streams
    assert not stream.started and stream.closed and not mic.running


def registered(mic: Microphone) -> bool:
    return mic in set(devices._registry._microphones)


class StopsWhenStarted(FakeStream):
    """A stream whose start() lets another thread's ``Microphone.stop()`` land (in call order, not time):
    after the stream started, before start() registers the microphone for echo references."""

    mic: Microphone

    def start(self) -> None:
        super().start()
        self.mic.stop()


def test_microphone_stopped_as_its_stream_starts_is_not_left_registered() -> None:
    streams: list[StopsWhenStarted] = []

    def factory(rate: int, channels: int, block: int, callback: Callable[..., None]) -> FakeStream:
        streams.append(StopsWhenStarted(rate, channels, block, callback))
        streams[-1].mic = mic
        return streams[-1]

    mic = Microphone(16000, stream_factory=factory, echo_cancellation=False)
    mic.start(lambda pcm, rate, channels: None)
    [stream] = streams
    assert stream.started and stream.stopped and stream.closed and not mic.running
    assert not registered(mic)
    speaker = Speaker(stream_factory=Factory())  # the registry links a new speaker to every registered microphone
    try:
        assert mic._speakers == []
    finally:
        speaker.close()


def test_a_running_microphone_is_registered_until_it_stops() -> None:
    mic = Microphone(16000, stream_factory=Factory(), echo_cancellation=False)
    mic.start(lambda pcm, rate, channels: None)
    assert registered(mic)
    mic.stop()
    assert not registered(mic)
    mic.start(lambda pcm, rate, channels: None)  # and again after a restart
    assert registered(mic)
    mic.stop()
    assert not registered(mic)


def test_microphone_drops_the_oldest_blocks_when_the_sink_is_slow() -> None:
    factory = Factory()
    mic = Microphone(16000, block_seconds=0.02, max_queue=0.06, stream_factory=factory)
    gate = threading.Event()
    sink = Sink(gate=gate)
    mic.start(sink)
    stream = factory.streams[0]
    stream.capture(frame(0, samples=320).data)  # taken by the sink, which then blocks
    assert sink.entered.wait(WAIT)
    for i in range(1, 10):
        stream.capture(frame(i, samples=320).data)  # never blocks the audio thread
    gate.set()
    blocks = sink.wait(4)
    assert [values(b[0]) for b in blocks] == [{0}, {7}, {8}, {9}]  # 3 blocks (60 ms) were kept
    assert mic.stats["dropped_blocks"] == 6
    mic.stop()


def test_microphone_streams_to_a_client() -> None:
    factory = Factory()
    h = Harness(make_config())
    mic = Microphone(16000, stream_factory=factory)
    try:
        h.connect()
        mic.stream_to(h.client)
        factory.streams[0].capture(frame(5, samples=320).data)
        assert h.server.wait_audio_sent(1, WAIT) == [(frame(5, samples=320).data, 16000, 1)]
    finally:
        mic.stop()
        h.close()


def test_missing_sounddevice_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(ImportError, match=r"convai-sync\[devices\]"):
        Speaker().play(frame(1))
    with pytest.raises(ImportError, match=r"convai-sync\[devices\]"):
        Microphone().start(lambda pcm, rate, channels: None)


def test_the_core_never_imports_the_devices_module() -> None:
    code = ("import sys, convai_sync, convai_sync.client, convai_sync.session; "
            "print(any(m in sys.modules for m in ('convai_sync.devices', 'sounddevice')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------- device selection


@pytest.fixture
def sd(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    fake = FakeSoundDevice()
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    return fake


def test_list_devices_names_every_device_and_the_defaults(sd: FakeSoundDevice) -> None:
    everything = list_devices()
    assert [(d.index, d.name) for d in everything] == [(0, "Built-in Microphone"), (1, "Built-in Speakers"),
                                                        (2, "USB Headset"), (3, "Bluetooth Headset")]
    assert everything[0].is_default_input and everything[1].is_default_output and everything[0].host_api == "ALSA"
    assert [d.index for d in list_devices("input")] == [0, 2, 3]
    assert [d.index for d in list_devices("output")] == [1, 2, 3]


def test_find_device_by_index_exact_name_or_unique_part(sd: FakeSoundDevice) -> None:
    assert find_device(None, "input").name == "Built-in Microphone"
    assert find_device(None, "output").name == "Built-in Speakers"
    assert find_device(2, "input").name == "USB Headset"
    assert find_device("USB Headset", "output").index == 2
    assert find_device("bluetooth", "input").index == 3  # a unique part, any case
    with pytest.raises(DeviceError, match=r"no input device with index 1") as missing:
        find_device(1, "input")  # the speakers: an output only
    assert missing.value.device == 1
    with pytest.raises(DeviceError, match=r"no output device named 'Studio Monitor'"):
        find_device("Studio Monitor", "output")
    with pytest.raises(DeviceError, match=r"'Headset' matches several input devices .*'USB Headset'.*"
                                          r"'Bluetooth Headset'.*give its index"):
        find_device("Headset", "input")


def test_devices_open_the_device_they_name(sd: FakeSoundDevice) -> None:
    mic = Microphone(16000, device="USB", echo_cancellation=False)
    mic.start(lambda pcm, rate, channels: None)
    speaker = Speaker(device=3)
    speaker.play(frame(1))
    try:
        (kind_in, kw_in, _), (kind_out, kw_out, _) = sd.opened
        assert (kind_in, kw_in["device"], kw_in["samplerate"], kw_in["dtype"]) == ("input", 2, 16000, "int16")
        assert (kind_out, kw_out["device"], kw_out["samplerate"]) == ("output", 3, 16000)
        assert mic.device == "USB" and speaker.device == 3
    finally:
        mic.stop()
        speaker.close()


def test_a_missing_or_busy_device_is_a_clear_error_naming_it(sd: FakeSoundDevice) -> None:
    sd.busy.add(2)
    mic = Microphone(16000, device="USB Headset", echo_cancellation=False)
    with pytest.raises(DeviceError, match=r"input device 'USB Headset' \(index 2\) could not be opened.*"
                                          r"Device unavailable"):
        mic.start(lambda pcm, rate, channels: None)
    assert not mic.running
    with pytest.raises(DeviceError, match=r"no input device named 'Webcam'"):
        Microphone(16000, device="Webcam", echo_cancellation=False).start(lambda pcm, rate, channels: None)
    speaker = Speaker(device="Webcam")
    with pytest.raises(DeviceError, match=r"no output device named 'Webcam'"):
        speaker.play(frame(1))
    speaker.close()


def test_switching_the_microphone_mid_session_keeps_the_session(sd: FakeSoundDevice) -> None:
    h = Harness(make_config())
    mic = Microphone(16000, echo_cancellation=False)
    try:
        h.connect()
        session = h.client.session_id
        mic.stream_to(h.client)
        first = sd.opened[0][2]
        first.capture(frame(1, samples=320).data)
        h.server.wait_audio_sent(1, WAIT)
        mic.set_device("USB Headset")
        second = sd.opened[1][2]
        assert sd.opened[1][1]["device"] == 2 and second.started
        assert first.stopped and first.closed and mic.running and mic.device == "USB Headset"
        first.capture(frame(9, samples=320).data)  # a late block of the old device: not heard
        second.capture(frame(2, samples=320).data)
        sent = h.server.wait_audio_sent(2, WAIT)
        assert [values(pcm) for pcm, _, _ in sent] == [{1}, {2}]
        assert h.client.session_id == session and h.client.state.name == "CONNECTED"
        # A busy device mid-session: the error names it and the current device keeps capturing.
        sd.busy.add(3)
        with pytest.raises(DeviceError, match="'Bluetooth Headset'"):
            mic.set_device(3)
        assert mic.device == "USB Headset" and not second.stopped
        second.capture(frame(3, samples=320).data)
        assert values(h.server.wait_audio_sent(3, WAIT)[-1][0]) == {3}
    finally:
        mic.stop()
        h.close()


def test_switching_the_speaker_mid_reply_keeps_the_buffered_voice(sd: FakeSoundDevice) -> None:
    speaker = Speaker(prebuffer=0.0, block_seconds=0.01)
    try:
        for i in range(4):
            speaker.play(frame(i + 1))
        first = sd.opened[0][2]
        assert values(first.pull()) == {1}
        speaker.set_device("USB Headset")
        second = sd.opened[1][2]
        assert sd.opened[1][1]["device"] == 2 and second.started and first.stopped and first.closed
        assert values(first.pull()) == {0}  # the old device, still called once more: silence
        assert [values(second.pull()) for _ in range(3)] == [{2}, {3}, {4}]  # nothing lost
        with pytest.raises(DeviceError, match="no output device named 'Webcam'"):
            speaker.set_device("Webcam")
        assert speaker.device == "USB Headset"
    finally:
        speaker.close()


def test_choosing_a_missing_device_before_it_opens_fails_at_once(sd: FakeSoundDevice) -> None:
    with pytest.raises(DeviceError, match="no input device with index 7"):
        Microphone(16000, echo_cancellation=False).set_device(7)
    speaker = Speaker()
    with pytest.raises(DeviceError, match="no output device named 'Webcam'"):
        speaker.set_device("Webcam")
    speaker.set_device("USB")
    speaker.play(frame(1))
    assert sd.opened[0][1]["device"] == 2
    speaker.close()
