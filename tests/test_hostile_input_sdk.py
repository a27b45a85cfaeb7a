"""Regression tests for issue 20 (hostile and careless input, round 3), SDK side.

Each test names the defect it covers; each failed on the code before its fix.
"""

from __future__ import annotations

import array
import logging
import threading
from collections.abc import Iterator

import pytest

from convai_sync import AudioFrame, BotText, EventDeliveryPolicy, SessionStateChanged
from convai_sync.audio import AudioClip, check_format
from tests.helpers_memory import WAIT, Harness, assert_no_convai_threads, make_config, reply_frames, run_async

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness(make_config(close_timeout=1.0, http_timeout=0.5))
    try:
        yield h
    finally:
        h.close()
    assert_no_convai_threads()


def _sent_id(h: Harness) -> str:
    message_id = h.server.wait_sent("user_text_message")["data"]["message_id"]
    assert isinstance(message_id, str)
    return message_id


# ============================================================================ 1. timeout=None / inf


def test_stream_without_a_timeout_waits_for_the_reply(harness: Harness) -> None:
    """Issue 20.1: stream(timeout=None) raised OverflowError the first time next() had to wait."""
    h = harness
    h.connect()
    stream = h.client.stream("take your time", timeout=None)
    first = run_async(lambda: next(stream), "test-next")
    message_id = _sent_id(h)
    assert not first.done()
    for frame in reply_frames(["slow ", "answer"], message_id=message_id):
        h.server.push(frame)
    chunk = first.result(WAIT)
    assert isinstance(chunk, BotText) and chunk.text == "slow "
    assert [c.text for c in stream] == ["answer"]
    assert stream.reply is not None and stream.reply.text == "slow answer"


HUGE = [float("inf"), 1e300, threading.TIMEOUT_MAX * 2]


@pytest.mark.parametrize("timeout", HUGE, ids=["inf", "1e300", "2xTIMEOUT_MAX"])
@pytest.mark.parametrize("call", ["ask", "stream", "send_text_wait", "wait_for", "send_audio"])
def test_a_timeout_beyond_what_threads_take_means_no_deadline(harness: Harness, call: str,
                                                               timeout: float) -> None:
    """Issue 20.1, same pattern: every public timeout accepts inf and huge values as "no deadline"
    (each raised OverflowError from Condition.wait)."""
    h = harness
    h.connect()
    if call == "send_audio":
        h.client.send_audio(b"\0\0" * 160, 16000, timeout=timeout)
        assert h.server.wait_audio_sent(1)
        return
    if call == "wait_for":
        waiting = run_async(lambda: h.client.wait_for(BotText, timeout=timeout), "test-wait")
    elif call == "send_text_wait":
        waiting = run_async(lambda: h.client.send_text("hi", wait=True, timeout=timeout), "test-send")
    elif call == "ask":
        waiting = run_async(lambda: h.client.ask("hi", timeout=timeout), "test-ask")
    else:
        waiting = run_async(lambda: list(h.client.stream("hi", timeout=timeout)), "test-stream")
    if call != "wait_for":
        message_id = _sent_id(h)
        h.server.push({"type": "server-response", "event_type": "user_text_message", "status": "success"})
        frames = reply_frames(["done"], message_id=message_id)
    else:
        frames = reply_frames(["done"])
    if call == "send_text_wait":
        assert waiting.result(WAIT).status == "success"
        return
    for frame in frames:
        h.server.push(frame)
    result = waiting.result(WAIT)
    text = result.text if not isinstance(result, list) else "".join(c.text for c in result)
    assert text == "done"


# ============================================================================ 2. next() after close()


def test_next_after_reply_stream_close_ends_the_iteration(harness: Harness) -> None:
    """Issue 20.2: next() after ReplyStream.close() raised concurrent.futures.CancelledError."""
    h = harness
    h.connect()
    stream = h.client.stream("never mind", timeout=WAIT)
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    assert list(stream) == [] and stream.reply is None


def test_reply_stream_close_wakes_a_next_waiting_on_another_thread(harness: Harness) -> None:
    """Issue 20.2, same pattern: close() from another thread left a waiting next() asleep until its
    deadline (here none: forever)."""
    h = harness
    h.connect()
    stream = h.client.stream("never mind", timeout=None)
    _sent_id(h)
    waiting = run_async(lambda: list(stream), "test-iterate")
    assert not waiting.done()
    stream.close()
    assert waiting.result(WAIT) == []


# ============================================================================ 3. buffers by byte length


def test_send_audio_measures_a_memoryview_in_bytes(harness: Harness) -> None:
    """Issue 20.3: an int16 memoryview with an odd sample count was refused, and one second of
    audio counted as half a second."""
    h = harness
    h.connect()
    one_second = memoryview(array.array("h", [1000, -1000] * 8000))
    assert len(one_second) == 16000 and one_second.nbytes == 32000
    h.client.send_audio(one_second, 16000)
    odd = memoryview(array.array("h", [7] * 1601))  # an odd sample count: 0.1000625 s
    h.client.send_audio(odd, 16000)
    sent = h.server.wait_audio_sent(2)
    assert sent[0] == (one_second.tobytes(), 16000, 1)
    assert sent[1] == (odd.tobytes(), 16000, 1)
    assert h.client.diagnostics()["audio"]["seconds_sent"] == pytest.approx(1.1, abs=1e-3)


def test_send_audio_refuses_a_non_contiguous_buffer_clearly(harness: Harness) -> None:
    """Issue 20.3: a strided view is refused with a ValueError that says why."""
    h = harness
    h.connect()
    strided = memoryview(bytes(64))[::2]
    with pytest.raises(ValueError, match="contiguous"):
        h.client.send_audio(strided, 16000)
    with pytest.raises(ValueError, match="pcm must be"):
        h.client.send_audio("not audio", 16000)  # type: ignore[arg-type]


def test_audio_values_measure_buffers_in_bytes() -> None:
    """Issue 20.3, same pattern elsewhere: check_format and AudioClip measured items, not bytes."""
    samples = memoryview(array.array("h", [1, 2, 3]))
    assert check_format(samples, 16000, 1) == samples.tobytes()
    clip = AudioClip(samples, 16000)  # type: ignore[arg-type]  # stored as bytes
    assert clip.pcm == samples.tobytes() and clip.duration == pytest.approx(3 / 16000)
    with pytest.raises(ValueError, match="contiguous"):
        check_format(memoryview(bytes(8))[::2], 16000, 1)


# ============================================================================ 5. no handler after close()


def _frames(h: Harness, count: int) -> None:
    for _ in range(count):
        h.server.push_audio(b"\x10\x00" * 320, 16000, 1)


def test_no_background_handler_runs_after_close(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 20.5: after close() returned, the BACKGROUND dispatcher went on calling an on_audio
    handler hundreds of times over several seconds."""
    h = harness
    h.connect()
    calls = [0]
    started = threading.Event()
    release = threading.Event()
    closed = threading.Event()
    after_close = [0]

    def slow(frame: AudioFrame) -> None:
        calls[0] += 1
        if closed.is_set():
            after_close[0] += 1
        started.set()
        release.wait(0.01)  # a slow consumer: the queue fills faster than this drains

    h.client.events.on_audio.subscribe(slow, EventDeliveryPolicy.BACKGROUND)
    _frames(h, 400)
    assert started.wait(WAIT)
    dispatcher = h.client._hub.dispatch_thread
    assert dispatcher is not None
    caplog.set_level(logging.INFO, logger="convai_sync")
    h.client.close()
    closed.set()
    dispatcher.join(h.client.config.close_timeout)
    assert not dispatcher.is_alive(), "the dispatcher outlived close()"
    assert after_close[0] == 0, f"{after_close[0]} handler call(s) after close() returned"
    dropped = h.client.diagnostics()["events"]["dropped_at_close"]
    assert dropped > 0 and calls[0] + dropped <= 400
    lines = [r for r in caplog.records if "dropped at close" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]


def test_lifecycle_events_still_reach_background_handlers_at_close(harness: Harness) -> None:
    """Issue 20.5: what close() itself publishes (the final state change) is still delivered
    before close() returns; only what remains at its deadline is dropped."""
    h = harness
    h.connect()
    states: list[SessionStateChanged] = []
    h.client.events.on_session_state_changed.subscribe(states.append, EventDeliveryPolicy.BACKGROUND)
    h.client.close()
    assert states and states[-1].new_state.name == "DISCONNECTED"
    assert h.client.diagnostics()["events"]["dropped_at_close"] == 0


def test_no_main_thread_handler_runs_after_close(harness: Harness) -> None:
    """Issue 20.5, MAIN_THREAD: pump() after close() delivers nothing, even what was published
    while close() ran."""
    h = harness
    h.connect()
    seen: list[object] = []
    h.client.events.on_audio.subscribe(seen.append, EventDeliveryPolicy.MAIN_THREAD)
    _frames(h, 5)
    h.client.close()
    hub = h.client._hub
    hub._main.put(next(iter(hub._subs)), AudioFrame(data=b"\0\0", sample_rate=16000, num_channels=1,
                                                     samples_per_channel=1, timestamp=0.0))
    assert h.client.pump() == 0 and seen == []
