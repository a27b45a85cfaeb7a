"""A newcomer's first script, written from the README's "Install from a wheel or PyPI" section only.

Run by tests/test_wheel_newcomer.py with the built wheel installed in a fresh virtual environment
outside the repository: it asks the simulator's character a question with voice on both transports,
prints the reply, the client's state and the audio clip, and plays the voice through the packaged
pygame player on SDL's dummy drivers. Everything it prints must be short and readable.
"""

from __future__ import annotations

import os
import sys

from convai_sync import loopback

loopback.ensure_loopback_preload()  # the README: LiveKit on a loopback-only machine (re-executes once)

os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # no sound card or display in CI
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame  # noqa: E402

from convai_sync import ConvaiClient, EventDeliveryPolicy  # noqa: E402
from convai_sync.pygame_voice import VoicePlayer  # noqa: E402
from simulator import Simulator  # noqa: E402

#: Seconds the game loop may run past the clip's own length before the script gives up.
PLAY_SLACK = 5.0


def play(client: ConvaiClient, player: VoicePlayer, seconds: float) -> float:
    """Run a 60 fps game loop until the voice has played (or ``seconds`` pass); returns seconds played."""
    clock = pygame.time.Clock()
    waited = 0.0
    client.pump()  # the MAIN_THREAD on_audio handlers run here: the player takes the reply's frames
    while (player.busy or not player.stats.seconds_played) and waited < seconds:
        client.pump()
        player.update()
        waited += clock.tick(60) / 1000
    return player.stats.seconds_played


def main() -> int:
    pygame.mixer.init(frequency=44100, size=-16, channels=2)
    print(f"convai_sync from {os.path.dirname(sys.modules['convai_sync'].__file__ or '?')}")
    with Simulator(websocket_audio=True) as sim:  # the simulator's WebSocket speaks only when asked
        for transport in ("websocket", "livekit"):
            with ConvaiClient(sim.client_config(transport=transport)) as client:
                player = VoicePlayer()
                client.events.on_audio.subscribe(player.feed, EventDeliveryPolicy.MAIN_THREAD)
                client.connect()
                reply = client.ask("Hello!", timeout=30)
                print(f"{transport}: {client.state}")
                print(reply)
                print(reply.audio)
                if reply.audio is None:
                    print("no voice came")
                    return 1
                played = play(client, player, reply.audio.duration + PLAY_SLACK)
                print(f"played {played:.1f} s of voice through pygame.mixer")
    pygame.mixer.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
