"""A stable end-user id for this device: a random id made once and kept in the user's data folder.

Characters with Long-Term Memory need an ``end_user_id`` (Convai realtime API docs,
"Identifiers"); Convai's Unity SDK defaults it to a per-device GUID (``DeviceEndUserIdProvider``).
:func:`device_end_user_id` does the same, opt-in::

    config = ConvaiConfig(..., end_user_id=device_end_user_id("MyGame"))

The id lives in ``platformdirs.user_data_dir(app_name)/end_user_id`` (e.g.
``~/.local/share/MyGame/end_user_id`` on Linux, ``%LOCALAPPDATA%\\MyGame\\end_user_id`` on Windows);
it is written atomically, so two processes starting together agree on one id.

Thread ownership: none; callable from any thread.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from pathlib import Path

from platformdirs import user_data_dir

log = logging.getLogger("convai_sync")

FILE_NAME = "end_user_id"


def _read(path: Path) -> str | None:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("device end-user id file %s is unreadable (%s); making a new id", path, exc)
        return None
    if value and len(value) <= 128 and all("!" <= ch <= "~" for ch in value):
        return value
    log.warning("device end-user id file %s holds no valid id; making a new id", path)
    return None


def device_end_user_id(app_name: str = "convai_sync", *, folder: str | os.PathLike[str] | None = None) -> str:
    """This device's end-user id (``"device-<32 hex digits>"``), made on the first call and read
    back on every later one, across restarts.

    Args:
        app_name: Names the folder under the user's data directory (use your game's name).
        folder: Keep the id in this folder instead (tests, portable installs).

    Returns:
        The id (``str``), stable for this user account and ``app_name`` on this device.

    Raises:
        ValueError: ``app_name`` is empty or not a ``str``.
        OSError: the folder cannot be created or written.
    """
    if not isinstance(app_name, str) or not app_name.strip():
        raise ValueError(f"app_name must be a non-empty str, got {app_name!r}")
    where = Path(folder) if folder is not None else Path(user_data_dir(app_name.strip(), appauthor=False))
    path = where / FILE_NAME
    existing = _read(path)
    if existing is not None:
        return existing
    where.mkdir(parents=True, exist_ok=True)
    new_id = f"device-{uuid.uuid4().hex}"
    fd, tmp = tempfile.mkstemp(prefix=f".{FILE_NAME}.", suffix=".tmp", dir=where)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(new_id)
            out.flush()
            os.fsync(out.fileno())
        try:
            # link() fails if another process made the file first: then its id wins, not ours.
            os.link(tmp, path)
        except FileExistsError:
            if _read(path) is None:  # a corrupt file (warned about above) is replaced
                os.replace(tmp, path)
        except OSError:
            os.replace(tmp, path)  # a file system without hard links
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    winner = _read(path)
    if winner is None:
        raise OSError(f"could not store the device end-user id in {path}")
    return winner
