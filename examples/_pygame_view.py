"""Draws the scene (``_pygame_scene.Scene``) with pygame: every function here runs on the main thread.

The layout is fixed (:data:`LAYOUT`, in pixels of a 640 x 360 window) so a test can look at one
region of a screenshot (the HUD, the banner, the countdown) and compare it with the same region of
an idle frame.
"""

from __future__ import annotations

import math

import pygame
from _pygame_scene import Scene

from convai_sync import SessionState

SIZE = (640, 360)
#: Regions as (x, y, width, height).
LAYOUT: dict[str, tuple[int, int, int, int]] = {
    "hud": (0, 0, 640, 44),
    "banner": (0, 44, 640, 36),
    "stage": (0, 80, 640, 168),
    "countdown": (436, 92, 192, 66),
    "subtitles": (20, 250, 600, 62),
    "input": (0, 316, 640, 44),
}
#: Banner background per kind; the test checks a banner by its hue.
BANNER_COLOURS = {"please_wait": (46, 104, 196), "recoverable": (214, 142, 28), "fatal": (184, 38, 38)}
BACKGROUND = (22, 26, 34)
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
        """The character: a face whose mouth follows the voice level; dots while it thinks."""
        scene = self.scene
        rect = self.rects["stage"]
        centre = (rect.x + 150, rect.centery + 4)
        available = scene.state is SessionState.CONNECTED
        skin = (226, 178, 120) if available else (120, 104, 90)
        pygame.draw.circle(screen, skin, centre, 62)
        for dx in (-22, 22):
            pygame.draw.circle(screen, (40, 40, 50), (centre[0] + dx, centre[1] - 16), 7)
        level = scene.player.level if scene.player is not None else 0.0
        opening = 4 + min(26, round(level * 120))
        mouth = pygame.Rect(0, 0, 46, opening)
        mouth.center = (centre[0], centre[1] + 26)
        pygame.draw.ellipse(screen, (110, 40, 50), mouth)
        self._anvil(screen, (rect.x + 562, rect.bottom - 26))
        label = "thinking" if scene.thinking else ("speaking" if scene.speaking else "")
        if label:
            dots = "." * (1 + (self.frame // 12) % 3)
            self._text(screen, self.font, label + dots, (centre[0] + 80, centre[1] - 10), (210, 210, 160))
        for i, line in enumerate(_wrap(self.small, scene.user_line, 250)[:2]):
            self._text(screen, self.small, line, (centre[0] + 80, centre[1] + 30 + 16 * i), (160, 200, 255))

    def _anvil(self, screen: pygame.Surface, base: tuple[int, int]) -> None:
        x, y = base
        steel = (88, 94, 106)
        pygame.draw.polygon(screen, steel, [(x - 60, y - 40), (x + 50, y - 40), (x + 70, y - 30), (x + 30, y - 22),
                                            (x + 18, y - 22), (x + 18, y - 8), (x - 30, y - 8), (x - 30, y - 22),
                                            (x - 40, y - 22)])
        pygame.draw.rect(screen, steel, (x - 44, y - 8, 74, 10))
        glow = (255, 150, 60) if self.scene.state is SessionState.CONNECTED else (110, 80, 60)
        pygame.draw.circle(screen, glow, (x - 75, y - 2), 6)

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
        hint = scene.note or "Enter: say it · F2: send voice clip · F3: interrupt · F5: reload · Esc: quit"
        self._text(screen, self.small, hint[:96], (rect.x + 10, rect.y + 26), (150, 160, 175))
