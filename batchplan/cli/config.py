"""Defaults a user sets once instead of typing them every time, and
``batchplan config``, which shows each one and where it came from.

From the highest precedence to the lowest:

1. the command line;
2. environment variables ``BATCHPLAN_REGION``, ``BATCHPLAN_MAX_COST``,
   ``BATCHPLAN_WINDOW``, ``BATCHPLAN_OUTPUT_TOKENS``;
3. ``batchplan.toml`` in the working directory;
4. ``batchplan.toml`` in the user's config directory
   (``platformdirs.user_config_dir("batchplan")``, or ``$BATCHPLAN_CONFIG_DIR``).

A file holds top-level keys (``max_cost = "25"``, ``max-cost`` also reads).
The values reach the commands as click's ``default_map``, so the command
line always wins and ``--help`` shows them as the defaults. A bad value or
a file that is not TOML is one line, ``PATH:LINE: reason`` (``NAME: reason``
for a variable), exit 2.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Mapping

import click

from batchplan.errors import InputError

FILENAME = "batchplan.toml"
CONFIG_DIR_ENV = "BATCHPLAN_CONFIG_DIR"
# Commands that find a batch's region in the ledger: a configured region
# would send them to the wrong service, so only --region itself counts there.
LEDGER_REGION_COMMANDS = frozenset({"status", "wait", "cancel", "download"})
# compare spends nothing; its --max-cost is a pipeline gate that exits 4, so a
# configured budget (meant for what spends) must not turn every compare into one.
SPENDING_ONLY = {"max_cost": frozenset({"compare"})}


class ConfigError(InputError):
    """A config file or variable that cannot be used: ``PATH:LINE: reason``."""


def _region(value: Any) -> str:
    if value not in ("intl", "cn"):
        raise ValueError(f"{_show(value)} is not a region; write intl or cn")
    return value


def _amount(value: Any) -> Decimal:
    from batchplan.cli._options import AMOUNT

    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ValueError(f"{_show(value)} is not an amount; write a number like \"25\" or 25.50")
    try:
        return AMOUNT.convert(str(value), None, None)
    except click.BadParameter as exc:
        raise ValueError(exc.message) from None


def _window(value: Any) -> str:
    from batchplan.jobs.rules import parse_window

    if not isinstance(value, str):
        raise ValueError(f"{_show(value)} is not a completion window; write hours or days as text, like \"24h\" or \"14d\"")
    return parse_window(value)


def _tokens(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{_show(value)} is not a number of tokens; write a whole number of zero or more")
    return value


def _show(value: Any) -> str:
    return json.dumps(value if not isinstance(value, Decimal) else str(value), ensure_ascii=False)


@dataclass(frozen=True)
class Setting:
    name: str  # the option's name in every command that has it (--max-cost is max_cost)
    parse: Callable[[Any], Any]
    default: Any  # what the commands use when nothing is set
    about: str

    @property
    def env(self) -> str:
        return "BATCHPLAN_" + self.name.upper()


SETTINGS = (
    Setting("region", _region, "intl", "price region and API region: intl (Singapore, USD) or cn (Beijing, CNY)"),
    Setting("max_cost", _amount, None, "budget: refuse a submission whose worst-case batch cost is over it"),
    Setting("window", _window, "24h", "Batch completion window: 24h to 336h, or 1d to 14d"),
    Setting("output_tokens", _tokens, None, "expected output tokens per request (none: the worst case)"),
)
_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Value:
    setting: Setting
    value: Any
    source: str  # "default", "BATCHPLAN_X" or "PATH:LINE"

    @property
    def is_set(self) -> bool:
        return self.source != "default"


def user_config_dir(env: Mapping[str, str]) -> Path:
    """``$BATCHPLAN_CONFIG_DIR``, else the user's config directory for batchplan."""
    if env.get(CONFIG_DIR_ENV):
        return Path(env[CONFIG_DIR_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("batchplan", appauthor=False))


def config_files(env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None) -> list[tuple[str, Path]]:
    """(name as shown, path) of the files read, lowest precedence first."""
    env = os.environ if env is None else env
    here = Path(cwd) if cwd is not None else Path.cwd()
    user = user_config_dir(env) / FILENAME
    files = [(str(user), user)]
    local = here / FILENAME
    if local.resolve() != user.resolve():
        files.append((FILENAME if cwd is None else str(local), local))
    return files


def load(env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None) -> dict[str, Value]:
    """Every setting with its value and source (a file, a variable, or the
    default). Raises ConfigError for a file or variable that cannot be used."""
    env = os.environ if env is None else env
    values = {s.name: Value(s, s.default, "default") for s in SETTINGS}
    for shown, path in config_files(env, cwd):
        for name, (value, line) in _read_file(shown, path).items():
            values[name] = Value(_BY_NAME[name], value, f"{shown}:{line}" if line else shown)
    for s in SETTINGS:
        text = env.get(s.env, "").strip()
        if text:
            try:
                values[s.name] = Value(s, s.parse(text), s.env)
            except ValueError as exc:
                raise ConfigError(f"{s.env}: {exc}") from None
    return values


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


def _read_file(shown: str, path: Path) -> dict[str, tuple[Any, int | None]]:
    """name -> (value, line) of one file; nothing when it does not exist."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a directory, not a config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read ({exc.strerror or exc})") from None
    tomllib = _toml()
    try:
        doc = tomllib.loads(text, parse_float=Decimal)  # 25.10 stays exactly 25.10
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\s*\(at line (\d+), column \d+\)$", message)
        if where:
            raise ConfigError(f"{shown}:{where.group(1)}: {message[: where.start()]}") from None
        end = re.search(r"\s*\(at end of document\)$", message)
        line = text.count("\n") + (0 if text.endswith("\n") else 1)
        raise ConfigError(f"{shown}:{max(line, 1)}: {message[: end.start()] if end else message}") from None
    out: dict[str, tuple[Any, int | None]] = {}
    for key, raw in doc.items():
        line = _line_of(text, key)
        where = f"{shown}:{line}" if line else shown
        name = key.replace("-", "_")
        setting = _BY_NAME.get(name)
        if setting is None:
            known = ", ".join(s.name for s in SETTINGS)
            what = "table" if isinstance(raw, dict) else "setting"
            raise ConfigError(f"{where}: unknown {what} {key!r} (the settings are {known})")
        try:
            out[name] = (setting.parse(raw), line)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
    return out


def _line_of(text: str, key: str) -> int | None:
    """The line where a top-level ``key = ...`` is written (tomllib keeps no positions)."""
    pattern = re.compile(r"""^\s*(?:{k}|"{k}"|'{k}')\s*[=.\[]""".format(k=re.escape(key)))
    table = re.compile(r"^\s*\[+\s*(?:{k}|\"{k}\"|'{k}')\s*\]".format(k=re.escape(key)))
    in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        if table.match(line):
            return number
        if line.lstrip().startswith("["):
            in_table = True
        if not in_table and pattern.match(line):
            return number
    return None


# -- applying them ---------------------------------------------------------------

def default_map(group: click.Group, values: Mapping[str, Value]) -> dict[str, dict[str, Any]]:
    """click's ``default_map`` for the commands of ``group``: each set value
    for every command with an option of that name (subgroups included)."""
    chosen = {name: v.value for name, v in values.items() if v.is_set}
    out: dict[str, dict[str, Any]] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            nested = default_map(command, values)
            if nested:
                out[name] = nested
            continue
        params = {p.name for p in command.params if isinstance(p, click.Option)}
        mine = {k: v for k, v in chosen.items() if k in params and not (k == "region" and name in LEDGER_REGION_COMMANDS)
                and name not in SPENDING_ONLY.get(k, ())}
        if mine:
            out[name] = mine
    return out


def apply(ctx: click.Context) -> None:
    """Read the settings and hand them to the group's commands as defaults."""
    defaults = default_map(ctx.command, load())  # type: ignore[arg-type]
    if ctx.default_map:
        for name, mine in defaults.items():
            defaults[name] = {**mine, **ctx.default_map.get(name, {})}  # a caller's own default_map wins
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


# -- batchplan config ---------------------------------------------------------------

@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print the settings as JSON.")
def config_command(as_json):
    """Show each default, its value and where it came from.

    \b
    Precedence, highest first: the command line; the variables
    BATCHPLAN_REGION, BATCHPLAN_MAX_COST, BATCHPLAN_WINDOW and
    BATCHPLAN_OUTPUT_TOKENS; batchplan.toml in the working directory;
    batchplan.toml in the user config directory ($BATCHPLAN_CONFIG_DIR
    overrides where that is). A file holds lines like:

    \b
      region = "cn"
      max_cost = "25"
      window = "48h"
      output_tokens = 500
    """
    values = load()
    files = [(shown, path.is_file()) for shown, path in config_files()]
    if as_json:
        doc = {
            "settings": {n: {"value": _plain(v.value), "source": v.source, "env": v.setting.env} for n, v in values.items()},
            "files": [{"path": shown, "exists": exists} for shown, exists in files],
        }
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    from tabulate import tabulate

    rows = [[n, "-" if v.value is None else str(v.value), v.source, v.setting.about] for n, v in values.items()]
    click.echo(tabulate(rows, ["setting", "value", "from", "meaning"], tablefmt="simple", disable_numparse=True))
    click.echo("")
    click.echo("Files, lowest precedence first: " + "; ".join(f"{s} ({'read' if e else 'none'})" for s, e in files) + ".")
    click.echo("Then the BATCHPLAN_* variables; the command line beats them all.")


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value
