"""Talk to a Convai character with your voice: speak a WAV to it, save its spoken reply as a WAV.

Run with no arguments to use an embedded local simulator over LiveKit (no account needed); the
user's voice is a generated one-second tone unless you give a WAV (PCM16):

    python examples/voice_chat.py
    python examples/voice_chat.py --input me.wav --output reply.wav --transport websocket

Set CONVAI_API_KEY and CONVAI_CHARACTER_ID (and optionally CONVAI_URL) to talk to the real
service instead. The script prints what the character heard and what it said, writes the
character's voice to ``--output`` and prints its duration.
"""

from __future__ import annotations

import argparse
import array
import math
import sys
import tempfile
import threading
import time
from pathlib import Path

from _service import service

from convai_sync import (
    AudioClip,
    AudioFrame,
    BotText,
    BotTurnCompleted,
    ConvaiClient,
    ConvaiError,
    EventDeliveryPolicy,
    FinalUserTranscription,
    ServerMessage,
    UserTranscription,
)

RATE = 16000
TURN_TIMEOUT = 30.0
#: On LiveKit the voice's last packets can trail bot-turn-completed: collect until it goes quiet
#: for longer than the SDK's tail (0.5 s).
QUIET = 0.6


def write_tone(path: Path, seconds: float = 1.0, hz: float = 440.0) -> None:
    """A stand-in for a recorded voice: ``seconds`` of a tone, then 0.7 s of silence so the
    character's voice activity detection hears the utterance end (PCM16 mono WAV)."""
    tone = array.array("h", (int(8000 * math.sin(2 * math.pi * hz * i / RATE)) for i in range(int(seconds * RATE))))
    silence = array.array("h", bytes(2 * int(0.7 * RATE)))
    if sys.byteorder != "little":
        tone.byteswap()
    AudioClip(tone.tobytes() + silence.tobytes(), RATE, 1).write_wav(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="a PCM16 WAV of what you say (default: a generated tone)")
    parser.add_argument("--output", type=Path, default=Path("character_reply.wav"),
                        help="where the character's voice is written (default: %(default)s)")
    parser.add_argument("--transport", choices=("livekit", "websocket"), default="livekit")
    parser.add_argument("--simulator", action="store_true", help="use the simulator even if credentials are set")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        source = args.input
        if source is None:
            source = Path(tmp) / "tone.wav"
            write_tone(source)
        said = AudioClip.read_wav(source)
        print(f"You say: {source.name} ({said.duration:.2f} s, {said.sample_rate} Hz)")
        options = {"websocket_audio": True}  # the simulator's /chat sends the voice only when asked
        with service(args.simulator, simulator_options=options, transport=args.transport) as config, \
                ConvaiClient(config) as client:
            return talk(client, said, args.output)


def talk(client: ConvaiClient, said: AudioClip, output: Path) -> int:
    voice: list[AudioFrame] = []
    reply: list[str] = []
    heard: list[str] = []
    done = threading.Event()
    more = threading.Event()

    def on_audio(frame: AudioFrame) -> None:
        voice.append(frame)
        more.set()

    def on_message(message: ServerMessage) -> None:
        if isinstance(message, (UserTranscription, FinalUserTranscription)) and not heard:
            if getattr(message, "final", True):
                heard.append(message.text)
                print(f"Character heard: {message.text}")
        elif isinstance(message, BotText):
            reply.append(message.text)
        elif isinstance(message, BotTurnCompleted):
            done.set()

    # IMMEDIATE: quick appends on the SDK's thread, in order with the messages.
    client.events.on_audio.subscribe(on_audio, EventDeliveryPolicy.IMMEDIATE)
    client.events.on_message.subscribe(on_message, EventDeliveryPolicy.IMMEDIATE)
    try:
        client.connect()
        client.send_audio(said.pcm, said.sample_rate, said.num_channels)
        if not done.wait(TURN_TIMEOUT):
            print(f"No reply within {TURN_TIMEOUT:g} s", file=sys.stderr)
            return 1
        more.clear()
        give_up = time.monotonic() + TURN_TIMEOUT
        while more.wait(QUIET) and time.monotonic() < give_up:
            more.clear()
    except ConvaiError as exc:
        print(f"Error: {exc.error_code.value}: {exc}", file=sys.stderr)
        return 1
    print(f"Character: {''.join(reply)}")
    clip = AudioClip.from_frames([f for f in voice if f.turn_id is not None])
    if clip is None:
        print("The character's voice did not come (is TTS on?)", file=sys.stderr)
        return 1
    clip.write_wav(output)
    print(f"Character's voice: {output} ({clip.duration:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
