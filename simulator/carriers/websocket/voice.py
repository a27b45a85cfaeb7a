"""The character's voice and ears on one ``/chat`` WebSocket (PROPOSED: Pipecat protobuf frames; loop thread only).

Out: with ``websocket_audio`` on (``Simulator(websocket_audio=True)``, ``convai-sim --websocket-audio``) and TTS
on, each reply is voiced as binary ``Frame.audio`` messages of 20 ms (the synthesizer's PCM16 mono, at its rate),
between ``bot-started-speaking`` and ``bot-stopped-speaking``, paced as Pipecat's WebSocket output transport
paces them: one chunk every half chunk-duration (twice real time; ``FastAPIWebsocketOutputTransport``'s send
interval is the chunk's duration / 2). An interruption stops the voice and sends ``Frame.interruption``, as
Pipecat does, so the client drops what it has not played. Off by default: Convai does not document audio on
``/chat``, and clients that only read text frames (and tests of them) keep their speed.

In: binary ``Frame.audio`` from the client always reaches the character's ears: counted in
``SimSession.received_audio_seconds``, then the same utterance rules and reply as LiveKit's microphone track
(:mod:`simulator.core.speech`). A binary ``Frame.message`` is handled as the RTVI text message it carries (what
Pipecat's web client sends). A binary message that is neither is logged and ignored (it resets the idle
timer, like any client traffic).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from simulator.carriers.websocket import pipecat
from simulator.core import messages, speech
from simulator.core.carrier import SlowConsumer
from simulator.core.sessions import SimSession
from simulator.core.state import SimCore

logger = logging.getLogger("simulator.wsaudio")

#: Pipecat's WebSocket output sends audio at twice real time (the send interval is half a chunk).
PACE = 2.0

SendBytes = Callable[[bytes], Awaitable[bool]]


class WebSocketVoice:
    """Speaks and hears for one session's WebSocket (see the module docstring).

    Args:
        core: the simulator core (synthesizer, transcriber, replies).
        session: the session this WebSocket carries.
        send_bytes: sends one binary message (``WebSocketCarrier.send_bytes``); False when the wire is gone.
        speak_out: send the character's voice (``websocket_audio``).
    """

    def __init__(self, core: SimCore, session: SimSession, send_bytes: SendBytes, speak_out: bool) -> None:
        self._core = core
        self._session = session
        self._send_bytes = send_bytes
        self.speak_out = speak_out
        self._detector = speech.UtteranceDetector(
            lambda: speech.heard_started(session),
            lambda pcm, rate, channels: speech.heard_utterance(core, session, pcm, rate, channels))
        self._warned = False

    async def speak(self, text: str, stop: Callable[[], bool]) -> None:
        """Voice ``text`` as paced ``Frame.audio`` messages; returns after the last one (or the interruption)."""
        if not self.speak_out:
            return
        voice = await speech.synthesize(self._core, self._session, text)
        if voice is None:
            return
        pcm, rate = voice
        step = int(rate * speech.FRAME_SECONDS) * 2
        interval = speech.FRAME_SECONDS / PACE
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index, offset in enumerate(range(0, len(pcm), step)):
            if stop():
                await self._send(pipecat.interruption())
                return
            if not await self._send(pipecat.audio(pcm[offset:offset + step], rate, 1)):
                return
            delay = started + (index + 1) * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _send(self, data: bytes) -> bool:
        try:
            return await self._send_bytes(data)
        except SlowConsumer:
            self._session._slow_consumer()  # the same rule as for text: the client stopped reading
            return False

    async def hear(self, data: bytes) -> None:
        """One binary message from the client."""
        try:
            frame = pipecat.parse(data)
        except pipecat.Unavailable as exc:
            if not self._warned:
                self._warned = True
                logger.warning("session %s: binary messages ignored: %s", self._session.session_id, exc)
            return
        except ValueError as exc:
            logger.info("session %s: binary message ignored: %s", self._session.session_id, exc)
            return
        if isinstance(frame, pipecat.Audio):
            self._session.received_audio_seconds += len(frame.pcm) / (2 * frame.num_channels * frame.sample_rate)
            await self._detector.feed(frame.pcm, frame.sample_rate, frame.num_channels)
        elif isinstance(frame, pipecat.Message):
            await messages.handle_text(self._core, self._session, frame.data)
        else:
            logger.debug("session %s: Pipecat %s frame ignored", self._session.session_id, frame.kind)
