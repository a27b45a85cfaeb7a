"""LiveKit participant JWTs, issued and verified with ``livekit-api`` (``AccessToken``, ``TokenVerifier``).
Issued and verified on the loop thread (the issuer is per simulator).

Each simulator signs with its own random secret, so a token from one simulator (or from LiveKit Cloud) is
refused by another. Claims follow LiveKit's access-token format (``iss`` = API key, ``sub`` = identity,
``video`` grants ``roomJoin``, ``room``, ``canPublish``, ``canSubscribe``, ``canPublishData``; LiveKit docs
"Tokens & grants").
"""

from __future__ import annotations

import datetime
import math
import secrets
from dataclasses import dataclass

import jwt
from livekit import api

#: LiveKit's own default token lifetime (``livekit-api`` ``DEFAULT_TTL``): 6 hours.
DEFAULT_TTL = 6 * 3600.0


@dataclass(frozen=True)
class Grant:
    """What a verified token lets its bearer do."""

    identity: str
    room: str
    name: str


class TokenRefused(Exception):
    """A token LiveKit would refuse; ``str()`` is the refusal text (it never contains the token)."""


class TokenIssuer:
    """Issues and verifies this simulator's participant tokens (loop thread or any thread; no state)."""

    def __init__(self, api_key: str = "sim-livekit") -> None:
        self.api_key = api_key
        self._secret = secrets.token_urlsafe(32)

    def __repr__(self) -> str:
        return f"TokenIssuer(api_key={self.api_key!r}, secret='***')"

    def issue(self, identity: str, room: str, ttl: float | None = None, *, name: str = "") -> str:
        """A participant JWT for ``identity`` in ``room``, valid ``ttl`` seconds (whole seconds, rounded up)."""
        seconds = DEFAULT_TTL if ttl is None else max(1, math.ceil(ttl))
        grants = api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True,
                                 can_publish_data=True)
        token = (api.AccessToken(self.api_key, self._secret).with_identity(identity).with_name(name or identity)
                 .with_grants(grants).with_ttl(datetime.timedelta(seconds=seconds)))
        return token.to_jwt()

    def verify(self, token: str) -> Grant:
        """The token's grant; raises TokenRefused for a bad signature, an expired token or missing grants."""
        if not token:
            raise TokenRefused("no access token: send Authorization: Bearer <token>")
        verifier = api.TokenVerifier(self.api_key, self._secret, leeway=datetime.timedelta(0))
        try:
            claims = verifier.verify(token)
        except jwt.ExpiredSignatureError:
            raise TokenRefused("invalid token: token is expired") from None
        except (jwt.InvalidTokenError, ValueError) as exc:
            raise TokenRefused(f"invalid token: {type(exc).__name__}") from None
        video = claims.video
        if video is None or not video.room_join or not video.room:
            raise TokenRefused("permissions denied: the token grants no roomJoin for a room")
        if not claims.identity:
            raise TokenRefused("invalid token: no identity")
        return Grant(claims.identity, video.room, claims.name or claims.identity)
