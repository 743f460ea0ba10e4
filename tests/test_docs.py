"""Docs that stay true: every command is in the README, every compare option
is in its table, every top-level key of the plan document is in docs/json.md."""

from __future__ import annotations

from pathlib import Path

import click

from batchplan.cli.main import cli

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text("utf-8")


def _commands(group: click.Group, prefix: str = "batchplan"):
    for name, command in group.commands.items():
        if command.hidden:
            continue
        yield f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix} {name}")


def test_every_command_is_in_the_readme():
    missing = [c for c in _commands(cli) if c not in README]
    assert not missing, f"not in README.md: {missing}"


def test_every_compare_option_is_in_the_readme_table():
    compare = cli.commands["compare"]
    options = [opt for p in compare.params if isinstance(p, click.Option) for opt in p.opts if opt.startswith("--")]
    missing = [o for o in options if f"`{o}" not in README and o != "--help"]
    assert not missing, f"compare options missing from the README's table: {missing}"


def test_every_plan_document_key_is_in_json_md():
    import batchplan
    from batchplan.planning import RealtimeOptions
    from batchplan.reports.documents import document

    doc = document(batchplan.plan_file(str(ROOT / "samples" / "chat_shared_system.jsonl"),
                                       realtime=RealtimeOptions(cache="expected")))
    json_md = (ROOT / "docs" / "json.md").read_text("utf-8")
    missing = [key for key in doc if f"`{key}`" not in json_md]
    assert not missing, f"plan document keys missing from docs/json.md: {missing}"
