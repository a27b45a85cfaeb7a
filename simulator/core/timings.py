"""One turn's stage timings and the ``metrics`` messages a ``debug: true`` session gets (loop thread only).

Convai's metrics docs (Live API, ``metrics``; Pipecat's RTVI metrics shape): Form A ``metrics`` with
``data.ttfb`` / ``data.processing``, each a list of ``{processor, model?, value}`` with ``value`` in seconds.
The simulator reports what it measured on its own loop clock for three processors: STT (from the end of the
user's input to the final transcription), the LLM (``bot-llm-started`` to the first text chunk; processing
to ``bot-llm-stopped``) and TTS (from the end of the text to the first audio; processing to the end of the
voice). A ``ttfb`` message goes out when the first text is sent and another when the voice starts; the
``processing`` message goes out before ``bot-turn-completed``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from simulator.core import wire

STT = "ConvaiSTTService"
LLM = "ConvaiLLMService"
TTS = "ConvaiTTSService"
LLM_MODEL = "sim-llm"
TTS_MODEL = "sim-voice"


def _entry(processor: str, value: float, model: str | None = None) -> wire.JsonDict:
    entry: wire.JsonDict = {"processor": processor}
    if model is not None:
        entry["model"] = model
    entry["value"] = round(max(0.0, value), 6)
    return entry


@dataclass
class TurnClock:
    """Loop times of one turn's stages (None: not reached)."""

    stt_seconds: float | None = None
    llm_started: float | None = None
    first_text: float | None = None
    llm_stopped: float | None = None
    tts_started: float | None = None
    first_audio: float | None = None
    audio_done: float | None = None
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)

    def now(self) -> float:
        return self.loop.time()

    def llm_ttfb(self) -> wire.JsonDict:
        """``metrics {ttfb}`` for STT (when the turn had one) and the LLM."""
        assert self.llm_started is not None and self.first_text is not None
        ttfb = [] if self.stt_seconds is None else [_entry(STT, self.stt_seconds)]
        ttfb.append(_entry(LLM, self.first_text - self.llm_started, LLM_MODEL))
        return wire.form_a("metrics", {"ttfb": ttfb})

    def tts_ttfb(self) -> wire.JsonDict:
        """``metrics {ttfb}`` for TTS."""
        assert self.tts_started is not None and self.first_audio is not None
        return wire.form_a("metrics", {"ttfb": [_entry(TTS, self.first_audio - self.tts_started, TTS_MODEL)]})

    def processing(self) -> wire.JsonDict:
        """``metrics {processing}`` for the stages the turn ran."""
        items = [] if self.stt_seconds is None else [_entry(STT, self.stt_seconds)]
        if self.llm_started is not None and self.llm_stopped is not None:
            items.append(_entry(LLM, self.llm_stopped - self.llm_started, LLM_MODEL))
        if self.tts_started is not None and self.audio_done is not None:
            items.append(_entry(TTS, self.audio_done - self.tts_started, TTS_MODEL))
        return wire.form_a("metrics", {"processing": items})
