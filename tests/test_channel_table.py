"""The event-channel table in README.md and in ``ConvaiEvents``' docstring is exactly what ``channels()`` has:
a channel added without a row (``convai_sync.channels.WHEN``) or a stale row fails here."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from convai_sync import ConvaiClient, ConvaiConfig, ConvaiEvents
from convai_sync.channels import WHEN, channel_table

README = Path(__file__).resolve().parent.parent / "README.md"
pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def events() -> Iterator[ConvaiEvents]:
    with ConvaiClient(ConvaiConfig(api_key="k", character_id="c")) as client:
        yield client.events


def test_every_channel_has_a_row_saying_when_it_fires(events: ConvaiEvents) -> None:
    names = [channel.name for channel in events.channels()]
    assert [name for name in names if not WHEN.get(name)] == [], "add these channels to convai_sync.channels.WHEN"
    assert sorted(WHEN) == sorted(names), "WHEN has rows for channels that do not exist"


def test_readme_carries_the_table(events: ConvaiEvents) -> None:
    match = re.search(r"<!-- channel-table:begin -->\n(.*?)\n<!-- channel-table:end -->", README.read_text(), re.S)
    assert match, "README.md lost its channel-table markers"
    assert match.group(1) == channel_table(events), "README's channel table is stale; paste channel_table():\n" \
        + channel_table(events)


def test_help_shows_the_table(events: ConvaiEvents) -> None:
    assert channel_table(events) in inspect.cleandoc(ConvaiEvents.__doc__ or ""), \
        "ConvaiEvents' docstring table is stale; paste channel_table() (indented):\n" + channel_table(events)
