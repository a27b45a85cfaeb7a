"""The loopback shim the whole suite runs under (``convai_sync/loopback_shim.c``)."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import sys

import pytest

from convai_sync import loopback
from convai_sync.transports.ice import no_ice_candidate_hint

# TEST-NET-1 (RFC 5737): never routed; and the shim refuses it before any packet could leave.
NON_LOOPBACK = ("192.0.2.1", 9)


@pytest.mark.timeout(10)
def test_the_suite_runs_under_the_shim() -> None:
    assert os.environ.get(loopback.MARKER_ENV), "conftest did not re-execute the run under the shim"
    assert loopback.shim_loaded()


class _SockaddrIn(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("port", ctypes.c_uint16), ("addr", ctypes.c_uint8 * 4)]


class _Ifaddrs(ctypes.Structure):
    pass


_Ifaddrs._fields_ = [("next", ctypes.POINTER(_Ifaddrs)), ("name", ctypes.c_char_p), ("flags", ctypes.c_uint),
                     ("addr", ctypes.POINTER(_SockaddrIn)), ("netmask", ctypes.POINTER(_SockaddrIn))]
IFF_LOOPBACK = 0x8


@pytest.mark.timeout(10)
def test_interfaces_report_only_loopback_under_a_plain_name() -> None:
    # Resolved in the process's global namespace, as liblivekit_ffi.so resolves it (not via libc's handle).
    process = ctypes.CDLL(None)
    head = ctypes.POINTER(_Ifaddrs)()
    assert process.getifaddrs(ctypes.byref(head)) == 0
    entries = []
    node = head
    while node:
        entry = node.contents
        entries.append((entry.name.decode(), bool(entry.flags & IFF_LOOPBACK), bytes(entry.addr.contents.addr)))
        node = entry.next
    process.freeifaddrs(head)
    assert entries == [("lkloop0", False, bytes([127, 0, 0, 1]))]


@pytest.mark.timeout(10)
def test_non_loopback_destinations_are_refused_and_counted() -> None:
    assert loopback.shim_loaded()  # only then is it safe to try a non-loopback address
    before = loopback.refusals()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        with pytest.raises(OSError) as refused:
            tcp.connect(NON_LOOPBACK)
        assert refused.value.errno == errno.ENETUNREACH
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(OSError) as refused:
            udp.sendto(b"x", NON_LOOPBACK)
        assert refused.value.errno == errno.ENETUNREACH
        with pytest.raises(OSError):
            udp.connect(NON_LOOPBACK)
    after = loopback.refusals()
    assert after.total - before.total == 3
    assert after.udp_connects - before.udp_connects == 1


@pytest.mark.timeout(10)
def test_loopback_destinations_pass() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        client.sendto(b"ping", server.getsockname())
        assert server.recvfrom(16)[0] == b"ping"


@pytest.mark.timeout(60)
def test_the_livekit_wheel_imports_what_the_shim_overrides() -> None:
    library = loopback.check_livekit_wheel()
    assert set(loopback.REQUIRED_IMPORTS) <= loopback.dynamic_imports(library)


@pytest.mark.timeout(10)
def test_under_the_shim_libwebrtc_has_an_interface_to_gather_on() -> None:
    assert loopback.ice_interfaces() == ["lkloop0"]
    assert no_ice_candidate_hint() is None


# A LiveKit connect from a process that sees the machine as loopback-only (the shim's emulation), and
# a refused join, in a child process whose stderr is captured whole: asyncio and warnings write there.
_ISOLATED_CHILD = """
import sys
from convai_sync import ConvaiClient, ConvaiError, RetryPolicy, loopback
from simulator import Simulator

assert loopback.ice_interfaces() == [], loopback.ice_interfaces()
once = RetryPolicy(max_attempts=1)
for refuse in (None, 401):  # each on its own simulator, stopped while the failed join's tasks are pending
    with Simulator() as sim:
        if refuse is not None:
            sim.refuse_livekit_join(refuse, times=4)
        config = sim.client_config(transport="livekit", connection_timeout=2, retry_policy=once)
        with ConvaiClient(config) as client:
            try:
                client.connect()
            except ConvaiError as exc:
                print(exc, flush=True)
            else:
                sys.exit("connected, which a loopback-only process cannot")
"""


@pytest.mark.timeout(60)
def test_a_join_that_gathers_no_ice_candidate_says_so_and_no_asyncio_warning_escapes() -> None:
    env = dict(os.environ, **{loopback.EMULATE_ISOLATED_ENV: "1"})
    result = subprocess.run([sys.executable, "-W", "default", "-c", _ISOLATED_CHILD], env=env,
                            capture_output=True, text=True, timeout=50, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    stalled, refused = result.stdout.strip().splitlines()
    assert stalled.startswith("[connection.timeout] The connect call (POST /connect, then joining the session's "
                              "livekit transport) did not finish within connection_timeout=2 s.")
    assert "gathers no ICE candidate" in stalled and "convai_sync.loopback.ensure_loopback_preload()" in stalled
    assert refused.startswith("[connection.invalid_token] "), refused
    for leak in ("Task was destroyed", "never retrieved", "Traceback", "Warning:", "Exception ignored"):
        assert leak not in result.stderr, result.stderr
