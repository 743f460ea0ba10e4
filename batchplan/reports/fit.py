"""Tables that fit a terminal's width without wrapping a row.

A table is a list of ``Column`` and rows of cells (a cell is its text, or a
``Cell`` with a narrower rendering). Given a width, ``fit_table`` tries, in
order, until every line fits:

1. the table as it is;
2. empty columns left out, and short headers, which a legend explains;
3. the ``steps`` in their order: ``narrow`` a column (its cells' narrow text),
   ``merge`` a column into another (one cell, ``"A B"``), or ``drop`` it;
4. one record per row (``header  value`` lines), which fits any width.

The steps are the table's priority list: a new column takes its place in it.
Nothing here knows what a column means; ``reports.text`` says that.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from typing import Mapping, Sequence, TextIO

NARROW, MERGE, DROP = "narrow", "merge", "drop"
GAP = 2  # spaces between columns (tabulate's "simple" format)


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    short: str | None = None  # the header when space is short
    align: str = "right"  # "left" or "right"
    explain: bool = True  # the legend spells the short header out (not for a plain shortening)


@dataclass(frozen=True)
class Cell:
    """A cell with a narrower way to say it (a value without its share, say)."""

    text: str
    narrow: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Step:
    kind: str  # NARROW, MERGE or DROP
    key: str
    into: str | None = None  # MERGE: the column that takes this one's text


def narrow(key: str) -> Step:
    return Step(NARROW, key)


def merge(key: str, into: str) -> Step:
    return Step(MERGE, key, into)


def drop(key: str) -> Step:
    return Step(DROP, key)


@dataclass
class Fitted:
    lines: list[str]
    legend: list[str] = field(default_factory=list)  # short headers spelled out
    left_out: list[str] = field(default_factory=list)  # full headers of dropped columns

    def text(self) -> str:
        return "\n".join(self.lines)


def fit_table(columns: Sequence[Column], rows: Sequence[Mapping[str, str | Cell]], width: int | None,
              steps: Sequence[Step] = ()) -> Fitted:
    """``rows`` as a table of at most ``width`` characters a line (no limit
    when None), reduced step by step as the module says."""
    table = _Table(list(columns), [dict(r) for r in rows])
    lines = table.render()
    if width is None or _fits(lines, width):
        return Fitted(lines)
    table.drop_empty()
    table.short = True
    lines = table.render()
    for step in steps:
        if _fits(lines, width):
            break
        table.apply(step)
        lines = table.render()
    if not _fits(lines, width):
        table = _Table(list(columns), [dict(r) for r in rows])
        table.drop_empty()
        lines = table.records(width)
        return Fitted(lines, [], [])
    return Fitted(lines, table.legend(), table.left_out)


def notes(fitted: Sequence[Fitted]) -> list[str]:
    """What short headers mean and which columns a narrow width left out."""
    legend: list[str] = []
    left_out: list[str] = []
    for f in fitted:
        legend.extend(x for x in f.legend if x not in legend)
        left_out.extend(x for x in f.left_out if x not in left_out)
    notes = []
    if legend:
        notes.append("Columns: " + ", ".join(legend) + ".")
    if left_out:
        notes.append("Left out at this width: " + ", ".join(left_out) + " (a wider terminal, or the JSON report, has them).")
    return notes


def wrap(lines: Sequence[str], width: int | None) -> list[str]:
    """Prose lines wrapped at spaces to ``width`` (unchanged when None). A
    word longer than the width (a path) stays whole."""
    if width is None:
        return list(lines)
    out: list[str] = []
    for line in lines:
        if len(line) <= width or not line.strip():
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        out.extend(textwrap.wrap(line, width, subsequent_indent=indent + "  ", break_long_words=False,
                                 break_on_hyphens=False) or [line])
    return out


def output_width(stream: TextIO, env: Mapping[str, str] | None = None) -> int | None:
    """The width to fit: ``$COLUMNS`` when set, else the terminal's when
    ``stream`` is one, else None (a pipe or a file takes every column)."""
    env = os.environ if env is None else env
    columns = (env.get("COLUMNS") or "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, OSError, ValueError):
        pass
    return None


def _fits(lines: Sequence[str], width: int) -> bool:
    return all(len(line) <= width for line in lines)


class _Table:
    def __init__(self, columns: list[Column], rows: list[dict[str, str | Cell]]):
        self.columns = columns
        self.rows = rows
        self.short = False
        self.narrowed: set[str] = set()
        self.left_out: list[str] = []
        self.headers = {c.key: c.header for c in columns}  # as merged

    def cell(self, row: Mapping[str, str | Cell], key: str) -> str:
        value = row.get(key, "")
        if isinstance(value, Cell):
            return value.narrow if key in self.narrowed else value.text
        return "" if value is None else str(value)

    def header(self, column: Column) -> str:
        if self.short and column.short and self.headers[column.key] == column.header:
            return column.short
        return self.headers[column.key]

    def drop_empty(self) -> None:
        for column in list(self.columns):
            if not self.headers[column.key].strip() or all(not self.cell(r, column.key).strip() for r in self.rows):
                self._remove(column.key)

    def apply(self, step: Step) -> None:
        present = {c.key for c in self.columns}
        if step.key not in present:
            return
        if step.kind == NARROW:
            self.narrowed.add(step.key)
        elif step.kind == DROP:
            self.left_out.append(self.headers[step.key])
            self._remove(step.key)
        elif step.kind == MERGE and step.into in present:
            into = next(c for c in self.columns if c.key == step.into)
            taken = next(c for c in self.columns if c.key == step.key)
            for row in self.rows:
                a, b = self.cell(row, into.key), self.cell(row, taken.key)
                row[into.key] = f"{a} {b}".strip()
            self.headers[into.key] = f"{self.header(into)} {self.header(taken)}"
            self._remove(step.key)

    def _remove(self, key: str) -> None:
        self.columns = [c for c in self.columns if c.key != key]

    def render(self) -> list[str]:
        from tabulate import tabulate

        headers = [self.header(c) for c in self.columns]
        body = [[self.cell(r, c.key) for c in self.columns] for r in self.rows]
        text = tabulate(body, headers, tablefmt="simple", colalign=[c.align for c in self.columns],
                        disable_numparse=True)
        return text.splitlines()

    def legend(self) -> list[str]:
        used = [c for c in self.columns if self.short and c.short and c.explain and self.header(c) != c.header]
        return [f"{c.short} = {c.header}" for c in used]

    def records(self, width: int) -> list[str]:
        """One block a row: its first cell, then ``header  value`` lines."""
        first, rest = self.columns[0], self.columns[1:]
        label = max((len(self.headers[c.key]) for c in rest), default=0)
        out: list[str] = []
        for row in self.rows:
            out.append(self.cell(row, first.key))
            for c in rest:
                value = self.cell(row, c.key)
                if value.strip():
                    out.extend(wrap([f"  {self.headers[c.key]:<{label}}  {value}"], width))
        return out
