"""Let the real LiveKit client work on a machine whose only network is loopback (Linux/glibc only).

Why: libwebrtc, inside the ``livekit`` wheel's ``liblivekit_ffi.so``, ignores loopback adapters when it
gathers ICE candidates. On a machine (a CI container, a sandbox) whose only usable address is 127.0.0.1
it gathers none, so a LiveKit join, e.g. against the local simulator, never completes and
``connect()`` fails with ``connection.timeout`` (whose message names this module). On a machine with
any other network interface none of this is needed.

The fix is a tiny C shim, ``loopback_shim.c`` (shipped with this package as source), preloaded into the
process with ``LD_PRELOAD``: ``getifaddrs()`` then reports 127.0.0.1 as an ordinary interface, and every
``connect()``/``sendto()``/``sendmsg()``/``sendmmsg()`` to a non-loopback destination is refused with
``ENETUNREACH`` and counted (:func:`refusals`), so the process cannot reach beyond the machine.
``LD_PRELOAD`` only acts when a process starts, so :func:`ensure_loopback_preload` compiles the shim with
the machine's C compiler on first use (``$CC``, else ``cc``/``gcc``/``clang``; cached per source version in
:func:`build_dir`) and re-executes the current process once under it. Call it first thing in your
script, before starting threads::

    from convai_sync import loopback

    loopback.ensure_loopback_preload()   # re-executes this script once, then returns
    ...                                  # LiveKit joins over 127.0.0.1 now work

Nothing here degrades silently: a missing compiler, a missing ``nm``, a ``livekit`` wheel whose FFI
library no longer imports ``getifaddrs`` dynamically (so the shim could not take effect) or a non-Linux
platform raises :class:`LoopbackShimError`. Threads: call these from the main thread at start-up; the
shim itself keeps only atomic counters.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.resources
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Set (to the shim's path) in the environment of a process re-executed under the shim.
MARKER_ENV = "CONVAI_LOOPBACK_SHIM"
#: When set to a file path, the shim appends one line per refused destination to it.
LOG_ENV = "CONVAI_LOOPBACK_LOG"
#: When set (to anything non-empty) under the shim, ``getifaddrs()`` reports only a loopback adapter
#: (``lo``, 127.0.0.1, flagged loopback): the process sees the machine as a loopback-only one, which is
#: how the diagnosis of a join that gathers no ICE candidate is tested on a machine with a network.
EMULATE_ISOLATED_ENV = "CONVAI_LOOPBACK_EMULATE_ISOLATED"
#: Where the compiled shim is cached (default: ``$XDG_CACHE_HOME/convai_sync``, else ``~/.cache/convai_sync``).
BUILD_DIR_ENV = "CONVAI_LOOPBACK_BUILD_DIR"
#: Symbols the FFI library must import dynamically for the shim to take effect.
REQUIRED_IMPORTS = ("getifaddrs", "connect", "sendto", "sendmsg")
#: The shim's C source, shipped as package data.
SOURCE_NAME = "loopback_shim.c"

_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8


def build_dir() -> Path:
    """The directory compiled shims are cached in (``$CONVAI_LOOPBACK_BUILD_DIR``, else the user cache)."""
    configured = os.environ.get(BUILD_DIR_ENV)
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "convai_sync"


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
        raise LoopbackShimError("the 'livekit' package is not installed (pip install 'convai-sync[livekit]')")
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
    """Compile the packaged ``loopback_shim.c`` (once per source version) and return the ``.so``'s path.

    Raises:
        LoopbackShimError: no C compiler, or the compile failed (its output is in the message).
    """
    resource = importlib.resources.files(__package__ or "convai_sync").joinpath(SOURCE_NAME)
    source = resource.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:12]
    directory = build_dir()
    target = directory / f"libconvai_loopback-{digest}.so"
    if target.exists():
        return target
    compiler = os.environ.get("CC") or _tool("cc", "gcc", "clang")
    directory.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so concurrent processes never load a half-written file.
    fd, partial = tempfile.mkstemp(dir=directory, suffix=".so.partial")
    os.close(fd)
    try:
        with importlib.resources.as_file(resource) as path:
            result = subprocess.run(
                [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-o", partial, str(path), "-ldl"],
                capture_output=True, text=True, check=False, timeout=120,
            )
        if result.returncode != 0:
            raise LoopbackShimError(f"compiling {SOURCE_NAME} failed:\n{result.stderr}")
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
    """Make sure this process runs under the shim: on Linux, build it and re-execute once if needed.

    The re-execution replaces the process (``os.execve`` of ``sys.orig_argv``, same environment plus
    ``LD_PRELOAD`` and :data:`MARKER_ENV`); in the re-executed process this returns normally. Call it
    before starting threads or opening files you need.

    Raises:
        LoopbackShimError: the shim cannot be built, the ``livekit`` wheel cannot be shimmed, or the
            platform is not Linux (where the shim cannot help).
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


class _Sockaddr(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort)]


class _Ifaddrs(ctypes.Structure):
    pass


_Ifaddrs._fields_ = [("next", ctypes.POINTER(_Ifaddrs)), ("name", ctypes.c_char_p), ("flags", ctypes.c_uint),
                     ("addr", ctypes.POINTER(_Sockaddr))]


def ice_interfaces() -> list[str] | None:
    """Names of the interfaces libwebrtc would gather host ICE candidates on, as this process sees them.

    An interface counts when it is up, not flagged loopback, not named ``lo`` and carries an IPv4 or IPv6
    address (libwebrtc's own filter). ``[]`` means a LiveKit join from this process gathers no ICE
    candidate (see the module docstring for the fix); under the shim the list is its one interface.
    ``None`` when this cannot be determined (not Linux, or ``getifaddrs`` failed).
    """
    if not sys.platform.startswith("linux"):
        return None
    # The process's global namespace, so a preloaded shim's getifaddrs answers, as it does for libwebrtc.
    process = ctypes.CDLL(None, use_errno=True)
    head = ctypes.POINTER(_Ifaddrs)()
    if process.getifaddrs(ctypes.byref(head)) != 0:
        return None
    names: list[str] = []
    try:
        entry = head
        while entry:
            item = entry.contents
            family = item.addr.contents.family if item.addr else None
            name = (item.name or b"").decode(errors="replace")
            if (family in (socket.AF_INET, socket.AF_INET6) and item.flags & _IFF_UP
                    and not item.flags & _IFF_LOOPBACK and name != "lo" and name not in names):
                names.append(name)
            entry = item.next
    finally:
        process.freeifaddrs(head)
    return names
