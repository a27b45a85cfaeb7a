"""Security as tests: TLS is verified, the simulator refuses bad credentials and binds loopback, and the
API key never shows (DEBUG logs, reprs, exceptions, diagnostics) over a whole session on either transport.

The TLS server is a throwaway: a certificate for 127.0.0.1 signed by a throwaway CA, both made at test
time with the ``cryptography`` package. A control client that trusts that CA completes the handshake,
so a refusal by the SDK is its certificate check and nothing else.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from convai_sync import ConvaiClient, ConvaiConfig, ConvaiError, DisconnectReason, EventDeliveryPolicy, RetryPolicy
from convai_sync.connect import Endpoint
from convai_sync.transports.base import TransportOpenError
from convai_sync.transports.websocket import WebSocketTransport
from simulator import Simulator
from simulator.__main__ import build_parser

pytestmark = pytest.mark.timeout(60)
GENEROUS = 10.0
CORE = "SECURITY-SECRET-7731"
KEY = f"sk-{CORE}-xyz"
ODD = f"\t {KEY} \r\n"


# ---------------------------------------------------------------------------------- TLS


def _self_signed(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 it signed: (CA cert, server cert, server key)."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject: str, issuer: str, public: Any, signer: Any, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(public).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("throwaway test CA", "throwaway test CA", ca_key.public_key(), ca_key, True)
    cert = build("127.0.0.1", "throwaway test CA", key.public_key(), ca_key, False)
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class TlsPeer:
    """A loopback TLS server with a self-signed certificate; answers any request with a /connect body."""

    def __init__(self, folder: Path) -> None:
        self.ca, cert, key = _self_signed(folder)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.handshakes = 0
        self.refused = 0
        self.refusal = threading.Event()  # set once a client has rejected the certificate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tls-peer", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with contextlib.closing(conn):
                conn.settimeout(GENEROUS)
                try:
                    tls = self._context.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    self.refused += 1  # the client rejected our certificate
                    self.refusal.set()
                    continue
                self.handshakes += 1
                with contextlib.suppress(OSError):
                    tls.recv(65536)
                    body = json.dumps({"session_id": "s", "room_url": f"wss://127.0.0.1:{self.port}/chat"}).encode()
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(GENEROUS)


@pytest.fixture
def tls_peer(tmp_path: Path) -> Iterator[TlsPeer]:
    peer = TlsPeer(tmp_path)
    try:
        yield peer
    finally:
        peer.stop()


def test_the_tls_peer_works_for_a_client_that_trusts_it(tls_peer: TlsPeer) -> None:
    answer = requests.post(f"https://127.0.0.1:{tls_peer.port}/connect", json={}, verify=str(tls_peer.ca),
                           timeout=GENEROUS)
    assert answer.status_code == 200 and tls_peer.handshakes == 1


def test_connect_api_refuses_a_self_signed_https_server(tls_peer: TlsPeer) -> None:
    config = ConvaiConfig(api_key="k", character_id="c", url=f"https://127.0.0.1:{tls_peer.port}",
                          retry_policy=RetryPolicy(max_attempts=1))
    with ConvaiClient(config) as client, pytest.raises(ConvaiError) as info:
        client.connect(timeout=GENEROUS)
    assert "certificate" in str(info.value).lower(), str(info.value)
    assert tls_peer.refusal.wait(GENEROUS) and tls_peer.handshakes == 0


def test_websocket_transport_refuses_a_self_signed_wss_server(tls_peer: TlsPeer) -> None:
    class Listener:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the listener must not be called ({name})")

    transport = WebSocketTransport()
    endpoint = Endpoint(session_id="s", room_url=f"wss://127.0.0.1:{tls_peer.port}/chat?session_id=s")
    with pytest.raises(TransportOpenError) as info:
        transport.open(endpoint, Listener(), timeout=GENEROUS)
    assert "certificate" in info.value.error.message.lower(), info.value.error.message
    assert tls_peer.refusal.wait(GENEROUS) and tls_peer.handshakes == 0
    transport.close()


@pytest.mark.timeout(60)
def test_livekit_transport_refuses_a_self_signed_wss_server(tls_peer: TlsPeer) -> None:
    from convai_sync.transports.livekit import LiveKitTransport

    class Listener:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the listener must not be called ({name})")

    transport = LiveKitTransport()
    endpoint = Endpoint(session_id="s", room_url=f"wss://127.0.0.1:{tls_peer.port}", token="a.b.c",
                        transport="livekit")
    try:
        with pytest.raises(TransportOpenError) as info:
            transport.open(endpoint, Listener(), timeout=GENEROUS)
        assert "certificate" in info.value.error.message.lower(), info.value.error.message
        assert tls_peer.refusal.wait(GENEROUS) and tls_peer.handshakes == 0
    finally:
        transport.close()


# ---------------------------------------------------------------------------------- the simulator


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator() as server:
        yield server


def test_simulator_binds_loopback_by_default(sim: Simulator) -> None:
    assert sim.host == "127.0.0.1" and sim.url.startswith("http://127.0.0.1:")
    assert build_parser().parse_args([]).host == "127.0.0.1"
    bound = {conn.laddr[0] for conn in _listening(sim.port)}
    assert bound == {"127.0.0.1"}, bound


def _listening(port: int) -> list[Any]:
    """Sockets of this process listening on ``port`` (from /proc/net/tcp{,6}, no extra package)."""
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    raw = bytes.fromhex(address)
                    if family == socket.AF_INET:
                        host = socket.inet_ntop(family, raw[::-1])
                    else:
                        host = socket.inet_ntop(family, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
                    found.append(type("Conn", (), {"laddr": (host, port)}))
    return found


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}, {"API-AUTH-TOKEN": "nope"}])
def test_simulator_refuses_missing_or_wrong_api_keys(sim: Simulator, headers: dict[str, str]) -> None:
    answer = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id}, headers=headers,
                           timeout=GENEROUS)
    assert answer.status_code == 401, answer.text


@pytest.mark.parametrize("token", [None, "", "wrong", "x" * 64])
@pytest.mark.parametrize(("method", "route"), [("GET", "sessions"), ("POST", "inject"), ("GET", "limits"),
                                               ("POST", "send"), ("GET", "scenario"), ("GET", "stats")])
def test_simulator_refuses_missing_or_wrong_control_tokens(sim: Simulator, token: str | None, method: str,
                                                           route: str) -> None:
    headers = {} if token is None else {"X-Sim-Control-Token": token}
    answer = requests.request(method, f"{sim.url}/_sim/{route}", json={"code": "SERVER_SHUTDOWN"}, headers=headers,
                              timeout=GENEROUS)
    assert answer.status_code == 401, answer.text


def test_simulator_refuses_missing_forged_and_foreign_livekit_tokens(sim: Simulator) -> None:
    def connect() -> dict[str, Any]:
        answer = requests.post(f"{sim.url}/connect", json={"character_id": sim.character_id, "transport": "livekit"},
                               headers={"X-API-Key": sim.api_key}, timeout=GENEROUS)
        assert answer.status_code == 200
        info: dict[str, Any] = answer.json()
        return info

    first, second = connect(), connect()
    header, payload, _signature = first["token"].split(".")
    forged = f"{header}.{payload}.{'A' * 43}"
    validate = f"{sim.url}/rtc/v1/validate"
    assert requests.get(validate, headers={"Authorization": f"Bearer {first['token']}"},
                        timeout=GENEROUS).status_code == 200  # control: the real token is accepted
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Bearer {forged}"},
                    {"Authorization": "Bearer not-a-jwt"}, {"Authorization": first["token"]}):
        assert requests.get(validate, headers=headers, timeout=GENEROUS).status_code == 401, headers
    # A token is for its own room only: the second session's token does not open the first room's join.
    assert second["token"] != first["token"]
    for info in (first, second):
        requests.post(f"{sim.url}/disconnect", params={"session_id": info["session_id"]}, timeout=GENEROUS)
    assert requests.get(validate, headers={"Authorization": f"Bearer {first['token']}"},
                        timeout=GENEROUS).status_code == 401  # its room is closed now


# ---------------------------------------------------------------------------------- key hygiene


@pytest.mark.timeout(90)
@pytest.mark.parametrize("transport", ["websocket", "livekit"])
def test_the_key_never_shows_over_a_whole_session(caplog: pytest.LogCaptureFixture, transport: str) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: the SDK's, requests', urllib3's, livekit's, the simulator's
    seen: list[object] = []
    with Simulator(api_keys=(KEY,)) as server:
        config = server.client_config(api_key=ODD, transport=transport)
        texts = [repr(config), str(config)]
        with ConvaiClient(config) as client:
            client.events.raw.subscribe(object, seen.append, EventDeliveryPolicy.IMMEDIATE)
            reconnected = threading.Event()
            client.events.on_reconnected.subscribe(lambda _e: reconnected.set(), EventDeliveryPolicy.IMMEDIATE)
            client.connect(timeout=GENEROUS)
            texts += [repr(client.ask("hello", timeout=GENEROUS)), repr(client)]
            server.inject(DisconnectReason.SIGNAL_CLOSE)  # a reconnect: a second /connect with the key
            assert reconnected.wait(GENEROUS)
            client.send_text("again", wait=True, timeout=GENEROUS)
            texts.append(json.dumps(client.diagnostics(), default=repr))
        texts.append(json.dumps(client.diagnostics(), default=repr))
        # And a refused connect: the key (with a typo) is in the request, never in what comes back.
        refused = ConvaiClient(server.client_config(api_key=ODD.replace("xyz", "xyw"), transport=transport,
                                                    retry_policy=RetryPolicy(max_attempts=1)))
        with refused, pytest.raises(ConvaiError) as info:
            refused.connect(timeout=GENEROUS)
        texts += [str(info.value), repr(info.value), repr(info.value.error), repr(info.value.error.exception),
                  json.dumps(refused.diagnostics(), default=repr)]
    texts += [repr(event) for event in seen]
    texts += [record.getMessage() for record in caplog.records] + [caplog.text]
    leaked = [text[:200] for text in texts if CORE in text]
    assert leaked == []
    assert any("Reconnected" in text for text in texts)  # the run did reconnect
