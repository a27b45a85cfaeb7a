"""Run this Python process under the loopback-only network shim (``loopback_shim.c``), Linux only.

libwebrtc, inside the ``livekit`` wheel's ``liblivekit_ffi.so``, ignores loopback adapters when it
gathers ICE candidates, so on a machine whose only usable address is 127.0.0.1 the real LiveKit
client never connects. The shim, preloaded into the process, reports 127.0.0.1 as an ordinary
interface and refuses every non-loopback destination. ``LD_PRELOAD`` only acts when a process
starts, so :func:`ensure_loopback_preload` builds the shim with the machine's C compiler and
re-executes the current process once under it (the test suite's ``conftest.py`` does this; so can
``bench/`` and ``examples/`` scripts).

Nothing here skips: a missing compiler, a missing ``nm``/``readelf``, or a ``livekit`` wheel whose
FFI library no longer imports ``getifaddrs`` dynamically (so the shim could not take effect) raises
:class:`LoopbackShimError`.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Set (to the shim's path) in the environment of a process re-executed under the shim.
MARKER_ENV = "CONVAI_LOOPBACK_SHIM"
#: When set to a file path, the shim appends one line per refused destination to it.
LOG_ENV = "CONVAI_LOOPBACK_LOG"
#: Symbols the FFI library must import dynamically for the shim to take effect.
REQUIRED_IMPORTS = ("getifaddrs", "connect", "sendto", "sendmsg")

SUPPORT_DIR = Path(__file__).resolve().parent
SOURCE = SUPPORT_DIR / "loopback_shim.c"
BUILD_DIR = SUPPORT_DIR / "build"  # git-ignored (``build/``)


class LoopbackShimError(RuntimeError):
    """The loopback shim cannot be built, checked or loaded."""


@dataclass(frozen=True)
class Refusals:
    """What the shim refused in this process so far."""

    total: int
    udp_connects: int

    @property
    def other(self) -> int:
        """Refusals that were not a UDP ``connect()`` (those would be real traffic attempts)."""
        return self.total - self.udp_connects


def _tool(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise LoopbackShimError(f"none of {list(names)} is installed; the loopback shim needs it")


def livekit_ffi_library() -> Path:
    """The ``liblivekit_ffi.so`` of the installed ``livekit`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("livekit.rtc")
    if spec is None or not spec.submodule_search_locations:
        raise LoopbackShimError("the 'livekit' package is not installed (pip install -e '.[test]')")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "resources" / "liblivekit_ffi.so"
        if candidate.exists():
            return candidate
    raise LoopbackShimError("the installed 'livekit' wheel has no resources/liblivekit_ffi.so")


def dynamic_imports(library: Path) -> set[str]:
    """Undefined (imported) symbols in ``library``'s dynamic symbol table, without version suffixes."""
    nm = _tool("nm")
    result = subprocess.run([nm, "-D", "--undefined-only", str(library)], capture_output=True, text=True,
                            check=False, timeout=60)
    if result.returncode != 0:
        raise LoopbackShimError(f"nm -D failed on {library}: {result.stderr.strip()}")
    names: set[str] = set()
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts:
            names.add(parts[-1].split("@", 1)[0])
    return names


def check_livekit_wheel() -> Path:
    """Fail unless the FFI library imports every symbol the shim overrides; returns its path."""
    library = livekit_ffi_library()
    missing = [name for name in REQUIRED_IMPORTS if name not in dynamic_imports(library)]
    if missing:
        raise LoopbackShimError(
            f"{library} no longer imports {missing} dynamically, so LD_PRELOAD cannot override them; "
            "the loopback shim does not work with this livekit wheel (pin the tested version)"
        )
    return library


def build_shim() -> Path:
    """Compile ``loopback_shim.c`` (once per source version) and return the shared object's path."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:12]
    target = BUILD_DIR / f"libconvai_loopback-{digest}.so"
    if target.exists():
        return target
    compiler = os.environ.get("CC") or _tool("cc", "gcc", "clang")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so concurrent test runs never load a half-written file.
    fd, partial = tempfile.mkstemp(dir=BUILD_DIR, suffix=".so.partial")
    os.close(fd)
    try:
        result = subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-o", partial, str(SOURCE), "-ldl"],
            capture_output=True, text=True, check=False, timeout=120,
        )
        if result.returncode != 0:
            raise LoopbackShimError(f"compiling {SOURCE.name} failed:\n{result.stderr}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def shim_loaded() -> bool:
    """True when the shim is preloaded into this process."""
    try:
        ctypes.CDLL(None).convai_loopback_active  # noqa: B018 (attribute lookup is the check)
    except AttributeError:
        return False
    return True


def refusals() -> Refusals:
    """The shim's refusal counters for this process; LoopbackShimError when it is not loaded."""
    if not shim_loaded():
        raise LoopbackShimError("the loopback shim is not loaded into this process")
    lib = ctypes.CDLL(None)
    total_fn = lib.convai_loopback_refused_total
    udp_fn = lib.convai_loopback_refused_udp_connects
    total_fn.restype = udp_fn.restype = ctypes.c_ulong
    return Refusals(int(total_fn()), int(udp_fn()))


def ensure_loopback_preload() -> None:
    """Make sure this process runs under the shim: on Linux, build it and re-exec once if needed.

    Returns normally when the shim is loaded (after the re-exec). Raises LoopbackShimError when the
    shim cannot be built or the livekit wheel cannot be shimmed, and on a non-Linux platform (where
    the real-client LiveKit tests cannot run on a loopback-only machine).
    """
    if not sys.platform.startswith("linux"):
        raise LoopbackShimError(f"the loopback shim needs Linux/glibc, not {sys.platform}")
    if os.environ.get(MARKER_ENV):
        if not shim_loaded():
            raise LoopbackShimError(
                f"{MARKER_ENV} is set but the shim is not loaded (LD_PRELOAD={os.environ.get('LD_PRELOAD')!r})"
            )
        return
    check_livekit_wheel()
    shim = build_shim()
    env = dict(os.environ)
    preload = env.get("LD_PRELOAD", "")
    env["LD_PRELOAD"] = f"{shim}:{preload}" if preload else str(shim)
    env[MARKER_ENV] = str(shim)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)
