"""The thread-safe methods of :class:`simulator.Simulator` for auth tokens, the REST gateway and memory.

A mixin beside :class:`simulator.operations.SimulatorOperations`: each method hands its work to the
simulator's loop thread through ``_call`` (see that module), so it may be called from any other thread.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from simulator.core import restfaults
from simulator.core.state import SimCore

T = TypeVar("T")


class AccountOperations:
    """REST faults, tokens and Long-Term Memory of a running simulator."""

    def _call(self, factory: Callable[[SimCore], Coroutine[Any, Any, T]], timeout: float = 5.0) -> T:
        raise NotImplementedError

    @property
    def api_key(self) -> str:
        raise NotImplementedError

    def inject_rest_fault(self, operation: str, status: int, times: int = 1) -> None:
        """Answer the next ``times`` calls of a REST ``operation`` with HTTP ``status`` and the gateway's
        ``{"ERROR": ...}`` envelope (401 invalid key, 429 rate limit, 500…).

        Args:
            operation: ``"mint"``, ``"extend"``, ``"revoke"`` (``/user/connect``, ``/user/extend-token``,
                ``/user/revoke-token``) or ``"memory.list"``, ``"memory.add"``, ``"memory.get"``,
                ``"memory.delete"``, ``"memory.delete_all"``.
            status: An HTTP error status, 400..599. times: A positive int.

        Raises:
            ValueError: a bad argument, naming it.
        """
        restfaults.check(operation, status, times)

        async def queue(core: SimCore) -> None:
            core.rest_faults.add(operation, status, times)
        self._call(queue)

    def mint_token(self, api_key: str | None = None) -> str:
        """A fresh auth token of ``api_key`` (default: the first key), as ``POST /user/connect`` mints."""
        key = self.api_key if api_key is None else api_key

        async def mint(core: SimCore) -> str:
            if not core.accounts.knows_key(key):
                raise ValueError("unknown api_key")
            return (await core.store.mint_token(key))[0]
        return self._call(mint)

    def token_stats(self) -> dict[str, int]:
        """``{"tokens": minted and remembered, "active": neither consumed, revoked nor expired}``."""
        async def read(core: SimCore) -> dict[str, int]:
            return await core.store.token_counts()
        return self._call(read)

    def memories(self, end_user_id: str, character_id: str | None = None, api_key: str | None = None) -> list[str]:
        """The texts the character (default: the first) remembers of ``end_user_id``, oldest first."""
        key = self.api_key if api_key is None else api_key

        async def read(core: SimCore) -> list[str]:
            character = character_id or core.config.characters[0]
            return [m.text for m in await core.store.memories(key, end_user_id, character)]
        return self._call(read)
