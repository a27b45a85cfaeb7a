"""Frame budget: what ``client.pump()`` costs a 60 fps pygame-ce loop while the character's voice streams.

Two runs of the same loop, the frame loop and scene of ``examples/pygame_character.py``
(headless: SDL's ``dummy`` video driver and ``disk`` audio driver, so the mixer really mixes, in
real time, into a temporary file), each for ``--seconds``:

(a) empty loop: the scene drawn, its logic ticked and the frame paced, without the SDK (no
    ``pump()``; the client never connects);
(b) SDK loop: connected to an embedded simulator whose character talks all the time (the next line
    is sent as soon as a reply has played out), its voice arriving on ``on_audio`` (MAIN_THREAD) and
    played through the jitter buffer into ``pygame.mixer``; one ``client.pump()`` per frame; the
    mouth follows the voice's loudness;
(c) SDK loop with lip-sync: (b) plus ``blendshape_config`` (ARKit, 61 values per frame, at 60 fps):
    the frames are decoded on the transport's thread into the turn's ``LipSync`` timeline, and every
    frame samples it at the voice player's playback position (``frame_at``, interpolating 61 values)
    to open the mouth.

Reported per run, in milliseconds: ``pump()`` p50/p99/max (the SDK's share of the frame, MAIN_THREAD
handlers included: feeding and resampling the voice is part of it), frame work p50/p99 (everything in
the frame but the pacing wait) and the frame interval p50/p99/max (start to start; 16.7 ms is
on time at 60 fps), plus the seconds of voice played.

    pip install -e '.[simulator,audio,pygame]'
    python bench/frame_budget.py                 # 10 s per run, WebSocket transport
    python bench/frame_budget.py --seconds 20 --transport livekit

No test asserts these numbers; they are for people (the README quotes them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

from _pygame_loop import configure_sdl  # noqa: E402

#: The character's reply in the SDK run: long, so its voice streams for most of the run.
LONG_REPLY = ("Gather round and I will tell you how this forge came to be: my grandmother dug the clay "
              "for it with her own hands, fired it for nine days, and swore that no blade shaped on its "
              "anvil would ever break in a fair fight.")


def measure(seconds: float, fps: float, transport: str) -> dict[str, Any]:
    import pygame
    from _main_thread import ThreadGuard
    from _pygame_loop import init_pygame, run_loop
    from _pygame_scene import Scene
    from _pygame_tour import Voice
    from _pygame_view import SIZE, View

    from convai_sync import BlendshapeConfig, ConvaiClient
    from convai_sync.pygame_voice import VoicePlayer
    from simulator import Simulator

    screen = init_pygame(SIZE, "frame budget")
    if pygame.mixer.get_init() is None:
        raise SystemExit("pygame.mixer did not initialise on SDL's disk audio driver")
    results: dict[str, Any] = {}
    voice = Voice()
    with Simulator(responder=lambda _text: LONG_REPLY, synthesizer=voice, chunk_delay=0.05,
                   transport_default="websocket", websocket_audio=True) as sim:
        # (a) the same loop without the SDK. One guard checks both runs' handlers and pygame calls.
        guard = ThreadGuard()
        with ConvaiClient(sim.client_config(transport=transport)) as idle_client:
            scene = Scene(idle_client, VoicePlayer(guard=guard.check), guard)
            view = View(scene, "frame budget")
            stats = run_loop(screen, fps=fps, handle=scene.handle, tick=scene.tick, draw=view.draw,
                             running=lambda: True, pump=None, max_seconds=seconds, check=guard.check)
        results["empty loop"] = {**stats.summary(), "voice_seconds": 0.0}

        for name, lipsync in (("SDK loop", None), ("+ lip-sync", BlendshapeConfig(format="arkit"))):
            results[name] = talking_run(sim, screen, guard, seconds, fps, transport, lipsync)
        violations = guard.violations()
        if violations:
            raise SystemExit(f"ran off the main thread: {violations}")
    pygame.quit()
    return results


def talking_run(sim: Any, screen: Any, guard: Any, seconds: float, fps: float, transport: str,
                lipsync: Any) -> dict[str, Any]:
    """(b)/(c): the loop with the character speaking all the time; ``lipsync`` a BlendshapeConfig or None."""
    from _pygame_loop import run_loop
    from _pygame_scene import Scene
    from _pygame_view import View

    from convai_sync import ConvaiClient
    from convai_sync.pygame_voice import VoicePlayer

    player = VoicePlayer(guard=guard.check)
    with ConvaiClient(sim.client_config(transport=transport, blendshape_config=lipsync)) as client:
        scene = Scene(client, player, guard)
        view = View(scene, "frame budget")
        client.connect(timeout=30)  # before the loop, as a host may; the tour shows a worker-thread connect
        lines = [0]  # lines sent so far

        def keep_talking(_screen: Any) -> None:
            if scene.state.can_accept_input() and not scene.thinking and not player.busy \
                    and scene.turns_completed >= lines[0]:
                scene.input_text = "Tell me about the forge."
                scene.send_line()
                lines[0] += 1

        stats = run_loop(screen, fps=fps, handle=scene.handle, tick=scene.tick, draw=view.draw,
                         running=lambda: True, pump=client.pump, after_draw=keep_talking, max_seconds=seconds,
                         check=guard.check)
        received = client.diagnostics()["lipsync"]["frames"]
        scene.actions.close()
    return {**stats.summary(), "voice_seconds": round(player.stats.seconds_played, 3),
            "underruns": player.stats.underruns, "late_arrival_underruns": player.stats.late_arrival_underruns,
            "turns": scene.turns_completed,
            "stranded_restarts": player.stats.stranded_restarts,
            "lipsync_frames_rendered": scene.stage.lipsync_frames, "lipsync_frames_received": received}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run (default 10)")
    parser.add_argument("--fps", type=float, default=60.0, help="frame rate (default 60)")
    parser.add_argument("--transport", default="websocket", choices=("websocket", "livekit"))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        configure_sdl(True, Path(tmp) / "mixer.raw")
        results = measure(args.seconds, args.fps, args.transport)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"Frame budget at {args.fps:g} fps, {args.seconds:g} s per run, transport {args.transport} "
          "(milliseconds)")
    print(f"{'loop':11s} {'frames':>6s} {'pump p50':>9s} {'pump p99':>9s} {'pump max':>9s} {'work p50':>9s} "
          f"{'work p99':>9s} {'intvl p50':>9s} {'intvl p99':>9s} {'intvl max':>9s} {'voice s':>8s}")
    for name, r in results.items():
        pump = r["pump_ms"]
        cells = ("-", "-", "-") if not pump["n"] else (f"{pump['p50']:.3f}", f"{pump['p99']:.3f}",
                                                       f"{pump['max']:.3f}")
        print(f"{name:11s} {r['frames']:6d} {cells[0]:>9s} {cells[1]:>9s} {cells[2]:>9s} "
              f"{r['work_ms']['p50']:9.3f} {r['work_ms']['p99']:9.3f} {r['interval_ms']['p50']:9.2f} "
              f"{r['interval_ms']['p99']:9.2f} {r['interval_ms']['max']:9.2f} {r['voice_seconds']:8.2f}")
    lip = results["+ lip-sync"]
    print(f"lip-sync run: {lip['lipsync_frames_received']} frames received, the mouth drawn from them in "
          f"{lip['lipsync_frames_rendered']} video frames")
    sdk = results["SDK loop"]
    print(f"SDK run: {sdk['turns']} replies, {sdk['events_pumped']} events pumped, {sdk['underruns']} underruns "
          f"({sdk['late_arrival_underruns']} on audio that reached the SDK late), "
          f"{sdk['stranded_restarts']} queued sounds restarted (pygame's mixer race; convai_sync/pygame_voice.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
