"""Talk to a Convai character with your voice: speak a WAV to it, save its spoken reply as a WAV.

Run with no arguments to use an embedded local simulator over LiveKit (no account needed); the
user's voice is a generated one-second tone unless you give a WAV (PCM16):

    python examples/voice_chat.py
    python examples/voice_chat.py --input me.wav --output reply.wav --transport websocket

Or talk through your sound devices (``pip install 'convai-sync[devices,livekit]'``): a microphone
instead of the WAV, the character's voice on your speakers too:

    python examples/voice_chat.py --list-devices
    python examples/voice_chat.py --input-device default --output-device default

Set CONVAI_API_KEY and CONVAI_CHARACTER_ID (and optionally CONVAI_URL) to talk to the real
service instead. The script prints what the character heard and what it said, writes the
character's voice to ``--output`` and prints its duration.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import math
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
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
ECHO_HELP = """\
Echo cancellation: when both --input-device and --output-device are given, the microphone's audio
goes through WebRTC's echo cancellation, noise suppression and gain control, with what the
speakers play as the echo to remove, so the character does not hear (and interrupt) itself on a
laptop without a headset. It needs the livekit package (pip install 'convai-sync[livekit]'), on
either transport; without it the script says so and goes on unprocessed. --no-echo-cancellation
turns it off."""
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


def device(value: str) -> int | str | None:
    """A device as the command line names it: an index, a name, or "default"."""
    return None if value == "default" else int(value) if value.isdigit() else value


def list_sound_devices() -> int:
    from convai_sync.devices import list_devices

    for info in list_devices():
        kinds = [f"{n} {kind}" for n, kind in ((info.max_input_channels, "in"), (info.max_output_channels, "out")) if n]
        default = [name for flag, name in ((info.is_default_input, "default input"),
                                           (info.is_default_output, "default output")) if flag]
        print(f"{info.index:3}  {info.name}  ({', '.join(kinds)}; {info.host_api}"
              f"{'; ' + ', '.join(default) if default else ''})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=ECHO_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, help="a PCM16 WAV of what you say (default: a generated tone)")
    parser.add_argument("--output", type=Path, default=Path("character_reply.wav"),
                        help="where the character's voice is written (default: %(default)s)")
    parser.add_argument("--transport", choices=("livekit", "websocket"), default="livekit")
    parser.add_argument("--simulator", action="store_true", help="use the simulator even if credentials are set")
    parser.add_argument("--list-devices", action="store_true", help="list the sound devices and exit")
    parser.add_argument("--input-device", metavar="DEVICE",
                        help="speak into this microphone (index or name from --list-devices, or 'default') "
                             "instead of the WAV")
    parser.add_argument("--output-device", metavar="DEVICE",
                        help="play the character's voice on this output device too (index, name or 'default')")
    parser.add_argument("--no-echo-cancellation", action="store_true",
                        help="send the microphone's audio unprocessed even when the speakers play")
    args = parser.parse_args(argv)
    try:
        if args.list_devices:
            return list_sound_devices()
        return run(args)
    except (ImportError, OSError) as exc:  # no sounddevice / livekit, or a device missing or busy
        print(f"Sound devices: {exc}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    live = args.input_device is not None

    with tempfile.TemporaryDirectory() as tmp:
        options = {"websocket_audio": True}  # the simulator's /chat sends the voice only when asked
        if live:
            print("You say: what the microphone hears")
        else:
            source = args.input
            if source is None:
                source = Path(tmp) / "tone.wav"
                write_tone(source)
            said = AudioClip.read_wav(source)
            print(f"You say: {source.name} ({said.duration:.2f} s, {said.sample_rate} Hz)")
        with service(args.simulator, simulator_options=options, transport=args.transport) as config, \
                ConvaiClient(config) as client, devices(client, args) as speak:
            if speak is None:
                def speak() -> None:
                    client.send_audio(said.pcm, said.sample_rate, said.num_channels)
            return talk(client, speak, args.output)


@contextlib.contextmanager
def devices(client: ConvaiClient, args: argparse.Namespace) -> Iterator[Callable[[], None] | None]:
    """Open the speaker (``--output-device``) and the microphone (``--input-device``); yield how to
    start speaking (None without a microphone). The speaker plays out what it holds before it closes."""
    if args.input_device is None and args.output_device is None:
        yield None
        return
    from convai_sync.devices import Microphone, Speaker, find_device

    # A missing or ambiguous device fails here, before the session starts.
    if args.input_device is not None:
        print(f"Your microphone: {find_device(device(args.input_device), 'input').name}")
    if args.output_device is not None:
        print(f"Your speaker: {find_device(device(args.output_device), 'output').name}")
    speaker = None if args.output_device is None else Speaker(device=device(args.output_device))
    mic = None if args.input_device is None else Microphone(
        RATE, device=device(args.input_device), echo_cancellation=False if args.no_echo_cancellation else None)
    try:
        if speaker is not None:
            speaker.attach(client)
        if mic is None:
            yield None
        else:
            def speak() -> None:
                mic.stream_to(client)
                state = "on" if mic.echo_canceller is not None else "off"
                print(f"Listening (echo cancellation {state}): say something")
            yield speak
        if speaker is not None:
            time.sleep(min(speaker.buffered_seconds + 0.2, TURN_TIMEOUT))  # let it play out what it holds
    finally:
        if mic is not None:
            mic.stop()
        if speaker is not None:
            speaker.close()


def talk(client: ConvaiClient, speak: Callable[[], None], output: Path) -> int:
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
        speak()
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
