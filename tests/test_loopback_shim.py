"""The loopback shim the whole suite runs under (``tests/support/loopback_shim.c``)."""

from __future__ import annotations

import ctypes
import errno
import os
import socket

import pytest

from tests.support import loopback

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
