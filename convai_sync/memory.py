"""``MemoryClient``: a character's Long-Term Memory of one end user, over Convai's REST gateway.

Convai extracts memories from a conversation when the session ends and gives them back to the
character at the next connect of the same ``end_user_id`` (Convai docs, "Long-Term Memory").
Its memory API lists (``page`` 1-1000, ``page_size`` 1-100, answering ``total_count`` and
``has_more``), adds (deduplicated), gets, deletes, and deletes all of an end user's memories
(asynchronously); errors are 400/401/403/404/429, and a 429 is to be retried after ``2**attempt``
seconds. Only the prefix ``/memory/`` is documented: the paths in :data:`PATHS` are PROPOSED (the
simulator serves the same table), kept here in one place so they can follow the real service.

Server side: it needs the API key, so it belongs on your backend, not in a shipped game.

Thread ownership: none of its own; a client may be used from several threads (each call is one
bounded HTTP request, plus backoff waits on the calling thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .errors import ErrorCode
from .rest import (
    DEFAULT_REST_URL,
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    RestApi,
    RestError,
    ServerError,
    rest_error,
)
from .validation import count, number, text

__all__ = ["PATHS", "AddResult", "AuthenticationError", "Memory", "MemoryClient", "MemoryPage", "NotFoundError",
           "RateLimitError", "RestError", "ServerError"]

#: PROPOSED paths of the memory API (only the ``/memory/`` prefix is documented). Every method is a
#: ``POST`` with a JSON body, as the rest of Convai's REST gateway is.
PATHS: Mapping[str, str] = {
    "list": "/memory/list",
    "add": "/memory/add",
    "get": "/memory/get",
    "delete": "/memory/delete",
    "delete_all": "/memory/delete-all",
}

MAX_PAGE = 1000
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Memory:
    """One remembered fact.

    Attributes:
        memory_id: Its id (``str``). text: The fact, e.g. ``"The user's name is Ada."``.
        end_user_id, character_id: Whose memory, of which character.
        created_at: When it was stored (aware UTC ``datetime``), or None if not given.
    """

    memory_id: str
    text: str
    end_user_id: str
    character_id: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class MemoryPage:
    """One page of :meth:`MemoryClient.list_page`: ``memories`` (tuple of :class:`Memory`), ``page``,
    ``page_size``, ``total_count`` (all memories of the pair) and ``has_more``."""

    memories: tuple[Memory, ...]
    page: int
    page_size: int
    total_count: int
    has_more: bool


@dataclass(frozen=True)
class AddResult:
    """What :meth:`MemoryClient.add` stored: ``added`` (new :class:`Memory` objects) and
    ``duplicates`` (how many texts were already remembered and were not stored again)."""

    added: tuple[Memory, ...]
    duplicates: int


def _field(name: str, spec: Any, value: Any) -> Any:
    """``spec.validate`` with the argument's name: raises ``ConfigurationError`` (a ValueError)."""
    return spec.validate(name, value)


_ID = text(strip=True)


def _ident(name: str, value: Any) -> str:
    checked: str = _field(name, _ID, value)
    if not checked:
        raise ValueError(f"{name} must be a non-empty str")
    return checked


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)
    return None


def _memory(item: Any, end_user_id: str, character_id: str, path: str) -> Memory:
    if not isinstance(item, dict) or not isinstance(item.get("memory_id"), str) or not isinstance(
            item.get("text"), str):
        raise rest_error(ErrorCode.CONNECTION_FAILED, f"POST {path}: a memory lacks memory_id or text", 200)
    return Memory(memory_id=item["memory_id"], text=item["text"],
                  end_user_id=str(item.get("end_user_id", end_user_id)),
                  character_id=str(item.get("character_id", character_id)),
                  created_at=_parse_time(item.get("created_at")))


class MemoryClient:
    """Long-Term Memory of end users, per character (Convai's memory API; paths PROPOSED).

    Args:
        api_key: The Convai API key (server side only).
        base_url: Convai's REST gateway (``https://api.convai.com``) or a simulator's ``url``.
        timeout: Seconds each HTTP request may take, in (0, 3600].
        max_retries: How many times a 429 is retried (``int`` in [0, 10]); then
            :class:`RateLimitError` is raised.
        max_backoff: Cap of one backoff wait, in seconds (the waits are ``2**attempt``: 1, 2, 4…).
        sleep: How to wait (default ``time.sleep``; a test passes a recorder).

    Raises:
        ValueError: a bad argument, naming it (never showing the key).
    """

    def __init__(self, api_key: str, *, base_url: str = DEFAULT_REST_URL, timeout: float = 10.0,
                 max_retries: int = 3, max_backoff: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._api = RestApi(api_key, base_url=base_url, timeout=timeout)
        self.max_retries: int = _field("max_retries", count(0, 10), max_retries)
        self.max_backoff = float(_field("max_backoff", number(0.0, 3600.0), max_backoff))
        if not callable(sleep):
            raise ValueError("sleep must be a callable taking seconds")
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"MemoryClient(base_url={self._api.base_url!r})"

    def __enter__(self) -> MemoryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the HTTP connections."""
        self._api.close()

    # ------------------------------------------------------------------ calls

    def _post(self, op: str, body: Mapping[str, Any]) -> Any:
        """One call, retrying HTTP 429 after 1, 2, 4… seconds (at most ``max_retries`` times)."""
        attempt = 0
        while True:
            try:
                return self._api.call("POST", PATHS[op], body=body)
            except RateLimitError:
                if attempt >= self.max_retries:
                    raise
                self._sleep(min(float(2 ** attempt), self.max_backoff))
                attempt += 1

    def list_page(self, end_user_id: str, character_id: str, *, page: int = 1, page_size: int = 20) -> MemoryPage:
        """One page of the memories of ``end_user_id`` with ``character_id``.

        Args:
            page: 1-based, ``int`` in [1, 1000]. page_size: ``int`` in [1, 100].

        Raises:
            ValueError: a bad argument, naming it (nothing is sent).
            NotFoundError: unknown end user or character (404). AuthenticationError,
                RateLimitError (after the retries), ServerError, RestError: see :class:`RestError`.
        """
        user = _ident("end_user_id", end_user_id)
        character = _ident("character_id", character_id)
        page = _field("page", count(1, MAX_PAGE), page)
        page_size = _field("page_size", count(1, MAX_PAGE_SIZE), page_size)
        data = self._post("list", {"end_user_id": user, "character_id": character, "page": page,
                                   "page_size": page_size})
        path = PATHS["list"]
        if not isinstance(data, dict) or not isinstance(data.get("memories"), list):
            raise rest_error(ErrorCode.CONNECTION_FAILED, f"POST {path}: the response has no memories list", 200)
        total, more = data.get("total_count"), data.get("has_more")
        if not isinstance(total, int) or not isinstance(more, bool):
            raise rest_error(ErrorCode.CONNECTION_FAILED,
                             f"POST {path}: the response lacks total_count or has_more", 200)
        return MemoryPage(tuple(_memory(m, user, character, path) for m in data["memories"]), page, page_size,
                          total, more)

    def list(self, end_user_id: str, character_id: str, *, page_size: int = 100) -> Iterator[Memory]:
        """Every memory of ``end_user_id`` with ``character_id``, fetched a page at a time as the
        iterator advances (pages 1..1000 of ``page_size`` in [1, 100]). Raises as :meth:`list_page`."""
        _ident("end_user_id", end_user_id)
        _ident("character_id", character_id)
        _field("page_size", count(1, MAX_PAGE_SIZE), page_size)
        return self._iterate(end_user_id, character_id, page_size)

    def _iterate(self, end_user_id: str, character_id: str, page_size: int) -> Iterator[Memory]:
        for page in range(1, MAX_PAGE + 1):
            result = self.list_page(end_user_id, character_id, page=page, page_size=page_size)
            yield from result.memories
            if not result.has_more or not result.memories:
                return

    def add(self, end_user_id: str, character_id: str, texts: Sequence[str]) -> AddResult:
        """Remember ``texts`` (a non-empty sequence of non-empty ``str``); a text already
        remembered is not stored twice (counted in ``AddResult.duplicates``).

        Raises:
            ValueError: a bad argument, naming it. Others as :meth:`list_page`.
        """
        user = _ident("end_user_id", end_user_id)
        character = _ident("character_id", character_id)
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
            raise ValueError(f"texts must be a non-empty sequence of str, got {type(texts).__name__}")
        items = [_ident(f"texts[{i}]", t) for i, t in enumerate(texts)]
        data = self._post("add", {"end_user_id": user, "character_id": character, "memories": items})
        path = PATHS["add"]
        if not isinstance(data, dict) or not isinstance(data.get("added"), list):
            raise rest_error(ErrorCode.CONNECTION_FAILED, f"POST {path}: the response has no added list", 200)
        duplicates = data.get("duplicates", 0)
        return AddResult(tuple(_memory(m, user, character, path) for m in data["added"]),
                         duplicates if isinstance(duplicates, int) else 0)

    def get(self, end_user_id: str, character_id: str, memory_id: str) -> Memory:
        """One memory by id. Raises :class:`NotFoundError` when there is none; others as :meth:`list_page`."""
        user = _ident("end_user_id", end_user_id)
        character = _ident("character_id", character_id)
        mid = _ident("memory_id", memory_id)
        data = self._post("get", {"end_user_id": user, "character_id": character, "memory_id": mid})
        return _memory(data, user, character, PATHS["get"])

    def delete(self, end_user_id: str, character_id: str, memory_id: str) -> None:
        """Forget one memory. Raises :class:`NotFoundError` when there is none; others as :meth:`list_page`."""
        user = _ident("end_user_id", end_user_id)
        character = _ident("character_id", character_id)
        mid = _ident("memory_id", memory_id)
        self._post("delete", {"end_user_id": user, "character_id": character, "memory_id": mid})

    def delete_all(self, end_user_id: str, character_id: str | None = None) -> None:
        """Forget every memory of ``end_user_id`` with ``character_id``, or with every character
        when None (deleting the end user's record). Convai runs it asynchronously; the simulator
        at once. Raises as :meth:`list_page`."""
        user = _ident("end_user_id", end_user_id)
        body: dict[str, Any] = {"end_user_id": user}
        if character_id is not None:
            body["character_id"] = _ident("character_id", character_id)
        self._post("delete_all", body)
