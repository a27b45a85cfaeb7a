"""TURN servers the LiveKit JoinResponse advertises (``Simulator(turn=URL)`` / ``convai-sim --turn URL``). Pure.

Convai's Web SDK joins its room relay-only (``iceTransportPolicy: "relay"``), so without a TURN server no ICE
candidate exists. A URL names an existing server with its credentials,
``turn://USER:PASSWORD@HOST:PORT[?transport=udp|tcp]`` (``turns://`` for TLS); ``"auto"`` runs a private coturn
(``simulator.carriers.livekit.coturn``). TURN URIs: RFC 7065.
"""

from __future__ import annotations

import dataclasses
import urllib.parse

AUTO = "auto"


class TurnUnavailable(RuntimeError):
    """``turn="auto"``: coturn's ``turnserver`` is not installed or did not start (the message says which,
    and names the Debian package ``coturn``)."""


@dataclasses.dataclass(frozen=True)
class TurnServer:
    """One ICE server as LiveKit's ``ICEServer`` and WebRTC's ``RTCIceServer`` carry it."""

    #: TURN URIs (RFC 7065), e.g. ``["turn:127.0.0.1:3478?transport=udp"]``.
    urls: tuple[str, ...]
    username: str = dataclasses.field(default="", repr=False)
    credential: str = dataclasses.field(default="", repr=False)


def parse_turn(url: str) -> TurnServer:
    """``turn://USER:PASSWORD@HOST:PORT[?transport=udp|tcp]`` (or ``turns://``) as a :class:`TurnServer`.

    Raises ValueError naming ``turn`` (without the password) when the URL is not of that form.
    """
    parts = urllib.parse.urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname}" if parts.hostname else "the given value"
    if parts.scheme not in ("turn", "turns") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"turn must be 'auto' or turn://USER:PASSWORD@HOST:PORT[?transport=udp|tcp], got {shown}")
    try:
        port = parts.port or (5349 if parts.scheme == "turns" else 3478)
    except ValueError:
        raise ValueError(f"turn: the port of {shown} is not a port number") from None
    if parts.username is None or parts.password is None:
        raise ValueError(f"turn: {shown} needs credentials (turn://USER:PASSWORD@HOST:PORT)")
    transport = urllib.parse.parse_qs(parts.query).get("transport", ["udp"])[0]
    if transport not in ("udp", "tcp"):
        raise ValueError(f"turn: transport must be udp or tcp, got {transport!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return TurnServer((f"{parts.scheme}:{host}:{port}?transport={transport}",),
                      urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password))
