"""The simulator as a LiveKit server that the real ``livekit`` Python client joins (extra ``simulator-livekit``).

Convai's default transport is LiveKit: ``POST /connect`` answers a LiveKit ``room_url``, a ``room_name`` and a
participant JWT ``token``; the character is a participant of that room (kind AGENT, identity = the character
id); RTVI JSON travels as reliable data packets (``DataPacket{user: UserPacket{payload, topic=""}}``); the
character's voice is an audio track and the user's voice the user's microphone track. Here the same aiohttp
port serves LiveKit's signalling (``GET /rtc/v1``, protobuf ``SignalRequest``/``SignalResponse`` from
``livekit-protocol``) and aiortc terminates the WebRTC peer connection on the simulator's own loop.

Modules: :mod:`.tokens` (JWTs), :mod:`.service` (per-simulator LiveKit state, ``/connect`` answers),
:mod:`.signal` (the ``/rtc`` routes and one participant's signalling), :mod:`.room` (SIDs and protobuf
builders), :mod:`.peer` (aiortc, SDP, loopback-only ICE), :mod:`.media` (voice and hearing),
:mod:`.carrier` (the session's LiveKit carrier, where data packets become RTVI messages),
:mod:`.faults` (server-side ends as LiveKit delivers them).

Wire facts, with their public sources (LiveKit ``livekit/protocol`` ``livekit_rtc.proto`` /
``livekit_models.proto``, the Rust SDK ``livekit/rust-sdks`` ``livekit-api/src/signal_client`` and
``livekit/src/rtc_engine``, which ``livekit`` 1.2.x wraps):

* The client joins with ``GET {url}/rtc/v1?join_request=<base64url WrappedJoinRequest>`` and
  ``Authorization: Bearer <JWT>``; the ``JoinRequest`` already carries its publisher offer (one data
  m-line, 3 recvonly audio and 3 recvonly video m-lines). The client always offers, the server answers
  (single peer connection). A 404 on ``/rtc/v1`` makes the client fall back to the older ``/rtc`` mode,
  which is not served: ``/rtc`` answers 400 saying so.
* The server sends ``join`` first, answers every ``offer`` (same ``id``, ``mid_to_track_id`` for the
  character's track), a ``pong_resp`` for every ``ping_req`` (without pongs the client declares the
  signal lost), and ``track_published`` for every ``add_track`` (echoing ``cid``). SIDs carry LiveKit's
  prefixes ``RM_``, ``PA_``, ``TR_``.
* A remote track is matched by its media stream id ``PA_<participant>|TR_<track>``; its participant must
  already be known (``JoinResponse.other_participants`` or a ``ParticipantUpdate``).
* The client's 3 video m-lines are answered as rejected (port 0), so the client starts no video decoder
  (measured: 14 instead of 20 native threads in a connected client). When the client later recycles such
  an m-line for a new track (a microphone republished in another format), the simulator follows it
  (:mod:`.peer`); an offer it still cannot answer is reported to the client as a non-fatal RTVI ``error``,
  never only logged.

ICE is loopback-only by default: the simulator gathers and advertises only ``Simulator(livekit_host_addresses=
("127.0.0.1",))`` and contacts no STUN/TURN server. Pass other addresses to serve clients on other machines.
aioice ignores 127.0.0.1 when it gathers host addresses, so :mod:`.peer` scopes its own address list to the
simulator's peer connections through a context variable (other aiortc users in the process are unaffected).

Note on clients on this machine: libwebrtc ignores loopback adapters when it gathers its own candidates, so a
client on a machine whose only address is 127.0.0.1 cannot connect without help; the project's tests preload
``convai_sync.loopback`` (its ``loopback_shim.c``) for that. On a machine with a network interface no help is needed.

Real-client symptoms (``livekit`` 1.2.1 against this simulator, asserted by
``tests/test_livekit_faults.py`` and ``tests/test_livekit_ice_faults.py``):

.. Keep this table in step with the README section "LiveKit in the simulator".

=========================================  ====================================================================
Injected / server-side end                 What the real client shows (``room.on(...)`` events, error text)
=========================================  ====================================================================
``inject(DisconnectReason.X)``, any 0..16  ``disconnected(X)`` within ~10 ms, no ``reconnecting`` (a ``leave``
                                           with reason X; ``DUPLICATE_IDENTITY`` as a second join would cause)
a real second join, same identity          the older room: ``disconnected(DUPLICATE_IDENTITY)``; the newer one
                                           carries the session on
idle timeout, usage limit, kill-pipeline,  ``disconnected(ROOM_DELETED)``; the explaining message
``POST /disconnect``, token expiry,        (``usage-limit-reached``, RTVI ``error``, the ack) arrives first
``server.fatal_error``
``Simulator.stop()``                       ``disconnected(SERVER_SHUTDOWN)``
``transport.signal_disconnected``          ``reconnecting`` at once, then ``disconnected(STATE_MISMATCH)``
                                           within ~40 ms (resume refused)
``transport.livekit_error``                ``reconnecting``, then ``disconnected(UNKNOWN_REASON)`` (~30 ms)
``transport.ice_failed`` /                 nothing for ~15 s (libwebrtc's ICE timeout), then ``reconnecting``
``transport.peer_connection_failed``       and ``disconnected(MEDIA_FAILURE)``
``refuse_livekit_join(401|403|429)``       ``room.connect()`` raises ``ConnectError("engine: signal failure:
                                           handshake error: 401 Unauthorized")`` (403 Forbidden, 429 Too Many
                                           Requests) after ~0.1 s; the client tries 4 times per connect
``refuse_livekit_join(404)``               the client falls back to ``/rtc`` (v0), which repeats the 404:
                                           ``handshake error: 404 Not Found``
bad or foreign token                       ``ConnectError("... client error: 401 Unauthorized - invalid token:
                                           InvalidSignatureError")``
expired token (``token_ttl``)              ``ConnectError("... client error: 401 Unauthorized - invalid token:
                                           token is expired")``
=========================================  ====================================================================

Measured on loopback (``bench/livekit_loopback.py``, 2 cores): ``room.connect()`` p50 60 ms, max 75-180 ms;
data round trip (a ``reset-idle-timer`` and its ack) p50 0.8-1.4 ms, p99 1.3 ms; the client runs 2 native threads
before its first room and 13-14 with a connected room (20 if the video m-lines were accepted), and keeps 13 after
disconnecting, without growth over 50 rooms; an idle connected session costs the simulator's loop 0.2 % of a
core (no audio is sent between turns).
"""

from __future__ import annotations

import importlib.util
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    from simulator.core.state import SimCore

#: The packaging extra that installs the LiveKit side.
EXTRA = "simulator-livekit"
#: Modules the LiveKit side imports (importable names).
REQUIRED_MODULES = ("aiortc", "aioice", "av", "livekit.protocol", "livekit.api", "jwt")

AUDIO_ROUTINGS = ("audio_only", "data_only", "both")
OUTPUT_FIELDS = frozenset({"add_wav_header", "sample_rate", "max_chunk_duration_ms", "audio_routing"})


def missing_modules() -> list[str]:
    """The required modules that are not installed (empty when the LiveKit side can run)."""
    missing = []
    for name in REQUIRED_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def missing_extra_message() -> str:
    """What a LiveKit request is told when the extra is not installed."""
    return (
        "The simulator's LiveKit transport needs the extra "
        f"'{EXTRA}' (pip install 'convai-sync[{EXTRA}]'); missing: {', '.join(missing_modules()) or 'none'}"
    )


def check_audio_config(value: Any) -> dict[str, Any] | str:
    """Validate ``/connect``'s ``audio_config`` (Convai Realtime API ``audio_config.output``).

    Returns the effective output settings (``add_wav_header`` False, ``sample_rate`` None = the voice's own,
    ``max_chunk_duration_ms`` 100 rounded up to 10 ms within 10..1000, ``audio_routing`` ``"audio_only"``),
    or a message naming the bad field.
    """
    output: dict[str, Any] = {"add_wav_header": False, "sample_rate": None, "max_chunk_duration_ms": 100,
                              "audio_routing": "audio_only"}
    if value is None:
        return output
    if not isinstance(value, dict):
        return "audio_config must be an object"
    extra = set(value) - {"output"}
    if extra:
        return f"audio_config has unknown fields {sorted(extra)}"
    given = value.get("output")
    if given is None:
        return output
    if not isinstance(given, dict):
        return "audio_config.output must be an object"
    unknown = set(given) - OUTPUT_FIELDS
    if unknown:
        return f"audio_config.output has unknown fields {sorted(unknown)}"
    wav = given.get("add_wav_header", False)
    if not isinstance(wav, bool):
        return "audio_config.output.add_wav_header must be a boolean"
    rate = given.get("sample_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or not 8000 <= rate <= 48000):
        return "audio_config.output.sample_rate must be null or an int from 8000 to 48000 (Hz)"
    chunk = given.get("max_chunk_duration_ms", 100)
    if isinstance(chunk, bool) or not isinstance(chunk, (int, float)) or not 10 <= chunk <= 1000:
        return "audio_config.output.max_chunk_duration_ms must be a number from 10 to 1000"
    routing = given.get("audio_routing", "audio_only")
    if routing not in AUDIO_ROUTINGS:
        return f"audio_config.output.audio_routing must be one of {list(AUDIO_ROUTINGS)}"
    output.update(add_wav_header=wav, sample_rate=rate, max_chunk_duration_ms=int(math.ceil(chunk / 10) * 10),
                  audio_routing=routing)
    return output


def install(core: SimCore, app: web.Application) -> None:
    """Serve the LiveKit routes on ``app`` (or, without the extra, answers naming it)."""
    if missing_modules():
        from simulator.carriers.livekit.unavailable import add_unavailable_routes

        add_unavailable_routes(app, missing_extra_message)
        return
    from simulator.carriers.livekit import signal
    from simulator.carriers.livekit.service import LiveKitService

    core.livekit = LiveKitService(core)
    signal.add_routes(app, core.livekit)
