"""Draws the scene (``_pygame_scene.Scene``) with pygame: every function here runs on the main thread.

The layout is fixed (:data:`LAYOUT`, in pixels of a 640 x 360 window) so a test can look at one
region of a screenshot (the HUD, the banner, the countdown) and compare it with the same region of
an idle frame.
"""

from __future__ import annotations

import math

import pygame
from _pygame_scene import Scene
from _pygame_stage import POSITIONS

from convai_sync import SessionState

SIZE = (640, 360)
#: Regions as (x, y, width, height).
LAYOUT: dict[str, tuple[int, int, int, int]] = {
    "hud": (0, 0, 640, 44),
    "section": (330, 22, 175, 22),
    "banner": (0, 44, 640, 36),
    "stage": (0, 80, 640, 168),
    "countdown": (436, 92, 192, 66),
    "subtitles": (20, 250, 600, 62),
    "input": (0, 316, 640, 44),
}
#: Banner background per kind; the test checks a banner by its hue.
BANNER_COLOURS = {"please_wait": (46, 104, 196), "recoverable": (214, 142, 28), "fatal": (184, 38, 38)}
BACKGROUND = (22, 26, 34)
MOUTH = (110, 40, 50)
HUD_PANEL = (36, 92, 132)
STATE_LAMPS = {SessionState.CONNECTED: (70, 210, 110), SessionState.CONNECTING: (230, 190, 60),
               SessionState.RECONNECTING: (230, 150, 40), SessionState.DISCONNECTING: (150, 150, 150),
               SessionState.DISCONNECTED: (120, 120, 120), SessionState.ERROR: (220, 60, 60)}


def _wrap(font: pygame.font.Font, text: str, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if font.size(trial)[0] <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


class View:
    """Renders a :class:`Scene` onto the display surface; create it after ``pygame.init()``."""

    def __init__(self, scene: Scene, character_name: str) -> None:
        self.scene = scene
        self.character_name = character_name
        scene.guard.check("View.__init__")
        self.font = pygame.font.Font(None, 24)
        self.small = pygame.font.Font(None, 19)
        self.big = pygame.font.Font(None, 34)
        self.rects = {name: pygame.Rect(r) for name, r in LAYOUT.items()}
        self.frame = 0
        self.mouth_rect = (0, 0, 0, 0)  # where the mouth was last drawn (x, y, w, h), for the tour's checks

    def draw(self, screen: pygame.Surface) -> None:
        self.scene.guard.check("View.draw")
        self.frame += 1
        screen.fill(BACKGROUND)
        self._stage(screen)
        self._hud(screen)
        self._banner(screen)
        self._countdown(screen)
        self._subtitles(screen)
        self._input(screen)

    def _text(self, screen: pygame.Surface, font: pygame.font.Font, text: str, pos: tuple[int, int],
              colour: tuple[int, int, int] = (235, 235, 235)) -> None:
        screen.blit(font.render(text, True, colour), pos)

    def _hud(self, screen: pygame.Surface) -> None:
        """The proctor HUD: full brightness while CONNECTED, dimmed otherwise."""
        scene = self.scene
        rect = self.rects["hud"]
        panel = pygame.Surface(rect.size)
        panel.fill(HUD_PANEL)
        lamp = STATE_LAMPS.get(scene.state, (120, 120, 120))
        pygame.draw.circle(panel, lamp, (22, rect.height // 2), 9)
        self._text(panel, self.font, f"PROCTOR · {self.character_name}", (40, 7))
        status = scene.state.name
        player = scene.player
        if player is not None:
            status += f"   voice buffer {player.buffered_seconds * 1000:4.0f} ms"
        self._text(panel, self.small, status, (40, 26), (200, 225, 240))
        session = scene.client.session_id
        self._text(panel, self.small, f"session {session[:8]}…" if session else "no session", (510, 16),
                   (200, 225, 240))
        section = LAYOUT["section"]
        self._text(panel, self.small, f"story: {scene.section or '-'}", (section[0], section[1] + 4), (255, 236, 170))
        alpha = round(255 * (1.0 - scene.hud_brightness))
        if alpha:
            shade = pygame.Surface(rect.size, pygame.SRCALPHA)
            shade.fill((0, 0, 0, alpha))
            panel.blit(shade, (0, 0))
        screen.blit(panel, rect.topleft)

    def _banner(self, screen: pygame.Surface) -> None:
        banner = self.scene.banner
        if banner is None:
            return
        rect = self.rects["banner"]
        pygame.draw.rect(screen, BANNER_COLOURS[banner.kind], rect)
        lines = _wrap(self.small, banner.text, rect.width - 24)[:2]
        top = rect.y + (rect.height - 15 * len(lines)) // 2
        for i, line in enumerate(lines):
            self._text(screen, self.small, line, (rect.x + 12, top + 15 * i), (255, 255, 255))

    def _stage(self, screen: pygame.Surface) -> None:
        """The shop: its things on their spots, the character where its actions took it, its mouth
        opening with the lip-sync frames (or the voice's loudness), dots while it thinks."""
        scene = self.scene
        stage = scene.stage
        rect = self.rects["stage"]
        floor = rect.bottom - 18
        pygame.draw.line(screen, (60, 54, 48), (rect.x, floor), (rect.right, floor), 3)
        self._shop(screen, rect, floor)
        counter = rect.x + round(POSITIONS["counter"])
        centre = (rect.x + round(stage.x), rect.centery - 2)
        available = scene.state is SessionState.CONNECTED
        skin = (226, 178, 120) if available else (120, 104, 90)
        pygame.draw.rect(screen, (70, 96, 140), (centre[0] - 24, centre[1] + 40, 48, floor - centre[1] - 40),
                         border_radius=10)
        pygame.draw.circle(screen, skin, centre, 44)
        for dx in (-15, 15):
            pygame.draw.circle(screen, (40, 40, 50), (centre[0] + dx + 4 * stage.facing, centre[1] - 12), 5)
        opening = 3 + round(stage.mouth * 24)
        mouth = pygame.Rect(0, 0, 32, opening)
        mouth.center = (centre[0] + 3 * stage.facing, centre[1] + 20)
        pygame.draw.ellipse(screen, MOUTH, mouth)
        self.mouth_rect = (mouth.x, mouth.y, mouth.width, mouth.height)
        pygame.draw.rect(screen, (110, 80, 50), (counter - 44, floor - 44, 88, 44))  # in front of her
        if stage.holding is not None:
            self._item(screen, stage.holding, (centre[0] + 34 * stage.facing, centre[1] + 52))
        for i, item in enumerate(stage.given):
            self._item(screen, item, (rect.x + round(POSITIONS["player"]) - 10 + 14 * i, floor - 30))
        label = "thinking" if scene.thinking else ("speaking" if scene.speaking else "")
        if label:
            dots = "." * (1 + (self.frame // 12) % 3)
            self._text(screen, self.small, label + dots, (centre[0] + 48, centre[1] - 44), (210, 210, 160))
        if stage.deed is not None:
            deed = stage.deed.action
            self._text(screen, self.small, f"{deed.name} {deed.target or ''}", (centre[0] + 48, centre[1] - 28),
                       (150, 230, 150))
        # The player's line, left of the idle countdown's spot (x < 436), so that region stays as when idle.
        for i, line in enumerate(_wrap(self.small, scene.user_line, 190)[:2]):
            self._text(screen, self.small, line, (rect.x + 236, rect.y + 4 + 16 * i), (160, 200, 255))

    def _shop(self, screen: pygame.Surface, rect: pygame.Rect, floor: int) -> None:
        """The door and the guard, and the wares not yet taken (the counter is drawn over the character)."""
        door = rect.x + round(POSITIONS["door"])
        pygame.draw.rect(screen, (80, 60, 40), (door - 22, floor - 110, 44, 110))
        guard = rect.x + round(POSITIONS["Guard"])
        pygame.draw.circle(screen, (150, 150, 170), (guard, floor - 80), 14)
        pygame.draw.rect(screen, (90, 90, 110), (guard - 12, floor - 66, 24, 66))
        for item in ("sword", "shield", "potion"):
            if item not in self.scene.stage.taken:
                self._item(screen, item, (rect.x + round(POSITIONS[item]), floor - 50))
            self._text(screen, self.small, item, (rect.x + round(POSITIONS[item]) - 16, floor + 2), (150, 150, 150))
        self._text(screen, self.small, "you", (rect.x + round(POSITIONS["player"]) - 12, floor + 2), (160, 200, 255))

    def _item(self, screen: pygame.Surface, item: str, at: tuple[int, int]) -> None:
        x, y = at
        if item == "sword":
            pygame.draw.line(screen, (200, 200, 215), (x, y - 26), (x, y + 14), 4)
            pygame.draw.line(screen, (150, 110, 50), (x - 9, y + 6), (x + 9, y + 6), 4)
        elif item == "shield":
            pygame.draw.circle(screen, (150, 100, 50), (x, y), 16)
            pygame.draw.circle(screen, (200, 170, 90), (x, y), 6)
        elif item == "potion":
            pygame.draw.circle(screen, (210, 40, 60), (x, y + 4), 11)
            pygame.draw.rect(screen, (220, 220, 230), (x - 3, y - 14, 6, 9))
        else:
            pygame.draw.rect(screen, (180, 180, 120), (x - 8, y - 8, 16, 16))

    def _countdown(self, screen: pygame.Surface) -> None:
        left = self.scene.idle_seconds_left
        if left is None:
            return
        rect = self.rects["countdown"]
        pygame.draw.rect(screen, (250, 246, 226), rect, border_radius=8)
        pygame.draw.rect(screen, (214, 142, 28), rect, width=3, border_radius=8)
        self._text(screen, self.small, "Still there? Closing in", (rect.x + 12, rect.y + 8), (60, 50, 30))
        self._text(screen, self.big, f"{left} s", (rect.x + 46, rect.y + 28), (160, 60, 20))
        self._text(screen, self.small, "press any key", (rect.x + 90, rect.y + 38), (60, 50, 30))
        # A ring that empties as the deadline nears.
        deadline = self.scene.idle_deadline
        if deadline is not None:
            frac = max(0.0, min(1.0, (deadline - self.scene.clock()) / max(1.0, self.scene.idle_total)))
            arc = pygame.Rect(rect.x + 12, rect.y + 28, 26, 26)
            pygame.draw.arc(screen, (160, 60, 20), arc, math.pi / 2, math.pi / 2 + 2 * math.pi * frac, 4)

    def _subtitles(self, screen: pygame.Surface) -> None:
        rect = self.rects["subtitles"]
        text = self.scene.subtitle
        if not text:
            return
        lines = _wrap(self.font, text, rect.width - 20)[-2:]
        pygame.draw.rect(screen, (10, 12, 16), rect, border_radius=6)
        for i, line in enumerate(lines):
            surface = self.font.render(line, True, (255, 244, 200))
            screen.blit(surface, (rect.centerx - surface.get_width() // 2, rect.y + 8 + 24 * i))

    def _input(self, screen: pygame.Surface) -> None:
        scene = self.scene
        rect = self.rects["input"]
        pygame.draw.rect(screen, (34, 38, 48), rect)
        caret = "_" if (self.frame // 30) % 2 == 0 else " "
        self._text(screen, self.font, f"> {scene.input_text}{caret}", (rect.x + 10, rect.y + 4))
        hint = scene.note or ("Enter: say it · F2: voice clip · F3: interrupt · F5: reload · F6: story trigger · "
                              "Esc: quit")
        self._text(screen, self.small, hint[:96], (rect.x + 10, rect.y + 26), (150, 160, 175))
