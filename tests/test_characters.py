"""Character definitions: parsing (errors name the file, the character and the field; nothing loads half),
the shipped samples, and every way to load them (constructor, file, CLI, control API, pytest plugin)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from simulator import Simulator
from simulator.core.characters import (
    CharacterDefinition,
    CharacterError,
    fill,
    load_characters_file,
    parse_characters,
    shipped_character,
    shipped_character_names,
    shipped_characters_dir,
)
from tests.sim_helpers import close_all_sockets, etype, open_session, recv_until, send
from tests.test_simulator_cli import CliProcess, cli, start  # noqa: F401  (the cli fixture)

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(30)

SHOP = {"id": "shop", "name": "Mira", "replies": [{"pattern": "hello", "reply": "Welcome, {player_name}!"},
                                                  {"pattern": "^bye", "reply": None}]}


@pytest.fixture(autouse=True)
def _sockets() -> Iterator[None]:
    yield
    close_all_sockets()


def write(tmp_path: Path, document: Any, name: str = "chars.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


# ------------------------------------------------------------------ parsing


def test_plain_ids_and_mappings_parse_with_defaults() -> None:
    plain, mapped = parse_characters(["npc", SHOP])
    assert plain == CharacterDefinition(id="npc") and plain.display_name == "npc"
    assert plain.lipsync and not plain.long_term_memory and plain.languages == ("en-US",)
    assert plain.delays.stt > 0 and plain.narrative is None
    assert mapped.display_name == "Mira" and len(mapped.replies) == 2
    reply = mapped.scripted_reply("well HELLO there")
    assert reply is not None and reply.reply == "Welcome, {player_name}!"
    silent = mapped.scripted_reply("bye now")
    assert silent is not None and silent.reply is None
    assert mapped.scripted_reply("nothing matches") is None


@pytest.mark.parametrize("definition, field", [
    ({"id": "x", "lipsync": "yes"}, "'lipsync'"),
    ({"id": "x", "delays": {"stt": -1}}, "'delays.stt'"),
    ({"id": "x", "delays": {"think": 1}}, "'delays.think'"),
    ({"id": "x", "replies": [{"pattern": "(", "reply": "r"}]}, "'replies[0].pattern'"),
    ({"id": "x", "replies": [{"pattern": "a"}]}, "'replies[0].reply'"),
    ({"id": "x", "actions": ["Give", "give"]}, "'actions[1]'"),
    ({"id": "x", "objects": [{"description": "no name"}]}, "'objects[0].name'"),
    ({"id": "x", "narrative": {"sections": []}}, "'narrative.sections'"),
    ({"id": "x", "narrative": {"start": "a", "sections": [{"id": "a", "triggers": {"go": "nowhere"}}]}},
     "'narrative.sections[0].triggers.go'"),
    ({"id": "x", "narrative": {"start": "b", "sections": [{"id": "a"}]}}, "'narrative.start'"),
    ({"id": "x", "voice": "deep"}, "'voice'"),
    ({"name": "nameless"}, "'id'"),
])
def test_a_bad_field_is_named_with_its_file_and_character(tmp_path: Path, definition: dict[str, Any],
                                                          field: str) -> None:
    path = write(tmp_path, {"characters": [SHOP, definition]})
    with pytest.raises(CharacterError) as caught:
        load_characters_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    label = f"character {definition['id']!r}" if "id" in definition else "character #1"
    assert label in message and f"field {field}" in message, message


def test_file_level_errors_name_the_file(tmp_path: Path) -> None:
    for document, text in (("[", "not valid JSON"), ("[" * 100_000, "not valid JSON: JSON nested deeper than"),
                           (b"[\"\xff\"]", "not valid JSON: invalid UTF-8"),
                           ('{"people": []}', "unknown top-level key 'people'"),
                           ("[]", "at least one character"),
                           ('[{"id": "a"}, {"id": "a"}]', "character 'a': field 'id': defined twice")):
        path = tmp_path / "bad.json"
        path.write_bytes(document if isinstance(document, bytes) else document.encode("utf-8"))
        with pytest.raises(CharacterError, match=f"^{path}: .*{text}"):
            load_characters_file(path)
    with pytest.raises(CharacterError, match="missing.json: cannot read"):
        load_characters_file(tmp_path / "missing.json")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opening it would block until a writer came: it is refused unopened
    with pytest.raises(CharacterError, match=f"^{fifo}: not a regular file"):
        load_characters_file(fifo)


def test_template_fill_leaves_unknown_placeholders() -> None:
    assert fill("Hi {player_name}, {unknown}", {"player_name": "Ada"}) == "Hi Ada, {unknown}"
    assert fill("{{literal}} {text}", {"text": "hello"}) == "{literal} hello"


@pytest.mark.parametrize("template, problem", [
    ("Hi {player_name", "expected '}' before end of string"),
    ("Hi player_name}", "Single '}' encountered"),
    ("Hi {", "Single '{' encountered"),
    ("Hi {}", "positional placeholder {}"),
    ("Hi {0}", "positional placeholder {0}"),
    ("Hi {player.name}", "placeholder for 'player.name' is not a plain {name}"),
    ("Hi {players[0]}", "placeholder for 'players[0]' is not a plain {name}"),
    ("Hi {player_name!r}", "placeholder for 'player_name' is not a plain {name}"),
    ("Hi {player_name:>10}", "placeholder for 'player_name' is not a plain {name}"),
])
@pytest.mark.parametrize("where", ["replies[0].reply", "narrative.sections[0].speech",
                                   "narrative.sections[0].objective"])
def test_a_bad_template_is_refused_at_load_naming_character_field_and_template(
        tmp_path: Path, template: str, problem: str, where: str) -> None:
    definition: dict[str, Any] = {"id": "bard"}
    if where.startswith("replies"):
        definition["replies"] = [{"pattern": "sing", "reply": template}]
    else:
        definition["narrative"] = {"sections": [{"id": "a", where.rsplit(".", 1)[1]: template}]}
    path = write(tmp_path, {"characters": [SHOP, definition]})
    with pytest.raises(CharacterError) as caught:
        load_characters_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: character 'bard': field '{where}': template {template!r}: "), message
    assert problem in message, message
    with pytest.raises(CharacterError, match="character 'bard'"):  # the constructor's list is checked alike
        parse_characters([definition])


def test_every_template_of_the_shipped_samples_fills() -> None:
    keys = {"player_name": "Ada", "sword_price": "12", "text": "hi"}
    for name in shipped_character_names():
        for definition in load_characters_file(shipped_character(name)):
            templates = [r.reply for r in definition.replies if r.reply is not None]
            if definition.narrative is not None:
                templates += [s.objective for s in definition.narrative.sections]
                templates += [s.speech for s in definition.narrative.sections if s.speech is not None]
            assert templates, name
            for template in templates:
                assert "{" not in fill(template, keys), (name, template)


def test_shipped_samples_load() -> None:
    assert set(shipped_character_names()) >= {"shopkeeper", "greeter"}
    (shop,) = load_characters_file(shipped_character("shopkeeper"))
    assert shop.actions == ("Move To", "Pick Up", "Give")
    assert [o.name for o in shop.objects] == ["sword", "shield", "potion", "counter"]
    assert shop.narrative is not None and len(shop.narrative.sections) == 3
    assert shop.narrative.section("greeting").triggers == {"enter_shop": "browsing"}
    (greeter,) = load_characters_file(shipped_character("greeter"))
    assert greeter.narrative is None and greeter.languages == ("en-US", "de-DE")
    with pytest.raises(KeyError):  # exists, but is a path rather than a shipped name
        shipped_character("../characters/shopkeeper")
    with pytest.raises(KeyError):
        shipped_character("nobody")


# ------------------------------------------------------------------ loading into a simulator


def test_bad_definition_refuses_the_simulator_and_define_changes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="character 'x': field 'lipsync'"):
        Simulator(characters=["ok", {"id": "x", "lipsync": 1}])
    with Simulator(characters=[SHOP]) as sim:
        with pytest.raises(CharacterError, match="character 'bad'"):
            sim.define_characters([{"id": "new"}, {"id": "bad", "replies": "no"}])
        assert [d.id for d in sim.characters] == ["shop"]
        assert post_connect_status(sim, "new") == 404  # nothing loaded half


def post_connect_status(sim: Simulator, character_id: str) -> int:
    return requests.post(f"{sim.url}/connect", json={"character_id": character_id, "transport": "websocket"},
                         headers={"x-api-key": sim.api_key}, timeout=5).status_code


def ask_raw(sim: Simulator, text: str, character_id: str | None = None, **body: Any) -> list[dict[str, Any]]:
    """One typed turn over a raw WebSocket; the frames up to the turn's end."""
    _info, ws = open_session(sim, character_id=character_id or sim.character_id, **body)
    send(ws, "user_text_message", {"text": text})
    return recv_until(ws, "bot-turn-completed")


def reply_text(frames: list[dict[str, Any]]) -> str:
    return "".join(f["data"]["text"] for f in frames if etype(f) == "bot-llm-text")


def test_scripted_replies_over_the_websocket(tmp_path: Path) -> None:
    with Simulator(characters=[SHOP, "plain"]) as sim:
        assert sim.character_id == "shop"
        frames = ask_raw(sim, "Hello!", narrative_template_keys={"player_name": "Ada"})
        assert reply_text(frames) == "Welcome, Ada!"
        frames = ask_raw(sim, "Hello!")
        assert reply_text(frames) == "Welcome, {player_name}!"  # no key given: the placeholder stays
        frames = ask_raw(sim, "something else")
        assert reply_text(frames).startswith("You said: something else.")  # the default echo
        _info, ws = open_session(sim)
        send(ws, "user_text_message", {"text": "bye"})
        assert etype(recv_until(ws, "llm-no-response")[-1]) == "llm-no-response"
        frames = ask_raw(sim, "Hello!", character_id="plain")
        assert reply_text(frames).startswith("You said: Hello!")


def test_characters_file_alone_replaces_the_default_character(tmp_path: Path) -> None:
    path = write(tmp_path, {"characters": [SHOP]})
    with Simulator(characters_file=path) as sim:
        assert sim.character_id == "shop"
        assert post_connect_status(sim, "sim-character") == 404
    with Simulator(characters=["a"], characters_file=path) as sim:
        assert [d.id for d in sim.characters] == ["a", "shop"]
    with pytest.raises(ValueError, match="'shop'.*also given"):
        Simulator(characters=["shop"], characters_file=path)


def test_control_api_defines_characters(tmp_path: Path) -> None:
    with Simulator(control_token="tok") as sim:
        url, headers = f"{sim.url}/_sim/characters", {"X-Sim-Control-Token": "tok"}
        bad = requests.post(url, json={"characters": [{"id": "y", "delays": {"stt": "slow"}}]}, headers=headers,
                            timeout=5)
        assert bad.status_code == 400 and "request body: character 'y': field 'delays.stt'" in bad.json()["detail"]
        added = requests.post(url, json={"characters": [SHOP]}, headers=headers, timeout=5)
        assert added.status_code == 200
        assert [c["id"] for c in added.json()["characters"]] == ["sim-character", "shop"]
        shipped = requests.post(url, json={"shipped": "shopkeeper"}, headers=headers, timeout=5)
        assert shipped.status_code == 200 and shipped.json()["characters"][-1]["narrative"]["start"] == "greeting"
        assert requests.post(url, json={"shipped": "../etc/passwd"}, headers=headers, timeout=5).status_code == 404
        # A path to a real characters file outside the samples' folder is no shipped name either.
        outside = write(tmp_path, {"characters": [{"id": "outside"}]})
        relative = os.path.relpath(outside.with_suffix(""), shipped_characters_dir())
        escaped = requests.post(url, json={"shipped": relative}, headers=headers, timeout=5)
        assert escaped.status_code == 404, escaped.text
        assert reply_text(ask_raw(sim, "hello", character_id="shop")) == "Welcome, {player_name}!"
        listed = requests.get(url, headers=headers, timeout=5).json()["characters"]
        assert [c["id"] for c in listed] == ["sim-character", "shop", "shopkeeper"]


def test_cli_loads_a_characters_file(cli: list[CliProcess], tmp_path: Path) -> None:  # noqa: F811
    path = write(tmp_path, {"characters": [SHOP]})
    process, _url = start(cli, "--characters", str(path))
    assert process.read_until("^Characters: ").string == "Characters: shop (Mira)"
    process.stop()
    process, _url = start(cli, "--characters", "shopkeeper")  # a shipped sample by name
    assert process.read_until("^Characters: ").string == "Characters: shopkeeper (Mira)"


def test_cli_refuses_a_bad_characters_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"characters": [{"id": "z", "actions": "Give"}]})
    process = CliProcess("--port", "0", "--characters", str(path))
    try:
        assert process.proc.wait(10) == 2
        process.read_until(f"{path}: character 'z': field 'actions'", stream="err")
    finally:
        process.kill()


PLUGIN_SUITE = '''
def test_fixture_has_the_characters(convai_simulator):
    assert [d.id for d in convai_simulator.characters] == ["shopkeeper"]
'''


def test_pytest_plugin_option_loads_characters(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLUGIN_SUITE)
    result = pytester.runpytest_subprocess("--convai-characters", "shopkeeper", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
