"""Stage 6: aggregate. Sum planned requests into a plan that merges.

A ``Plan`` of one chunk of lines merges with the plan of another chunk, file
or machine (``a.merge(b)``), so work can be split and combined. Line numbers in
warnings are kept for the first few per kind; counts are always exact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from decimal import Decimal

from batchplan.planning.cache import RealtimeStats
from batchplan.planning.validate import LineError

# Line numbers kept per warning kind; more would grow memory with the file.
KEEP_LINES = 200


@dataclass(frozen=True)
class PlannedRequest:
    """One line of the input, planned: what ``--per-request`` writes."""

    line: int
    custom_id: str | None
    model: str | None
    tier: str | None
    input_tokens: int | None
    output_tokens: int | None
    realtime_cost: Decimal | None
    batch_cost: Decimal | None
    error: str | None = None
    thinking: bool = False
    file: str | None = None


def add_money(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    """Sum where unknown stays unknown."""
    if a is None or b is None:
        return None
    return a + b


@dataclass
class Row:
    """Totals of one model x tier x thinking mode."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int | None = 0
    realtime_cost: Decimal | None = Decimal(0)
    batch_cost: Decimal | None = Decimal(0)

    def add(self, r: PlannedRequest) -> None:
        self.requests += 1
        self.input_tokens += r.input_tokens or 0
        self.output_tokens = None if self.output_tokens is None or r.output_tokens is None else self.output_tokens + r.output_tokens
        self.realtime_cost = add_money(self.realtime_cost, r.realtime_cost)
        self.batch_cost = add_money(self.batch_cost, r.batch_cost)

    def merge(self, other: "Row") -> "Row":
        return Row(
            self.requests + other.requests,
            self.input_tokens + other.input_tokens,
            None if self.output_tokens is None or other.output_tokens is None else self.output_tokens + other.output_tokens,
            add_money(self.realtime_cost, other.realtime_cost),
            add_money(self.batch_cost, other.batch_cost),
        )

    @property
    def saving(self) -> Decimal | None:
        if self.realtime_cost is None or self.batch_cost is None:
            return None
        return self.realtime_cost - self.batch_cost


@dataclass
class Warning:
    """One kind of warning: how many requests, the first line numbers, detail."""

    count: int = 0
    lines: list[int] = field(default_factory=list)
    detail: set[str] = field(default_factory=set)

    def add(self, line: int, detail: str | None = None) -> None:
        self.count += 1
        if len(self.lines) < KEEP_LINES:
            self.lines.append(line)
        if detail and len(self.detail) < KEEP_LINES:
            self.detail.add(detail)

    def merge(self, other: "Warning") -> "Warning":
        return Warning(
            self.count + other.count,
            sorted(self.lines + other.lines)[:KEEP_LINES],
            set(sorted(self.detail | other.detail)[:KEEP_LINES]),
        )


# Warning kinds, in the order the report lists them.
OVER_MAX_INPUT = "over_max_input"
OVER_MAX_OUTPUT = "max_tokens_over_max_output"
UNPRICED = "unpriced"
THINKING_DEFAULT = "thinking_by_default"
MEDIA_NOT_COUNTED = "media_not_counted"
IMAGE_SIZE_ASSUMED = "image_size_assumed"
IMAGE_UNREADABLE = "image_unreadable"
APPROXIMATE_COUNT = "approximate_count"
MEDIA_URL_NOT_PUBLIC = "media_url_not_public"
WARNING_TEXT = {
    OVER_MAX_INPUT: "requests over the model's max input tokens",
    OVER_MAX_OUTPUT: "requests whose max_tokens is over the model's max output",
    UNPRICED: "requests with no price (cost unknown)",
    THINKING_DEFAULT: "requests to a model that thinks by default, without enable_thinking (priced as thinking)",
    MEDIA_NOT_COUNTED: "requests with audio or video parts, or images for a model with no image rule, whose tokens are not counted",
    IMAGE_SIZE_ASSUMED: "remote images (not fetched), counted at an assumed size",
    IMAGE_UNREADABLE: "data: images that could not be read (their tokens are not counted)",
    APPROXIMATE_COUNT: "requests to a model whose prompt tokens cannot be counted exactly here",
    MEDIA_URL_NOT_PUBLIC: "media at a local, private or file: URL: the Batch API accepts such a batch but its requests never complete",
}

RowKey = tuple[str, str, bool]  # model, tier label, thinking


@dataclass
class Plan:
    """Totals for a set of lines: rows per model x tier x thinking, invalid
    lines, warnings, and what the file mixes (models, urls, thinking modes)."""

    lines: int = 0  # non-blank lines read
    rows: dict[RowKey, Row] = field(default_factory=dict)
    invalid: int = 0
    errors: list[LineError] = field(default_factory=list)  # the first KEEP_LINES
    warnings: dict[str, Warning] = field(default_factory=dict)
    models: Counter = field(default_factory=Counter)
    urls: Counter = field(default_factory=Counter)
    thinking_modes: Counter = field(default_factory=Counter)
    # Prefixes and prompt-token histogram for real-time pricing; only
    # collected when asked (Planner(realtime_stats=True)), else None.
    realtime: "RealtimeStats | None" = None

    @property
    def requests(self) -> int:
        return sum(row.requests for row in self.rows.values())

    def add(self, r: PlannedRequest, url: str | None = None) -> None:
        self.lines += 1
        if r.error is not None:
            self.add_error(LineError(r.line, r.error, r.custom_id, r.file))
            return
        key = (r.model, r.tier or "-", r.thinking)
        self.rows.setdefault(key, Row()).add(r)
        self.models[r.model] += 1
        self.thinking_modes[r.thinking] += 1
        if url:
            self.urls[url] += 1

    def add_error(self, error: LineError) -> None:
        self.invalid += 1
        if len(self.errors) < KEEP_LINES:
            self.errors.append(error)

    def warn(self, kind: str, line: int, detail: str | None = None) -> None:
        self.warnings.setdefault(kind, Warning()).add(line, detail)

    def merge(self, other: "Plan") -> "Plan":
        """A new plan holding both. Neither input changes."""
        rows = dict(self.rows)
        for key, row in other.rows.items():
            rows[key] = rows[key].merge(row) if key in rows else row.merge(Row())
        warnings = dict(self.warnings)
        for kind, w in other.warnings.items():
            warnings[kind] = warnings[kind].merge(w) if kind in warnings else w.merge(Warning())
        return Plan(
            lines=self.lines + other.lines,
            rows=rows,
            invalid=self.invalid + other.invalid,
            errors=sorted(self.errors + other.errors, key=lambda e: (e.file or "", e.line))[:KEEP_LINES],
            warnings=warnings,
            models=self.models + other.models,
            urls=self.urls + other.urls,
            thinking_modes=self.thinking_modes + other.thinking_modes,
            realtime=None if self.realtime is None and other.realtime is None else (self.realtime or RealtimeStats()).merge(other.realtime),
        )

    def renumbered(self, offset: int) -> "Plan":
        """This plan with ``offset`` added to every line number it holds: a
        plan of a byte range numbered from 1, placed after the lines before
        the range (``--cluster``)."""
        if offset == 0:
            return self
        # Only line numbers change; every other field (rows, prefix statistics) is kept as it is.
        return replace(
            self,
            errors=[replace(e, line=e.line + offset) for e in self.errors],
            warnings={kind: Warning(w.count, [n + offset for n in w.lines], set(w.detail)) for kind, w in self.warnings.items()},
        )

    def total(self) -> Row:
        total = Row()
        for row in self.rows.values():
            total = total.merge(row)
        return total

    @property
    def mixed_models(self) -> bool:
        return len(self.models) > 1
