"""Convai's real Web SDK (tests/websdk, npm) in Debian's headless Chromium, driven with Selenium.

The bundle is built from the installed node_modules with esbuild at test time (no network: ``.ci/run`` runs
``npm ci`` in tests/websdk first); a missing node_modules or browser FAILS the test, naming the fix. The page
and the bundle are served from a loopback origin other than the simulator's, so CORS is exercised as a
web app would exercise it.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import tempfile
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service

HARNESS = Path(__file__).parent / "websdk"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGE = b"<!doctype html><html><head><meta charset='utf-8'></head><body><script src='harness.js'></script></body></html>"
#: Seconds one step of the flow may take in the browser (a join through TURN takes well under one).
STEP = 15.0
#: The fake microphone: a 440 Hz tone of this many seconds, then silence (Chromium loops the file).
SPEECH_SECONDS = 0.8
SILENCE_SECONDS = 2.2
RATE = 48_000


def build_bundle(out: Path) -> Path:
    """``harness.js`` bundled into ``out`` by the pinned esbuild; AssertionError naming the fix when missing."""
    esbuild = HARNESS / "node_modules" / ".bin" / "esbuild"
    if not (HARNESS / "node_modules" / "@convai" / "web-sdk").is_dir() or not esbuild.exists():
        raise AssertionError("tests/websdk/node_modules is missing: run `npm ci` in tests/websdk "
                             "(.ci/run does) before this test")
    bundle = out / "harness.js"
    subprocess.run([str(esbuild), "entry.js", "--bundle", "--format=iife", f"--outfile={bundle}",
                    "--log-level=warning"], cwd=HARNESS, check=True, timeout=60)
    (out / "index.html").write_bytes(PAGE)
    return bundle


def write_microphone(path: Path) -> None:
    """A WAV for ``--use-file-for-fake-audio-capture``: speech (a loud tone) then silence, PCM16 mono."""
    import numpy as np

    t = np.arange(int(RATE * SPEECH_SECONDS)) / RATE
    tone = (np.sin(2 * np.pi * 440 * t) * 12_000).astype("<i2")
    silence = np.zeros(int(RATE * SILENCE_SECONDS), dtype="<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(tone.tobytes() + silence.tobytes())


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    """The harness page on its own loopback origin (not the simulator's)."""
    with tempfile.TemporaryDirectory(prefix="websdk-") as out:
        build_bundle(Path(out))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=out))
        thread = threading.Thread(target=server.serve_forever, name="websdk-page", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """One headless Chromium for a test module (starting one takes about a second); each test starts from a
    fresh page with :func:`open_page`."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(binary) is None:
            raise AssertionError(f"{binary} is missing: apt-get install chromium chromium-driver (.ci/run does)")
    tmp_path = tmp_path_factory.mktemp("chromium")
    microphone = tmp_path / "microphone.wav"
    write_microphone(microphone)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={microphone}",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The suite runs under convai_sync's LD_PRELOAD loopback shim (tests/conftest.py), which the browser must
    # not inherit: it has its own loopback ICE (Chromium's relay candidates through the simulator's coturn).
    env = {name: value for name, value in os.environ.items() if name != "LD_PRELOAD"}
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER, env=env))
    driver.set_script_timeout(STEP)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: webdriver.Chrome, url: str) -> None:
    """Load the harness page afresh (a new SDK, no events) and drop the console messages of earlier pages."""
    driver.get(url)
    console_messages(driver)


def call(driver: webdriver.Chrome, script: str, *args: Any) -> Any:
    """Await ``script`` (a JS expression giving a promise or a value) in the page; its result. A script that
    does not settle within :data:`STEP` fails with the page's events and console (Chromium's log)."""
    try:
        return driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            f"Promise.resolve({script}).then(done, (e) => done({{failed: String(e && e.message || e)}}));", *args)
    except TimeoutException:
        names = driver.execute_script("return harness.events.map(e => e.name)")
        console = "\n".join(message[:300] for message in console_messages(driver)[-20:])
        raise AssertionError(f"{script} did not settle within {STEP} s; page events: {names}\n{console}") from None


def console_messages(driver: webdriver.Chrome) -> list[str]:
    """The page's console messages since the last call (Chromium's "browser" log, which reading empties)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [str(entry["message"]) for entry in entries]


def next_event(driver: webdriver.Chrome, name: str, after: int = 0) -> tuple[int, Any]:
    """The first page event ``name`` at index >= ``after``, awaited in the page (deadline: :data:`STEP`)."""
    found = call(driver, "harness.nextEvent(arguments[0], arguments[1])", name, after)
    assert isinstance(found, dict) and "index" in found, f"{name}: {found}"
    return int(found["index"]), found["value"]


def chat_has(driver: webdriver.Chrome, kind: str, text: str) -> list[dict[str, Any]]:
    """The SDK's chat once it holds a finished ``kind`` message containing ``text`` (deadline: :data:`STEP`)."""
    chat = call(driver, "harness.chatHas(arguments[0], arguments[1])", kind, text)
    assert isinstance(chat, list), chat
    return chat


def events(driver: webdriver.Chrome, name: str) -> list[Any]:
    return list(driver.execute_script("return harness.events.filter(e => e.name === arguments[0]).map(e => e.value)",
                                      name))
