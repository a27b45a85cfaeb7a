"""The shop the character acts in (main thread only): where things stand, the character walking to the
objects its actions name, what it holds, and how wide its mouth opens.

* Actions come from an ``ActionQueue`` drained once per frame (``pop_ready()``), and run one after the
  other: ``Move To X`` walks to X, ``Pick Up X`` walks to X and takes it, ``Give X`` walks to the player
  and hands X over. A target that is not in the shop (the speaker: "me", "here") is the player. An
  interruption does not cancel actions already delivered (Convai "Character actions").
* The mouth follows the turn's lip-sync frames (``client.lipsync.frame_for(player)``: the frame at the
  voice player's playback position, so it moves in time with the voice), falling back to the voice's
  loudness when no frames come. Which value is the mouth depends on the format: ``arkit`` has
  ``jawOpen`` (PROPOSED Live Link Face layout), ``visemes`` the open vowels; ``mha`` and ``cc4_extended``
  publish no names, so the scene does not guess and uses the loudness.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from convai_sync import Action, ActionConfig, LipSync, SceneCharacter, SceneObject
from convai_sync.lipsync import ARKIT_NAMES, VISEME_NAMES, PlaybackClock

#: Where things stand: x in pixels inside the stage region.
POSITIONS = {"door": 40.0, "Guard": 70.0, "counter": 200.0, "sword": 330.0, "shield": 410.0, "potion": 490.0,
             "player": 590.0}
#: The shop's things the character may act on (what the game sends as ``action_config``).
SHOP_ACTIONS = ActionConfig(
    actions=("Move To", "Pick Up", "Give"),
    objects=(SceneObject("sword", "a rusty sword on the wall"), SceneObject("shield", "a wooden shield"),
             SceneObject("potion", "a red healing potion"), SceneObject("counter", "the shop counter"),
             SceneObject("door", "the shop door")),
    characters=(SceneCharacter("Guard", "the town guard by the door"),),
    current_attention_object="sword")
WALK_PIXELS_PER_SECOND = 220.0
_JAW = ARKIT_NAMES.index("jawOpen")
_VOWELS = tuple(VISEME_NAMES.index(k) for k in ("aa", "e", "ih", "oh", "ou"))
#: Voice loudness (RMS, 0..1) that opens the mouth fully when no lip-sync frames come.
FULL_OPEN_LEVEL = 0.2


def mouth_opening(fmt: str, frame: tuple[float, ...]) -> float | None:
    """How open the mouth is (0..1) in one lip-sync frame, or None when the format names no mouth value."""
    if fmt == "arkit" and len(frame) > _JAW:
        return max(0.0, min(1.0, frame[_JAW]))
    if fmt == "visemes" and len(frame) == len(VISEME_NAMES):
        return max(0.0, min(1.0, max(frame[i] for i in _VOWELS)))
    return None


@dataclass
class Deed:
    """One action in progress: where the character walks, and what happens when it gets there."""

    action: Action
    to: float


class Stage:
    """The character's body in the shop. Call :meth:`tick` once per frame (main thread)."""

    def __init__(self) -> None:
        self.x = POSITIONS["counter"]
        self.facing = 1
        self.holding: str | None = None
        self.given: list[str] = []
        self.performed: list[str] = []
        self.pending: collections.deque[Action] = collections.deque()
        self.deed: Deed | None = None
        self.mouth = 0.0
        self.lipsync_frames = 0  # frames the mouth took from lip-sync (not from loudness)
        self.max_lipsync_mouth = 0.0
        self.taken: set[str] = set()

    @property
    def acting(self) -> bool:
        return self.deed is not None or bool(self.pending)

    def take(self, actions: list[Action]) -> None:
        self.pending.extend(actions)

    def _target_x(self, action: Action) -> float:
        if action.name == "Give":
            return POSITIONS["player"]
        return POSITIONS.get(action.target or "", POSITIONS["player"])

    def tick(self, dt: float) -> None:
        """Walk towards the current deed's spot; start the next one when it is done."""
        if self.deed is None and self.pending:
            action = self.pending.popleft()
            self.deed = Deed(action, self._target_x(action))
        deed = self.deed
        if deed is None:
            return
        step = WALK_PIXELS_PER_SECOND * max(0.0, dt)
        gap = deed.to - self.x
        if abs(gap) > step:
            self.facing = 1 if gap > 0 else -1
            self.x += step * self.facing
            return
        self.x = deed.to
        action = deed.action
        if action.name == "Pick Up" and action.target:
            self.holding = action.target
            self.taken.add(action.target)
        elif action.name == "Give":
            item = action.target if action.target in POSITIONS else self.holding
            if item is not None:
                self.given.append(item)
                self.taken.add(item)
                if self.holding == item:
                    self.holding = None
        self.performed.append(f"{action.name} {action.target or ''}".strip())
        self.deed = None

    def animate_mouth(self, lipsync: LipSync | None, player: PlaybackClock | None, level: float) -> None:
        """Set :attr:`mouth` from the lip-sync frame at the voice's playback position, else the loudness."""
        opening: float | None = None
        if lipsync is not None and player is not None:
            position = player.playback_position(lipsync.turn_id)
            if position is not None:
                opening = mouth_opening(lipsync.format, lipsync.frame_at(position))
        if opening is None:
            self.mouth = max(0.0, min(1.0, level / FULL_OPEN_LEVEL))
            return
        self.mouth = opening
        self.lipsync_frames += 1
        self.max_lipsync_mouth = max(self.max_lipsync_mouth, opening)
