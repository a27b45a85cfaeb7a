"""``SessionStore``: ``character_session_id`` per character in a JSON file, so a restarted game
resumes the same conversation.

Convai's Unity SDK keeps the same thing in ``{persistentDataPath}/Convai/sessions.json`` (Convai
Unity SDK docs, "Session resume"). The file is a JSON object ``{"<character_id>":
"<character_session_id>", ...}``.

Writes are atomic and durable: the new content goes to a temporary file in the same folder, is
``fsync``-ed and then renamed over the old file (``os.replace``), so a process killed at any
moment leaves either the old or the new file, never a torn one. Every read-modify-write holds an
inter-process lock (``<path>.lock``, via the ``filelock`` package), so processes sharing the file
do not lose each other's entries. A corrupt or unreadable file logs a warning and counts as
empty: a bad file never stops a game from starting.

Thread ownership: none of its own; every method may be called from any thread (a ``threading``
lock orders the calls of one process, the file lock those of several).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger("convai_sync")

#: Seconds a call waits for another process's lock before giving up (logged, never raised).
LOCK_TIMEOUT = 5.0


class SessionStore:
    """Remembers the conversation (``character_session_id``) of each character across restarts.

    Args:
        path: The JSON file (``str`` or ``os.PathLike``); its folder is created on the first
            write. Use one file per player profile.

    Pass it as ``ConvaiConfig(session_store=SessionStore(path))``: a client without an explicit
    ``character_session_id`` resumes the stored one, records the one each connect returns, and
    ``ConvaiClient.reset_session()`` forgets it.

    Failures to read or write are logged (warning) and never raised: ``get`` then answers None,
    and the game goes on with a new conversation.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SessionStore({str(self.path)!r})"

    def get(self, character_id: str) -> str | None:
        """The stored ``character_session_id`` of ``character_id`` (``str``), or None."""
        value = self._read().get(character_id)
        return value if isinstance(value, str) and value else None

    def set(self, character_id: str, character_session_id: str) -> None:
        """Store ``character_session_id`` for ``character_id`` (atomic; other entries kept).

        Raises:
            TypeError: either argument is not a non-empty ``str``.
        """
        for name, value in (("character_id", character_id), ("character_session_id", character_session_id)):
            if not isinstance(value, str) or not value:
                raise TypeError(f"SessionStore.set: {name} must be a non-empty str, got {type(value).__name__}")
        self._update(character_id, character_session_id)

    def forget(self, character_id: str) -> None:
        """Remove ``character_id``'s entry (nothing happens if there is none)."""
        self._update(character_id, None)

    def entries(self) -> dict[str, str]:
        """A copy of every stored entry, ``{character_id: character_session_id}``."""
        return {k: v for k, v in self._read().items() if isinstance(v, str)}

    # ------------------------------------------------------------------ file I/O

    def _read(self) -> dict[str, object]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("session store %s is unreadable (%s); starting with no stored sessions", self.path, exc)
            return {}
        try:
            data = json.loads(text)
        except ValueError as exc:
            log.warning("session store %s is corrupt (%s); starting with no stored sessions", self.path, exc)
            return {}
        if not isinstance(data, dict):
            log.warning("session store %s holds a JSON %s, not an object; starting with no stored sessions",
                        self.path, type(data).__name__)
            return {}
        return data

    def _update(self, character_id: str, value: str | None) -> None:
        with self._thread_lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with FileLock(str(self._lock_path), timeout=LOCK_TIMEOUT):
                    data = self._read()
                    if data.get(character_id) == value or (value is None and character_id not in data):
                        return
                    if value is None:
                        del data[character_id]
                    else:
                        data[character_id] = value
                    self._remove_stale_temps()
                    self._write(data)
            except Timeout:
                log.warning("session store %s: another process held its lock for %g s; %s not recorded",
                            self.path, LOCK_TIMEOUT, character_id)
            except OSError as exc:
                log.warning("session store %s could not be written (%s); %s not recorded", self.path, exc,
                            character_id)

    def _remove_stale_temps(self) -> None:
        """Delete temporary files of writers killed mid-write (every writer holds the lock while its
        temporary file exists, so under the lock any such file is a dead writer's)."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            try:
                stale.unlink()
            except OSError as exc:
                log.debug("cannot remove %s: %s", stale, exc)

    def _write(self, data: dict[str, object]) -> None:
        """Temp file in the same folder, fsync, rename over the old file, fsync the folder."""
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=2, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            # Also on KeyboardInterrupt: never leave temp files behind.
            try:
                os.unlink(tmp)
            except OSError:
                log.debug("temporary file %s already gone", tmp)
            raise
        _fsync_dir(self.path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX; Windows cannot open a folder and needs no such step)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
