"""``SessionStore``: atomic JSON of ``character_session_id`` per character, a killed writer never corrupts it,
concurrent processes keep each other's entries, a bad file never crashes; the client resumes from it after
a restart on both transports; ``device_end_user_id`` is stable."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from convai_sync import ConvaiClient, ConvaiConfig, SessionStore
from convai_sync.identity import device_end_user_id
from simulator import Simulator

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
WAIT = 20.0


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


# ============================================================================ the store itself


def test_get_set_forget_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "profile" / "sessions.json"  # the folder is made on the first write
    store = SessionStore(path)
    assert store.get("ada") is None
    store.set("ada", "csid-1")
    store.set("bob", "csid-2")
    store.set("ada", "csid-3")
    assert SessionStore(path).get("ada") == "csid-3"  # another instance (a restarted game) reads it
    assert json.loads(path.read_text()) == {"ada": "csid-3", "bob": "csid-2"}
    store.forget("ada")
    store.forget("nobody")
    assert store.entries() == {"bob": "csid-2"}
    assert repr(store) == f"SessionStore({str(path)!r})"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\udcff".encode("utf-8", "surrogateescape").decode(
    "latin-1"), ""], ids=["broken", "array", "bytes", "empty"])
def test_a_corrupt_file_logs_a_warning_and_starts_fresh(tmp_path: Path, content: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "sessions.json"
    path.write_bytes(content.encode("latin-1"))
    store = SessionStore(path)
    with caplog.at_level(logging.WARNING, logger="convai_sync"):
        assert store.get("ada") is None
    assert any("starting with no stored sessions" in r.getMessage() for r in caplog.records)
    store.set("ada", "csid-1")  # and it heals on the next write
    assert json.loads(path.read_text()) == {"ada": "csid-1"}


def test_an_unwritable_place_logs_and_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = SessionStore(blocker / "sessions.json")  # its folder would have to be inside a file
    with caplog.at_level(logging.WARNING, logger="convai_sync"):
        store.set("ada", "csid-1")
        assert store.get("ada") is None
    assert any("could not be written" in r.getMessage() for r in caplog.records)


def test_set_refuses_non_strings(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "s.json")
    with pytest.raises(TypeError, match="character_session_id"):
        store.set("ada", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="character_id"):
        store.set("", "csid")


WRITER = """
import json, os, sys, threading, uuid
from convai_sync import SessionStore
path, mode = sys.argv[1], sys.argv[2]


def torn_dump(data, out, **kwargs):  # half the new content reaches the disk, then the process dies
    text = json.dumps(data, **kwargs)
    out.write(text[: len(text) // 2])
    out.flush()
    os.fsync(out.fileno())
    print("in-write", flush=True)
    threading.Event().wait()


def stalled_replace(src, dst):  # the new content is complete and synced; the rename never happens
    print("in-write", flush=True)
    threading.Event().wait()


store = SessionStore(path)
i = 0
while True:
    if mode == "torn" and i == 3:
        json.dump = torn_dump
    if mode == "before-rename" and i == 3:
        os.replace = stalled_replace
    store.set(f"char-{i % 7}", f"{uuid.uuid4()}-{i}")
    print(i, flush=True)
    i += 1
"""


def _kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    for stream in (child.stdout, child.stderr):
        if stream is not None:
            stream.close()


def test_a_writer_killed_mid_write_never_leaves_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    # A large file makes every write long, so the kills at random points land inside writes too.
    big = {f"padding-{n:05d}": "x" * 64 for n in range(3000)}
    path.write_text(json.dumps(big))
    rng = random.Random(21)
    for round_number in range(12):
        mode = ("random", "torn", "before-rename")[round_number % 3]
        child = _python(WRITER, str(path), mode)
        assert child.stdout is not None
        if mode == "random":
            for _ in range(rng.randint(1, 15)):  # let it finish a few writes, then kill it wherever it is
                assert child.stdout.readline(), child.stderr.read() if child.stderr else ""
            _kill(child)
        else:
            lines = [child.stdout.readline() for _ in range(4)]
            assert lines == ["0\n", "1\n", "2\n", "in-write\n"], child.stderr.read() if child.stderr else ""
            before = path.read_text()
            _kill(child)  # inside the 4th write, whose temporary file is on disk
            assert list(tmp_path.glob(".sessions.json.*.tmp")), "the kill did not land inside a write"
            assert path.read_text() == before  # the old file, untouched
        data = json.loads(path.read_text())  # old or new, never torn
        assert isinstance(data, dict) and all(data.get(k) == v for k, v in big.items())
        assert any(key.startswith("char-") for key in data)
    store = SessionStore(path)
    store.set("after", "csid")  # a later writer is not blocked by a killed one's lock
    assert store.get("after") == "csid"
    assert not list(tmp_path.glob(".sessions.json.*.tmp"))  # and it cleared the dead writers' leftovers


CONCURRENT = """
import sys
from convai_sync import SessionStore
store = SessionStore(sys.argv[1])
for i in range(25):
    store.set(f"char-{sys.argv[2]}-{i}", f"csid-{sys.argv[2]}-{i}")
"""


def test_concurrent_processes_keep_each_others_entries(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    children = [_python(CONCURRENT, str(path), str(n)) for n in range(4)]
    for child in children:
        _out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    data = json.loads(path.read_text())
    assert data == {f"char-{n}-{i}": f"csid-{n}-{i}" for n in range(4) for i in range(25)}


# ============================================================================ the client resumes after a restart


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator() as server:
        yield server


def _text_only(sim: Simulator, transport: str, path: Path) -> ConvaiConfig:
    """A client whose sessions live in ``path``; text only, since over LiveKit each ask() would otherwise
    wait the reply's voice out in real time."""
    return sim.client_config(transport=transport, session_store=SessionStore(path), tts_enabled=False)


@pytest.mark.parametrize("transport", ["websocket", "livekit"])
def test_a_restarted_game_resumes_the_same_conversation(sim: Simulator, tmp_path: Path, transport: str) -> None:
    path = tmp_path / "sessions.json"
    with ConvaiClient(_text_only(sim, transport, path)) as first:
        first.connect(timeout=WAIT)
        csid = first.character_session_id
        assert csid and SessionStore(path).get(sim.character_id) == csid
        assert "turn 1" in first.ask("My name is Ada", timeout=WAIT).text
    # The game restarts: a new store object and client read the file.
    with ConvaiClient(_text_only(sim, transport, path)) as second:
        assert second.character_session_id == csid
        second.connect(timeout=WAIT)
        (session,) = [s for s in sim.sessions if s.session_id == second.session_id]
        assert session.character_session_id == csid
        assert "turn 2" in second.ask("Hello again", timeout=WAIT).text
        second.reset_session()
    assert SessionStore(path).get(sim.character_id) is None
    with ConvaiClient(_text_only(sim, transport, path)) as third:
        third.connect(timeout=WAIT)
        assert third.character_session_id != csid
        assert SessionStore(path).get(sim.character_id) == third.character_session_id


def test_an_explicit_character_session_id_wins_over_the_store(sim: Simulator, tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "s.json")
    store.set(sim.character_id, "11111111-1111-4111-8111-111111111111")
    explicit = "22222222-2222-4222-8222-222222222222"
    with ConvaiClient(sim.client_config(session_store=store, character_session_id=explicit)) as client:
        assert client.character_session_id == explicit


# ============================================================================ device end-user id


def test_device_end_user_id_is_made_once_and_read_back(tmp_path: Path) -> None:
    first = device_end_user_id("MyGame", folder=tmp_path)
    assert first.startswith("device-") and len(first) == len("device-") + 32
    assert device_end_user_id("MyGame", folder=tmp_path) == first
    assert (tmp_path / "end_user_id").read_text() == first
    assert [p.name for p in tmp_path.iterdir()] == ["end_user_id"]  # no temporary file left


def test_a_corrupt_device_id_file_is_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "end_user_id").write_text("bad id with spaces")
    with caplog.at_level(logging.WARNING, logger="convai_sync"):
        new = device_end_user_id("MyGame", folder=tmp_path)
    assert new.startswith("device-") and device_end_user_id("MyGame", folder=tmp_path) == new
    assert any("no valid id" in r.getMessage() for r in caplog.records)


def test_device_end_user_id_uses_the_users_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))  # platformdirs' Linux data folder
    made = device_end_user_id("MyGame")
    assert (tmp_path / "MyGame" / "end_user_id").read_text() == made
    with pytest.raises(ValueError, match="app_name"):
        device_end_user_id("  ")


DEVICE = """
import sys
from convai_sync.identity import device_end_user_id
print(device_end_user_id("MyGame", folder=sys.argv[1]))
"""


def test_processes_starting_together_agree_on_one_device_id(tmp_path: Path) -> None:
    children = [_python(DEVICE, str(tmp_path)) for _ in range(4)]
    ids = set()
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        ids.add(out.strip())
    assert len(ids) == 1
