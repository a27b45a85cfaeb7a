"""The newcomer's first hour, from an installed wheel: build the wheel, install it into a fresh virtual
environment outside the repository, and run ``tests/newcomer/first_hour.py`` (written from the README's
install section) there: voice on both transports, readable output, the packaged pygame player.

The fresh environment gets the wheel itself and nothing from the checkout; its dependencies (the extras
the script needs) come from this test run's own environment through a ``.pth`` path entry, as
``--system-site-packages`` would give them (this run's interpreter is usually itself a venv, whose
packages ``--system-site-packages`` would not reach). Nothing is downloaded when setuptools and wheel
are installed here; otherwise pip fetches them for the isolated build, as any wheel build does.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from convai_sync import loopback

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "newcomer" / "first_hour.py"
SOURCES = ("setup.py", "pyproject.toml", "README.md", "convai_sync", "simulator")
#: Files a user of the wheel needs that are not Python modules.
PACKAGE_DATA = ("convai_sync/py.typed", "convai_sync/loopback_shim.c", "simulator/py.typed",
                "simulator/scenarios/idle_user.json")
#: Readable: a handful of lines, none of them a wall of bytes.
MAX_LINES, MAX_LINE = 12, 200

pytestmark = pytest.mark.timeout(110)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    # Without PYTHONPATH: a checkout on it would make pip see convai-sync as installed already (its egg-info).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=timeout, env=env)
    assert result.returncode == 0, f"{args[:4]} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _build_wheel(tmp: Path) -> Path:
    source = tmp / "src"  # a copy, so the build leaves nothing (build/, *.egg-info) in the checkout
    source.mkdir()
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.so", "build"))
        else:
            shutil.copy2(origin, source / name)
    # Build with this environment's setuptools when it can (no download); else pip's isolated build.
    local = importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel")
    no_isolation = ["--no-build-isolation"] if local else []
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *no_isolation, "-w", str(tmp / "dist"),
          str(source)], timeout=90)
    (wheel,) = (tmp / "dist").glob("convai_sync-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=60)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)],
         timeout=60)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     timeout=30).stdout.strip())
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_a_newcomer_installs_the_wheel_and_hears_the_character(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [name for name in PACKAGE_DATA if name not in names] == []
    assert "convai_sync/pygame_voice.py" in names and "convai_sync/loopback.py" in names
    assert not [name for name in names if name.startswith(("tests/", "examples/"))]
    python = _fresh_venv(tmp_path, wheel)

    work = tmp_path / "work"  # outside the repository: nothing of the checkout is importable from here
    work.mkdir()
    script = work / SCRIPT.name
    shutil.copy2(SCRIPT, script)
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "LD_PRELOAD", loopback.MARKER_ENV) and not key.startswith("PYTEST")}
    env[loopback.BUILD_DIR_ENV] = str(tmp_path / "cache")  # the packaged shim is compiled afresh
    result = subprocess.run([str(python), str(script)], cwd=work, env=env, capture_output=True, text=True,
                            timeout=90, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", "a warning or traceback escaped:\n" + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) <= MAX_LINES and max(map(len, lines)) <= MAX_LINE, result.stdout
    assert lines[0] == f"convai_sync from {python.parent.parent}/lib/python{sys.version_info.major}." \
                       f"{sys.version_info.minor}/site-packages/convai_sync"
    assert lines[1] == "websocket: SessionState.CONNECTED" and lines[5] == "livekit: SessionState.CONNECTED"
    for reply, clip, played in ((lines[2], lines[3], lines[4]), (lines[6], lines[7], lines[8])):
        assert reply.startswith("BotReply(text='You said: Hello!") and reply.endswith(f"audio={clip})")
        assert clip.startswith("AudioClip(") and " Hz, 1 ch, " in clip
        seconds = float(clip.removeprefix("AudioClip(").split(" s,")[0])
        assert played == f"played {seconds:.1f} s of voice through pygame.mixer"
    assert list((tmp_path / "cache").glob("libconvai_loopback-*.so")), "the packaged shim was not compiled"
