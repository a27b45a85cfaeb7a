"""Build-time generator for the reference pages that must never drift from the code (mkdocs-gen-files).

Each page is rendered from the object that the code itself reads: the error catalog from
``convai_sync.CATALOG``, the disconnect reasons from ``DisconnectReason``, the CLI from the simulator's
argparse parser, the control API from its route table. ``tests/test_docs.py`` renders the same pages
through :func:`pages` and checks them against the enums, so a new member without a row fails CI.
"""

from __future__ import annotations

import argparse
import enum
from collections.abc import Iterator

from convai_sync import CATALOG, DisconnectReason, ErrorCode


def _cell(text: object) -> str:
    """One Markdown table cell: pipes escaped, newlines folded."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def error_catalog() -> str:
    """Every ``ErrorCode`` with its stage, recoverability, retry rule, HTTP status and meaning."""
    lines = [
        "# Error codes",
        "",
        "Every documented Convai error code, as `convai_sync.ErrorCode` (a `str` enum, so",
        "`error.error_code == \"connection.timeout\"` holds) and its row in `convai_sync.CATALOG`.",
        "*Recoverable* says whether the session can go on; *retried* whether `connect()` retries the",
        "attempt under `RetryPolicy`; *HTTP* is the status the connect API answers with it (where it has one).",
        "This page is generated from the catalog at build time.",
        "",
        "| code | stage | recoverable | retried | HTTP | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for code in ErrorCode:
        info = CATALOG[code]
        status = "" if info.http_status is None else str(info.http_status)
        lines.append(f"| `{code.value}` | {info.stage.name} | {'yes' if info.recoverable else 'no'} | "
                     f"{'yes' if info.retried else 'no'} | {status} | {_cell(info.meaning)} |")
    return "\n".join(lines) + "\n"


def disconnect_reasons() -> str:
    """Every ``DisconnectReason``: value, whether a drop with it is reconnected, message, close code."""
    lines = [
        "# Disconnect reasons",
        "",
        "`convai_sync.DisconnectReason` carries LiveKit's values. A drop while CONNECTED is reconnected",
        "when the reason's `should_retry` is true. On the WebSocket transport a reason travels as the",
        "close code `4000 + value` (the simulator's documented extension). Generated from the enum.",
        "",
        "| value | name | reconnected | close code | message |",
        "|---|---|---|---|---|",
    ]
    for reason in DisconnectReason:
        lines.append(f"| {int(reason)} | `{reason.name}` | {'yes' if reason.should_retry else 'no'} | "
                     f"{reason.close_code} | {_cell(reason.message)} |")
    return "\n".join(lines) + "\n"


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.dest}`"
    return ", ".join(f"`{flag}`" for flag in action.option_strings)


def cli() -> str:
    """``convai-sim``'s flags, from the parser the command itself uses."""
    from simulator.__main__ import build_parser

    parser = build_parser()
    lines = [
        "# `convai-sim` command line",
        "",
        "`convai-sim` (or `python -m simulator`) runs the simulator standalone until Ctrl-C or SIGTERM.",
        "Generated from its argument parser.",
        "",
        "```text",
        parser.format_usage().strip(),
        "```",
        "",
        "| flag | default | meaning |",
        "|---|---|---|",
    ]
    for action in parser._actions:  # argparse has no public iterator over its actions
        default = "" if action.default in (None, argparse.SUPPRESS, False) else f"`{action.default}`"
        help_text = (action.help or "").replace("%(default)s", str(action.default)).replace("%%", "%")
        lines.append(f"| {_flags(action)} | {default} | {_cell(help_text)} |")
    return "\n".join(lines) + "\n"


def control_api() -> str:
    """The ``/_sim/*`` control routes, from the table that registers them."""
    from simulator.http.control import ROUTES

    lines = [
        "# Control API",
        "",
        "A running simulator is driven over HTTP on its own port. Every route needs the header",
        "`X-Sim-Control-Token` with the simulator's control token (printed by `convai-sim`, or",
        "`sim.control_token`); without it the answer is 401. Bodies are JSON of at most 1 MiB (else 413);",
        "a bad request is 400, an unknown session 404. Generated from the route table.",
        "",
        "| method | route | does |",
        "|---|---|---|",
    ]
    for route in ROUTES:
        lines.append(f"| {' / '.join(route.methods)} | `{route.path}` | {_cell(route.summary)} |")
    return "\n".join(lines) + "\n"


def event_channels() -> str:
    """Every channel of ``client.events``: payload type and when it fires, from ``convai_sync.channels``."""
    from convai_sync import ConvaiClient, ConvaiConfig
    from convai_sync.channels import channel_table

    lines = [
        "# Event channels",
        "",
        "`client.events` has one typed channel per event: `client.events.on_x.subscribe(handler, policy)`",
        "(or `@client.events.on_x` as a decorator) calls `handler(payload)` under the subscription's",
        "[delivery policy](../guides/game-loop.md). Generated from `client.events.channels()`.",
        "",
    ]
    with ConvaiClient(ConvaiConfig(api_key="docs", character_id="docs")) as client:  # starts no thread
        lines.append(channel_table(client.events))
    return "\n".join(lines) + "\n"


def _default(value: object) -> str:
    """A field's default as the code a user would write (an enum by name; a policy by its constructor)."""
    if isinstance(value, enum.Enum):
        return f"`{type(value).__name__}.{value.name}`"
    text = repr(value)
    if " at 0x" in text:  # a default holding a function: its address is noise, its constructor is the fact
        return f"`{type(value).__name__}()`"
    return f"`{text}`"


def configuration() -> str:
    """Every ``ConvaiConfig`` field: its default and what it accepts (the rule it is validated by)."""
    import dataclasses

    from convai_sync import ConvaiConfig

    rules = ConvaiConfig.field_rules()
    lines = [
        "# Configuration",
        "",
        "`ConvaiConfig` is a frozen dataclass; an invalid value raises `ConfigurationError` at",
        "construction, naming the field. `ConvaiConfig.from_env()` reads `CONVAI_API_KEY`,",
        "`CONVAI_CHARACTER_ID` and `CONVAI_URL`. Generated from the dataclass and its validation rules.",
        "",
        "| field | default | accepts |",
        "|---|---|---|",
    ]
    for f in dataclasses.fields(ConvaiConfig):
        if f.default is not dataclasses.MISSING:
            default = _default(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _default(f.default_factory())
        else:
            default = ""
        lines.append(f"| `{f.name}` | {_cell(default)} | {_cell(rules.get(f.name, ''))} |")
    return "\n".join(lines) + "\n"


def pages() -> Iterator[tuple[str, str]]:
    """``(path under docs/, Markdown)`` for every generated page."""
    yield "reference/configuration.md", configuration()
    yield "reference/channels.md", event_channels()
    yield "reference/errors.md", error_catalog()
    yield "reference/disconnect-reasons.md", disconnect_reasons()
    yield "reference/cli.md", cli()
    yield "reference/control-api.md", control_api()


def _write_pages() -> None:
    import mkdocs_gen_files

    for path, text in pages():
        with mkdocs_gen_files.open(path, "w") as page:
            page.write(text)


if __name__ in ("__main__", "<run_path>"):  # mkdocs-gen-files runs this file as a script
    _write_pages()
