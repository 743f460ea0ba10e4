"""The public surface: what the README and docs import keeps working, every
exported name is real and documented, and every failure has one base."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import batchplan
from batchplan import errors
from batchplan.cli.main import cli

ROOT = Path(__file__).parent.parent
PACKAGES = ("batchplan.catalog", "batchplan.planning", "batchplan.jobs", "batchplan.reports", "batchplan.cli")


def test_every_exported_name_exists_and_has_a_docstring():
    for name in batchplan.__all__:
        value = getattr(batchplan, name)
        if name != "__version__":
            assert (value.__doc__ or "").strip(), f"batchplan.{name} has no docstring"


def test_the_readme_imports_from_batchplan_resolve():
    readme = (ROOT / "README.md").read_text("utf-8")
    imported = re.findall(r"^from batchplan import (.+)$", readme, flags=re.M)
    used = re.findall(r"\bbatchplan\.([a-z_]+)\(", readme)
    assert imported and used
    for names in imported:
        for name in names.split(","):
            assert name.strip() in batchplan.__all__, name
    for name in used:
        assert name in batchplan.__all__, name


def test_each_package_opens_with_a_paragraph_on_what_it_is_for():
    import importlib

    for package in PACKAGES:
        doc = importlib.import_module(package).__doc__ or ""
        assert len(doc.split()) >= 20, f"{package} needs an opening paragraph"


def test_every_library_exception_class_is_a_batchplan_error():
    import importlib
    import pkgutil

    found = []
    for info in pkgutil.walk_packages(batchplan.__path__, "batchplan."):
        if info.name == "batchplan.__main__" or info.name.startswith("batchplan.cli"):
            continue  # running __main__ is the point of it; cli's Fail is click's way of printing one line
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__.startswith("batchplan"):
                found.append(value)
    assert len(found) >= 10
    for cls in found:
        assert issubclass(cls, errors.BatchplanError), cls


class Refused(errors.GuardError):
    exit_code = 4


def test_the_cli_words_any_library_error_as_one_line_with_its_exit_code():
    @cli.command("raise-for-test", hidden=True)
    def raise_for_test():
        raise Refused("over the budget")

    @cli.command("raise-hinted-for-test", hidden=True)
    def raise_hinted_for_test():
        raise errors.SplitError("out/part-001.jsonl: already exists", hint="force")

    try:
        runner = CliRunner()
        refused = runner.invoke(cli, ["raise-for-test"])
        assert refused.exit_code == 4
        assert refused.output == "batchplan: error: over the budget\n"
        hinted = runner.invoke(cli, ["raise-hinted-for-test"])
        assert hinted.exit_code == 2
        assert hinted.output == "batchplan: error: out/part-001.jsonl: already exists; pass --force to overwrite it\n"
    finally:
        cli.commands.pop("raise-for-test")
        cli.commands.pop("raise-hinted-for-test")


@pytest.mark.parametrize("args", [["--version"], ["compare", "--help"]])
def test_python_dash_m_batchplan_runs(args):
    result = subprocess.run([sys.executable, "-m", "batchplan", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
