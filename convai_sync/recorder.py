"""The JSON-lines recorder behind ``ConvaiConfig(record_to=...)``: one line per message, both ways.

Thread notes: written from the transport's reader thread (messages in) and from the threads that send
(messages out); one lock orders its lines. ``convai_sync.recording`` wraps each attempt's transport to feed
it. Each line is one JSON object::

    {"t": 1.234567, "dir": "out", "transport": "websocket", "frame": {...}}   # an RTVI message sent
    {"t": 1.301002, "dir": "in", "transport": "websocket", "frame": {...}}    # an RTVI message received
    {"t": 0.000120, "event": "open", "transport": "livekit", "session_id": "...", "character_session_id": "..."}
    {"t": 5.002000, "event": "closed", "transport": "websocket", "code": 1000, "reason": "...", ...}
    {"t": 5.100000, "event": "send_failed", "transport": "websocket", "error": "ConnectionError"}  # the "out" before it

``t`` is seconds on ``time.monotonic()`` since the recorder was made. A message that is not JSON is kept as
``"text"``; a binary message that is not UTF-8 only as its size (``"bytes"``); audio is not recorded. Credentials are
redacted: the API key, in every form ``convai_sync.redact`` knows, becomes ``***``, and no connect token is
written. The simulator replays such a file (``convai-sim --replay FILE``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import IO, Any

from .redact import key_scrubber
from .validation import Spec


class SessionRecorder:
    """Writes a session's messages as JSON lines to ``target`` (a path, opened for writing, or an open text
    stream the caller owns). Pass it as ``ConvaiConfig(record_to=recorder)`` to share one recording between
    clients or to keep the stream; :meth:`close` closes a file it opened.

    Args:
        target: a file path (``str`` or ``os.PathLike``; created or truncated, UTF-8) or a writable text
            stream.
        api_key: redacted from every line (``ConvaiClient`` also passes its config's key).
    """

    def __init__(self, target: str | os.PathLike[str] | IO[str], api_key: str = "") -> None:
        if isinstance(target, (str, os.PathLike)):
            self._stream: IO[str] = Path(target).open("w", encoding="utf-8")  # noqa: SIM115 - kept until close()
            self._owned = True
        else:
            self._stream = target
            self._owned = False
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._scrubbers = [key_scrubber(api_key)] if api_key else []
        self._closed = False

    def __repr__(self) -> str:
        return f"SessionRecorder(closed={self._closed})"

    def redact(self, api_key: str) -> None:
        """Also redact ``api_key`` from every later line."""
        if api_key:
            self._scrubbers.append(key_scrubber(api_key))

    def _scrub(self, text: str) -> str:
        for scrub in self._scrubbers:
            text = scrub(text)
        return text

    def write(self, entry: dict[str, Any]) -> None:
        """Add one line (``t`` is set here); after :meth:`close` nothing is written."""
        line = self._scrub(json.dumps(entry, ensure_ascii=False))
        with self._lock:
            if self._closed:
                return
            self._stream.write(f'{{"t": {time.monotonic() - self._start:.6f}, {line[1:]}\n')
            self._stream.flush()

    def message(self, direction: str, transport: str, data: str | bytes) -> None:
        """Record one message going ``direction`` (``"in"`` or ``"out"``) on ``transport``."""
        entry: dict[str, Any] = {"dir": direction, "transport": transport}
        if isinstance(data, bytes):  # LiveKit data packets arrive as bytes: RTVI JSON in UTF-8
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                entry["bytes"] = len(data)
                self.write(entry)
                return
        try:
            entry["frame"] = json.loads(data)
        except ValueError:
            entry["text"] = data
        self.write(entry)

    def close(self) -> None:
        """Stop recording; closes the file when the recorder opened it (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._owned:
                self._stream.close()


class RecordingSpec(Spec):
    """``record_to``: a non-empty path (``str`` or ``os.PathLike``) or a :class:`SessionRecorder`."""

    def expected(self) -> str:
        return "a file path (str or os.PathLike) or a SessionRecorder"

    def problem(self, value: Any) -> str | None:
        if isinstance(value, SessionRecorder):
            return None
        if isinstance(value, str):
            return None if value.strip() else "the path is empty"
        return None if isinstance(value, os.PathLike) else ""
