"""Talk to a Convai character from a pygame-ce game loop (voice, subtitles and the session events).

A real game host: one 60 fps loop on the main thread, and pygame touched from that thread only.

* Every SDK event is subscribed with ``EventDeliveryPolicy.MAIN_THREAD`` and delivered by one
  ``client.pump()`` per frame, so handlers run between frames on the main thread; a
  ``ThreadGuard`` records the thread of every handler and every pygame call site and the run
  fails if any ran elsewhere.
* Nothing in the frame blocks on the SDK: lines are sent with ``send_text`` (returns at once), the
  voice clip with small real-time ``send_audio`` pieces, and ``connect()`` runs on a worker thread
  whose progress the HUD shows.
* It shows the three examples of Convai's "Session events" documentation: a proctor HUD that
  dims while the session is not CONNECTED, a session error banner with the recoverability branch
  ("reconnecting…" vs "reload", plus "Please wait…" while waiting for a concurrency slot), and an
  idle-warning countdown that any key press answers with ``reset_idle_timer()``.
* The reply streams in as subtitles (``on_bot_text``) and the character's voice (``on_audio``)
  plays through ``pygame.mixer`` via a small bounded jitter buffer (``convai_sync.pygame_voice.VoicePlayer``).

* It is a small game with the simulator's shipped shopkeeper: the character walks to the objects her
  actions name (``ActionConfig`` of the shop, drained from an ``ActionQueue`` each frame), her mouth
  moves with the lip-sync frames of her voice (``BlendshapeConfig(format="arkit")``, sampled at the
  voice player's playback position at 60 fps), and the HUD shows the story's narrative section.

Keys: type and press Enter to talk; F2 sends the voice clip (``--voice-clip``); F3 interrupts the
character; F5 reloads; F6 fires the story's next narrative trigger; F9 or a click dismisses the
banner; Esc quits.

    pip install -e '.[simulator,audio,pygame]'
    python examples/pygame_character.py                 # an embedded simulator, no account needed
    CONVAI_API_KEY=... CONVAI_CHARACTER_ID=... python examples/pygame_character.py   # the real service

The scripted tour (for CI and the README's screenshots) drives the scene itself against an
embedded simulator: a concurrency limit, a conversation with voice, a story trigger, the
shopkeeper acting on the sword while she talks, an idle warning, a
``SERVER_SHUTDOWN`` drop and its reconnect, and a non-recoverable error. Headless means no window
and no sound card (SDL's ``dummy`` video and ``disk`` audio drivers; the mixer's output goes to
``--audio-out``):

    python examples/pygame_character.py --headless --seconds 30 --screenshots docs/images/pygame
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from _pygame_loop import configure_sdl

from convai_sync import AudioClip, BlendshapeConfig, ConvaiClient, ReconnectPolicy, SlotWaitPolicy

FPS = 60.0
DEFAULT_CLIP = Path(__file__).resolve().parent / "assets" / "player_hello.wav"
log = logging.getLogger("examples.pygame_character")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headless", action="store_true",
                        help="no window, no sound card: run the scripted tour (SDL dummy video, disk audio)")
    parser.add_argument("--tour", action="store_true", help="run the scripted tour (implied by --headless)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="stop after this many seconds (the tour fails if it has not finished by then)")
    parser.add_argument("--screenshots", type=Path, default=None, help="directory for the tour's PNGs")
    parser.add_argument("--audio-out", type=Path, default=None,
                        help="headless: file the mixer writes what it plays to (raw PCM in the mixer's format)")
    parser.add_argument("--report", type=Path, default=None, help="write a JSON report of the run here")
    parser.add_argument("--voice-clip", type=Path, default=DEFAULT_CLIP, help="WAV file F2 sends (PCM16)")
    parser.add_argument("--simulator", action="store_true", help="use the simulator even if credentials are set")
    parser.add_argument("--transport", default="websocket", choices=("websocket", "livekit"),
                        help="the SDK transport (default websocket)")
    parser.add_argument("--fps", type=float, default=FPS, help="frame rate (default 60)")
    args = parser.parse_args(argv)
    args.tour = args.tour or args.headless
    if args.seconds is not None and args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


def load_clip(path: Path) -> AudioClip | None:
    try:
        return AudioClip.read_wav(path)
    except (OSError, ValueError, EOFError) as exc:
        log.warning("voice clip %s not loaded: %s", path, exc)
        return None


def tour_simulator(voice: Any) -> Any:
    """The tour's simulator: one concurrency slot, the shipped shopkeeper (her story, actions and
    lip-sync), paced, with a synthetic voice."""
    from _pygame_tour import respond

    from simulator import Simulator, shipped_character

    return Simulator(concurrency_limit=1, responder=respond, synthesizer=voice, chunk_delay=0.08,
                     transport_default="websocket", websocket_audio=True,
                     characters_file=shipped_character("shopkeeper"))


def game_overrides() -> dict[str, Any]:
    """The game's character settings: the shop's actions and objects, lip-sync frames (ARKit, whose
    ``jawOpen`` the mouth follows) at 60 fps, and the story's template keys."""
    from _pygame_stage import SHOP_ACTIONS

    return {"action_config": SHOP_ACTIONS, "blendshape_config": BlendshapeConfig(format="arkit", output_fps=60),
            "narrative_template_keys": {"player_name": "Ada", "sword_price": "30"}}


def tour_overrides(transport: str) -> dict[str, Any]:
    # Quick retries so the tour is short; SERVER_SHUTDOWN still waits a visible second before
    # reconnecting (the real advice is 5 s, ReconnectPolicy's default).
    return {"transport": transport, "slot_wait": SlotWaitPolicy(max_wait=20.0, interval=0.4),
            "reconnect_policy": ReconnectPolicy(delays=(0.3,), server_shutdown_delay=1.0),
            **game_overrides()}


def run(args: argparse.Namespace) -> int:
    import pygame
    from _main_thread import ThreadGuard
    from _pygame_loop import init_pygame, run_loop
    from _pygame_scene import Scene
    from _pygame_tour import Tour, Voice
    from _pygame_view import LAYOUT, SIZE, View
    from _service import service

    from convai_sync.pygame_voice import VoicePlayer, mixer_format

    guard = ThreadGuard()
    guard.check("init_pygame")
    screen = init_pygame(SIZE, "convai_sync · pygame character")
    player = VoicePlayer(guard=guard.check) if pygame.mixer.get_init() else None
    clip = load_clip(args.voice_clip)
    voice = Voice()
    report: dict[str, Any] = {"transport": args.transport, "fps": args.fps, "layout": LAYOUT}
    if player is not None:
        report["mixer"] = dict(zip(("frequency", "size", "channels"), mixer_format(), strict=True))
    tour: Tour | None = None
    with contextlib.ExitStack() as stack:  # unwinds: tour, then client, then simulator
        if args.tour:
            sim = stack.enter_context(tour_simulator(voice))
            config = sim.client_config(**tour_overrides(args.transport))
            character = "Mira (simulator)"
        else:
            from simulator import shipped_character

            # Used when no credentials are set: the shipped shopkeeper, her story, actions and lip-sync.
            embedded = {"chunk_delay": 0.05, "websocket_audio": True,
                        "characters_file": shipped_character("shopkeeper")}
            config = stack.enter_context(service(args.simulator, simulator_options=embedded, transport=args.transport,
                                                 slot_wait=SlotWaitPolicy(max_wait=300.0, interval=5.0),
                                                 **game_overrides()))
            character = config.character_id[:24]
        client = stack.enter_context(ConvaiClient(config))
        scene = Scene(client, player, guard, clip)
        view = View(scene, character)
        if args.tour:
            tour = Tour(sim, scene, args.screenshots, view=view)
            stack.callback(tour.close)
        else:
            scene.connector.start()  # on a worker thread: the loop runs (and shows progress) meanwhile
        stack.callback(scene.close, 2.0)
        stats = run_loop(screen, fps=args.fps, handle=scene.handle, tick=scene.tick, draw=view.draw,
                         running=lambda: scene.running, pump=client.pump,
                         after_draw=tour.tick if tour is not None else None, max_seconds=args.seconds,
                         check=guard.check)
        report["frames"] = stats.summary()
        report["events"] = client.diagnostics().get("events")
    return finish(args, report, stats, scene, player, voice, tour, guard)


def finish(args: argparse.Namespace, report: dict[str, Any], stats: Any, scene: Any, player: Any, voice: Any,
           tour: Any, guard: Any) -> int:
    """Check the run (tour finished, main thread only, no handler errors), write the report, say so."""
    import pygame

    guard.check("pygame.quit")
    pygame.quit()
    failures: list[str] = []
    if tour is not None:
        report["tour"] = {"done": tour.done, "failed": tour.failed, "screenshots": tour.screenshots,
                          "timeline": tour.timeline}
        if not tour.done:
            failures.append(f"the tour did not finish: {tour.failed or 'out of time (--seconds)'}")
    report["audio"] = {"synthesized_seconds": round(voice.seconds, 4), "utterances": voice.utterances,
                       "player": player.stats.as_dict() if player is not None else None}
    report["scene"] = {"turns_completed": scene.turns_completed, "slot_waits": scene.slot_waits,
                       "reconnects": scene.reconnects, "handler_errors": scene.handler_errors,
                       "connect_outcome": scene.connector.outcome, "final_state": scene.state.name,
                       "sections": scene.section_changes, "section": scene.section,
                       "triggers_fired": scene.triggers_fired, "performed": scene.stage.performed,
                       "given": scene.stage.given, "lipsync_frames": scene.stage.lipsync_frames,
                       "max_lipsync_mouth": round(scene.stage.max_lipsync_mouth, 3)}
    violations = guard.violations()
    report["threads"] = {"owner": guard.owner.name, "sites": guard.sites(), "violations": violations}
    if violations:
        failures.append(f"ran off the main thread: {violations}")
    if scene.handler_errors:
        failures.append(f"handler errors: {scene.handler_errors}")
    if args.report is not None:
        args.report.write_text(json.dumps(report, indent=2, default=str))
    summary = stats.summary()
    print(f"{summary['frames']} frames at {args.fps:g} fps; pump() p50 {summary['pump_ms']['p50']:.3f} ms, "
          f"p99 {summary['pump_ms']['p99']:.3f} ms; frame work p99 {summary['work_ms']['p99']:.2f} ms; "
          f"longest frame {summary['interval_ms']['max']:.1f} ms")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"OK: every handler and pygame call ran on {guard.owner.name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.screenshots is not None:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pygame-character-") as scratch:
        # Headless, the mixer's output goes to --audio-out, else to a file deleted on exit.
        audio_out = args.audio_out or (Path(scratch) / "mixer.raw" if args.headless else None)
        configure_sdl(args.headless, audio_out)
        return run(args)


if __name__ == "__main__":
    sys.exit(main())
