"""Packaging for convai_sync (the SDK) and simulator (the local Convai simulator)."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
version = {}
for line in (ROOT / "convai_sync" / "__init__.py").read_text().splitlines():
    if line.startswith("__version__"):
        exec(line, version)

# protobuf: the /chat WebSocket's binary Pipecat frames (the user's voice in, the character's out).
# aiohttp below 4: simulator/http/quiet.py extends aiohttp's request handler and AppRunner (its private
# _make_server) to keep a 400's text from echoing what the peer sent. numpy: simulator/core/lipsync.py measures
# the voice's loudness per lip-sync frame with whole-array operations (not per sample on the event loop).
SIMULATOR = ["aiohttp>=3.9,<4", "protobuf>=5", "numpy>=1.23"]
# The simulator's LiveKit side. Pinned to what was tested: LiveKit's signalling moves between releases, and
# simulator/carriers/livekit/peer.py relies on aiortc 1.16 / aioice 0.13 internals (the sender's media stream id,
# aioice's host-address lookup).
SIMULATOR_LIVEKIT = ["aiortc>=1.16,<1.17", "aioice>=0.13,<0.14", "livekit-protocol>=1.1.29,<1.2",
                     "livekit-api>=1.2.2,<1.3"]
# Worker processes sharing the plan state (convai-sim --workers N --state redis://...): redis.asyncio and the
# Lua scripts of simulator/core/redis_store.py (redis-py 5 renamed close() to aclose()).
SIMULATOR_REDIS = ["redis>=5,<7"]
# Audio on the WebSocket transport: Pipecat's protobuf Frame (convai_sync.transports.pipecat builds the
# message classes at run time; message_factory.GetMessageClass needs protobuf 5 or later).
AUDIO = ["protobuf>=5"]
# convai_sync.devices (Speaker, Microphone): the PortAudio binding; tests inject fake streams instead. Their echo
# cancellation (convai_sync.echo) is WebRTC's audio processing as `livekit` ships it: the livekit extra, on either
# transport.
DEVICES = ["sounddevice>=0.4"]
# The real LiveKit client the tests drive (convai_sync/loopback_shim.c is checked against its FFI library).
# livekit requires numpy itself; it is named because convai_sync/transports/livekit_audio.py imports it.
LIVEKIT_CLIENT = ["livekit>=1.2.1,<1.3", "numpy>=1.23"]
# examples/pygame_character.py and bench/frame_budget.py: a pygame-ce game host. numpy converts the
# character's voice to the mixer's format (pygame's own sample-array module, pygame.sndarray, uses it too).
PYGAME = ["pygame-ce>=2.5,<3", "numpy>=1.23"]
# The documentation site (mkdocs.yml): MkDocs + Material, the API reference from docstrings, and generated pages.
DOCS = ["mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10", "mkdocstrings[python]>=0.26", "mkdocs-gen-files>=0.5,<1"]

setup(
    name="convai-sync",
    version=version["__version__"],
    description="Blocking, thread-based Python SDK for Convai characters, with a local simulator",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["convai_sync", "convai_sync.*", "simulator", "simulator.*"]),
    package_data={"convai_sync": ["py.typed", "loopback_shim.c"],
                  "simulator": ["scenarios/*.json", "characters/*.json", "http/ui/*",
                                "py.typed"]},
    # The transport reads frames with websocket-client's frame parser and makes urllib3's sockets
    # abortable (convai_sync.netio): both are pinned to the major versions that code was written for.
    # platformdirs (convai_sync.identity: the user's data folder on every OS) and filelock
    # (convai_sync.sessionstore: an inter-process lock that works on Windows too, where fcntl does not
    # exist) are small, pure-Python and dependency-free; both serve core, shipped-game features.
    install_requires=["requests>=2.28", "urllib3>=2,<3", "websocket-client>=1.6,<2", "platformdirs>=3,<5",
                      "filelock>=3.20.1,<5"],
    extras_require={
        "simulator": SIMULATOR,
        "simulator-livekit": SIMULATOR + SIMULATOR_LIVEKIT,
        "simulator-redis": SIMULATOR + SIMULATOR_REDIS,
        "audio": AUDIO,
        "devices": DEVICES,
        "livekit": LIVEKIT_CLIENT + AUDIO,
        "pygame": PYGAME,
        "docs": DOCS,
        "test": SIMULATOR + SIMULATOR_LIVEKIT + SIMULATOR_REDIS + LIVEKIT_CLIENT + AUDIO + PYGAME + [
            "pytest>=7.4", "pytest-timeout>=2.1", "pytest-xdist>=3.5,<4", "responses>=0.23", "mypy>=1.8", "ruff>=0.4",
            "types-requests>=2.28", "hypothesis>=6.100", "import-linter>=2.17,<3",
            # tests/test_websdk_browser.py and tests/test_dashboard.py drive Debian's chromium through its chromedriver
            "selenium>=4.20,<5"],
    },
    entry_points={
        "console_scripts": ["convai-sim=simulator.__main__:main"],
        "pytest11": ["convai_simulator=simulator.pytest_plugin"],
    },
    classifiers=["Programming Language :: Python :: 3", "Typing :: Typed"],
)
