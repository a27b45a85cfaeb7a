"""Short-lived auth tokens: minted, extended and revoked per API key, resolved at ``/connect``.

Convai's Web SDK docs ("Auth tokens"): ``POST /user/connect`` (header ``CONVAI-API-KEY``) mints a
token that lives one hour, ``/user/extend-token`` and ``/user/revoke-token`` take
``{"apiAuthToken"}``; a running session is never re-checked, so revoking or expiry ends nothing.
PROPOSED here, where the docs are silent: a token is consumed by the first ``/connect`` that
presents it (the docs name "already consumed" tokens; ``single_use=False`` turns it off), extending
restarts the full lifetime from now, and the 401 ``detail`` texts below.

Pure state, no I/O; owned by the loop thread. Times come from ``clock`` (monotonic seconds: the
simulator's clock, a virtual one in tests); ``expirationTime`` is reported as ISO 8601 UTC wall time,
counted on ``clock`` from the wall time at which the store was made.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

DEFAULT_TTL = 3600.0
#: Tokens kept per simulator; past it the oldest spent ones are forgotten (then "unknown").
MAX_TOKENS = 100_000


class Refusal(enum.Enum):
    """Why ``/connect`` refused a token; the value is the 401 ``detail`` (PROPOSED texts)."""

    UNKNOWN = "Invalid API-AUTH-TOKEN"
    EXPIRED = "API-AUTH-TOKEN has expired"
    CONSUMED = "API-AUTH-TOKEN has already been consumed; mint a new token for each connection"
    REVOKED = "API-AUTH-TOKEN has been revoked"


def new_token() -> str:
    """A fresh random token text (``sim-token-`` and 32 URL-safe characters)."""
    return f"sim-token-{secrets.token_urlsafe(24)}"


@dataclass
class _Token:
    api_key: str
    expires: float  # on ``clock``
    consumed: bool = False
    revoked: bool = False


class TokenStore:
    """The tokens of one simulator.

    Args:
        clock: Monotonic seconds (the simulator's clock).
        ttl: Lifetime of a minted or extended token, seconds.
        single_use: The first ``/connect`` consumes a token.
    """

    def __init__(self, clock: Callable[[], float], ttl: float = DEFAULT_TTL, single_use: bool = True) -> None:
        self._clock = clock
        self.ttl = ttl
        self.single_use = single_use
        self._tokens: dict[str, _Token] = {}
        # Wall time is anchored once, so expiration times move with ``clock`` (a virtual one too).
        self._wall_anchor = datetime.now(timezone.utc)
        self._clock_anchor = clock()

    def fresh(self) -> TokenStore:
        """An empty store with this one's clock, lifetime and single-use rule (a reset)."""
        return TokenStore(self._clock, self.ttl, self.single_use)

    def expiration_time(self, token: str) -> str:
        """The token's expiry as ISO 8601 UTC wall time (``"2026-01-01T12:00:00+00:00"``)."""
        offset = self._tokens[token].expires - self._clock_anchor
        return (self._wall_anchor + timedelta(seconds=offset)).isoformat()

    def mint(self, api_key: str) -> str:
        """A new token of ``api_key``, valid for ``ttl`` seconds."""
        if len(self._tokens) >= MAX_TOKENS:
            self._forget_oldest()
        token = new_token()
        self._tokens[token] = _Token(api_key, self._clock() + self.ttl)
        return token

    def _forget_oldest(self) -> None:
        for token in list(self._tokens)[: max(1, MAX_TOKENS // 10)]:
            del self._tokens[token]

    def _usable(self, token: str, api_key: str) -> _Token | None:
        entry = self._tokens.get(token)
        if entry is None or entry.api_key != api_key or entry.revoked or self._clock() >= entry.expires:
            return None
        return entry

    def extend(self, api_key: str, token: str) -> bool:
        """Restart ``token``'s lifetime (PROPOSED: a full ``ttl`` from now). False when ``api_key``
        did not mint it, or it is revoked or expired."""
        entry = self._usable(token, api_key)
        if entry is None:
            return False
        entry.expires = self._clock() + self.ttl
        return True

    def revoke(self, api_key: str, token: str) -> bool:
        """No later ``/connect`` accepts ``token``. False when ``api_key`` did not mint it."""
        entry = self._tokens.get(token)
        if entry is None or entry.api_key != api_key:
            return False
        entry.revoked = True
        return True

    def knows(self, token: str) -> bool:
        return token in self._tokens

    def use(self, token: str) -> str | Refusal:
        """At ``/connect``: the API key ``token`` stands for (consuming it when single-use), or why not."""
        entry = self._tokens.get(token)
        if entry is None:
            return Refusal.UNKNOWN
        if entry.revoked:
            return Refusal.REVOKED
        if self._clock() >= entry.expires:
            return Refusal.EXPIRED
        if entry.consumed:
            return Refusal.CONSUMED
        if self.single_use:
            entry.consumed = True
        return entry.api_key

    def state(self) -> dict[str, int]:
        """Counts for diagnostics (never the tokens themselves)."""
        now = self._clock()
        return {"tokens": len(self._tokens),
                "active": sum(1 for t in self._tokens.values()
                              if not t.revoked and not t.consumed and now < t.expires)}
