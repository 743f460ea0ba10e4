"""Reconcile: after a batch ran, compare what was planned with what was billed.

The input file is planned with the usual pipeline (``planning.Planner``), keeping
only a few facts per request. The Batch output file (and error file) are then
streamed and matched by ``custom_id`` -- output order is not input order. Each
successful line is priced from its own ``usage`` at the batch price: the tier
is chosen by the actual prompt tokens and the whole request bills at that
tier, at ``batch_price_factor`` of the real-time list price. Failed requests
are not billed.

``Reconciler`` is the pure core (facts in, figures out). ``reconcile()`` and
``write_retry_file()`` do the file I/O around it; result lines are read by
``jobs.results`` (the line format is there). ``document()`` renders the result as JSON-ready data
(schema ``batchplan.reconcile/1``, described in ``document``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

from batchplan.atomic import atomic_write
from batchplan.catalog.catalog import Catalog
from batchplan.catalog.money import exact
from batchplan.jobs.results import ERRORS, OUTPUT, ReconcileError, Result, open_results, read_results
from batchplan.planning.aggregate import PlannedRequest, add_money
from batchplan.planning.output import OutputAssumption
from batchplan.planning.pricing import price_request
from batchplan.planning.reading import at_line, open_input, read_blocks

JSON_SCHEMA = "batchplan.reconcile/1"
# Per-request lists (prompt-token mismatches, unexpected ids) kept for the
# report; counts are always exact.
KEEP = 200

# -- the core -------------------------------------------------------------------

@dataclass(slots=True)
class Facts:
    """What reconcile keeps of one input request: no bodies, a few numbers."""

    line: int
    model: str | None
    tier: str | None
    thinking: bool
    prompt_tokens: int | None  # estimated
    output_tokens: int | None  # estimated
    batch_cost: Decimal | None  # estimated
    status: str | None = None  # None (no result yet) | "ok" | "failed"


@dataclass(frozen=True)
class Failure:
    custom_id: str | None
    line: int | None  # input line; None when the custom_id is not in the input
    code: str | None
    message: str | None
    source: str  # output | errors
    result_line: int  # line in that file


@dataclass(frozen=True)
class Mismatch:
    custom_id: str
    line: int
    model: str
    estimated: int
    actual: int

    @property
    def difference(self) -> int:
        return self.actual - self.estimated


@dataclass
class Figures:
    """Estimated vs actual for one model, or for all. Token and cost
    comparisons cover the succeeded requests whose usage is known;
    ``planned_batch_cost`` is the estimate for every request in the input."""

    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    missing: int = 0
    unexpected: int = 0
    compared: int = 0  # succeeded requests with an estimate and a usage
    exact_matches: int = 0
    absolute_error: int = 0  # sum of |actual - estimated| prompt tokens
    estimated_prompt_tokens: int = 0
    actual_prompt_tokens: int = 0
    estimated_output_tokens: int | None = 0
    actual_output_tokens: int = 0
    output_over_estimate: int = 0  # requests whose output was above the estimate
    estimated_batch_cost: Decimal | None = Decimal(0)
    actual_batch_cost: Decimal | None = Decimal(0)
    planned_batch_cost: Decimal | None = Decimal(0)
    unknown_usage: int = 0  # succeeded lines without a usable usage

    @property
    def exact_match_rate(self) -> Decimal | None:
        return Decimal(self.exact_matches) / self.compared if self.compared else None

    @property
    def mean_absolute_error(self) -> Decimal | None:
        return Decimal(self.absolute_error) / self.compared if self.compared else None

    @property
    def prompt_error(self) -> Decimal | None:
        return error_ratio(self.estimated_prompt_tokens, self.actual_prompt_tokens)

    @property
    def output_error(self) -> Decimal | None:
        return error_ratio(self.estimated_output_tokens, self.actual_output_tokens)

    @property
    def cost_error(self) -> Decimal | None:
        return error_ratio(self.estimated_batch_cost, self.actual_batch_cost)

    def merge(self, other: "Figures") -> "Figures":
        def tokens(a, b):
            return None if a is None or b is None else a + b

        return Figures(
            *(getattr(self, n) + getattr(other, n) for n in (
                "requests", "succeeded", "failed", "missing", "unexpected", "compared", "exact_matches",
                "absolute_error", "estimated_prompt_tokens", "actual_prompt_tokens")),
            estimated_output_tokens=tokens(self.estimated_output_tokens, other.estimated_output_tokens),
            actual_output_tokens=self.actual_output_tokens + other.actual_output_tokens,
            output_over_estimate=self.output_over_estimate + other.output_over_estimate,
            estimated_batch_cost=add_money(self.estimated_batch_cost, other.estimated_batch_cost),
            actual_batch_cost=add_money(self.actual_batch_cost, other.actual_batch_cost),
            planned_batch_cost=add_money(self.planned_batch_cost, other.planned_batch_cost),
            unknown_usage=self.unknown_usage + other.unknown_usage,
        )


def error_ratio(estimated, actual) -> Decimal | None:
    """(actual - estimated) / estimated; None when unknown or estimated is 0."""
    if estimated is None or actual is None or not estimated:
        return None
    return (Decimal(actual) - Decimal(estimated)) / Decimal(estimated)


@dataclass
class Reconciliation:
    """The outcome: figures per model and in total, the failed, missing and
    unexpected requests, and what the estimate assumed."""

    models: dict[str, Figures]
    failures: list[Failure]  # in input order, then unknown ids
    missing: list[tuple[str, int]]  # (custom_id, input line), in input order
    unexpected: list[str]  # the first KEEP custom_ids found in no input line
    mismatches: list[Mismatch]  # the first KEEP prompt-token differences, input order
    retry_lines: set[int]  # input lines to send again: failed and missing
    region: str
    currency: str
    batch_price_factor: Decimal
    output: OutputAssumption
    invalid_lines: int = 0  # input lines the plan left out
    duplicate_results: int = 0  # custom_ids seen more than once in the results
    duplicate_inputs: int = 0  # custom_ids used by more than one input line
    unidentified: int = 0  # result lines without a custom_id
    invalid: list[str] = field(default_factory=list)  # the first KEEP invalid input lines, as PATH:LINE: reason
    input_path: str | None = None
    output_path: str | None = None
    errors_path: str | None = None

    def total(self) -> Figures:
        total = Figures()
        for figures in self.models.values():
            total = total.merge(figures)
        return total

    @property
    def exit_code(self) -> int:
        """0 every request succeeded, 1 some failed or are missing."""
        total = self.total()
        return 1 if total.failed or total.missing else 0


_UNKNOWN_MODEL = "(unknown)"


class Reconciler:
    """Pure core: feed it the planned requests, then the result lines."""

    def __init__(self, catalog: Catalog, region: str, output: OutputAssumption | None = None):
        self.catalog = catalog
        self.region = region
        self.output = output or OutputAssumption()
        self.batch_factor = catalog.batch_limits.batch_price_factor
        self.facts: dict[str, Facts] = {}
        self.models: dict[str, Figures] = {}
        self.failures: dict[str, Failure] = {}
        self.unknown_failures: list[Failure] = []
        self.unexpected: list[str] = []
        self.unexpected_seen: set[str] = set()
        self.mismatches: list[Mismatch] = []
        self.invalid_lines = 0
        self.duplicate_results = 0
        self.duplicate_inputs = 0
        self.unidentified = 0
        self.invalid: list[str] = []

    def _figures(self, model: str | None) -> Figures:
        return self.models.setdefault(model or _UNKNOWN_MODEL, Figures())

    def add_planned(self, r: PlannedRequest) -> None:
        """One planned input line (``plan_files(on_request=...)``)."""
        if r.error is not None:
            self.invalid_lines += 1
            if len(self.invalid) < KEEP:
                self.invalid.append(at_line(r.file, r.line, r.error))
            if not r.custom_id:
                return
        if r.custom_id in self.facts:
            # The service rejects such a file; keep the first line's facts.
            self.duplicate_inputs += 1
            return
        self.facts[r.custom_id] = Facts(
            r.line, r.model, r.tier, r.thinking, r.input_tokens, r.output_tokens, r.batch_cost
        )
        figures = self._figures(r.model)
        figures.requests += 1
        figures.planned_batch_cost = add_money(figures.planned_batch_cost, r.batch_cost if r.error is None else None)

    def add_result(self, result: Result) -> None:
        """One line of the output or error file, in any order."""
        cid = result.custom_id
        if cid is None:
            self.unidentified += 1
            if not result.ok:
                self.unknown_failures.append(self._failure(result, None))
            return
        facts = self.facts.get(cid)
        if facts is None:
            if cid in self.unexpected_seen:
                self.duplicate_results += 1
                return
            self.unexpected_seen.add(cid)
            self._figures(result.model).unexpected += 1
            if len(self.unexpected) < KEEP:
                self.unexpected.append(cid)
            if not result.ok:
                self.unknown_failures.append(self._failure(result, None))
            return
        if facts.status is not None:
            self.duplicate_results += 1
            if facts.status == "ok" or not result.ok:
                return
            # A success after a failure of the same request: it was billed.
            del self.failures[cid]
            self._figures(facts.model).failed -= 1
        figures = self._figures(facts.model)
        if not result.ok:
            facts.status = "failed"
            figures.failed += 1
            self.failures[cid] = self._failure(result, facts.line)
            return
        facts.status = "ok"
        figures.succeeded += 1
        self._add_success(cid, facts, result, figures)

    @staticmethod
    def _failure(result: Result, line: int | None) -> Failure:
        return Failure(result.custom_id, line, result.code, result.message, result.source, result.line)

    def _add_success(self, cid: str, facts: Facts, result: Result, figures: Figures) -> None:
        if result.prompt_tokens is None or facts.prompt_tokens is None:
            # Nothing to compare, and a billed request of unknown cost.
            figures.unknown_usage += 1
            figures.actual_batch_cost = None
            return
        actual_cost = self.actual_batch_cost(facts.model or result.model, result.prompt_tokens, result.completion_tokens, facts.thinking)
        figures.compared += 1
        diff = result.prompt_tokens - facts.prompt_tokens
        if diff == 0:
            figures.exact_matches += 1
        elif len(self.mismatches) < KEEP:
            self.mismatches.append(Mismatch(cid, facts.line, facts.model or _UNKNOWN_MODEL, facts.prompt_tokens, result.prompt_tokens))
        figures.absolute_error += abs(diff)
        figures.estimated_prompt_tokens += facts.prompt_tokens
        figures.actual_prompt_tokens += result.prompt_tokens
        if figures.estimated_output_tokens is not None and facts.output_tokens is not None:
            figures.estimated_output_tokens += facts.output_tokens
        else:
            figures.estimated_output_tokens = None
        figures.actual_output_tokens += result.completion_tokens
        if facts.output_tokens is not None and result.completion_tokens > facts.output_tokens:
            figures.output_over_estimate += 1
        figures.estimated_batch_cost = add_money(figures.estimated_batch_cost, facts.batch_cost)
        figures.actual_batch_cost = add_money(figures.actual_batch_cost, actual_cost)

    def actual_batch_cost(self, model_name: str | None, prompt_tokens: int, completion_tokens: int, thinking: bool) -> Decimal | None:
        """What one successful request was billed: tier from the actual prompt
        tokens, batch price, thinking price when it thinks. None when unknown."""
        if model_name is None:
            return None
        price = price_request(
            self.catalog.model(model_name), model_name, self.region, prompt_tokens, completion_tokens, thinking, self.batch_factor
        )
        return price.batch_cost

    def finish(self, **paths: str | None) -> Reconciliation:
        """Close the books: requests with no result are missing."""
        missing: list[tuple[str, int]] = []
        retry: set[int] = set()
        for cid, facts in self.facts.items():
            if facts.status is None:
                missing.append((cid, facts.line))
                self._figures(facts.model).missing += 1
                retry.add(facts.line)
            elif facts.status == "failed":
                retry.add(facts.line)
        missing.sort(key=lambda m: m[1])
        failures = sorted(self.failures.values(), key=lambda f: f.line) + self.unknown_failures
        return Reconciliation(
            models=dict(sorted(self.models.items())),
            failures=failures,
            missing=missing,
            unexpected=self.unexpected,
            mismatches=sorted(self.mismatches, key=lambda m: m.line),
            retry_lines=retry,
            region=self.region,
            currency=self.catalog.currency(self.region),
            batch_price_factor=self.batch_factor,
            output=self.output,
            invalid_lines=self.invalid_lines,
            duplicate_results=self.duplicate_results,
            duplicate_inputs=self.duplicate_inputs,
            unidentified=self.unidentified,
            invalid=self.invalid,
            **paths,
        )


# -- the edge: files in, reconciliation out ---------------------------------

def reconcile(
    input_path: str,
    output_path: str,
    errors_path: str | None = None,
    *,
    catalog: Catalog | None = None,
    region: str = "intl",
    output: OutputAssumption | None = None,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Reconciliation:
    """Plan INPUT, then match the output (and error) file against it by custom_id.

    Raises InputError for an unreadable input and ReconcileError for an
    unreadable or malformed output/error file (one-line messages)."""
    from batchplan.planning.planner import Planner, plan_files

    planner = Planner(catalog, region, output)
    core = Reconciler(planner.catalog, planner.region, planner.output)
    # Fail on an unreadable result file before the (possibly long) planning.
    for path in (output_path, errors_path):
        if path is not None:
            open_results(os.fspath(path), ReconcileError).close()
    plan_files([input_path], planner=planner, workers=workers, on_request=core.add_planned, on_progress=on_progress)
    for result in read_results(output_path, OUTPUT):
        core.add_result(result)
    if errors_path is not None:
        for result in read_results(errors_path, ERRORS):
            core.add_result(result)
    return core.finish(input_path=os.fspath(input_path), output_path=os.fspath(output_path),
                       errors_path=None if errors_path is None else os.fspath(errors_path))


def write_retry_file(input_path: str, lines: set[int], path: str) -> int:
    """Copy the input lines numbered ``lines`` to ``path``, byte for byte and
    in input order (a second streaming pass). Written to a temporary file that
    replaces ``path`` only when complete. Returns the number of lines written.
    The caller decides whether ``path`` may be overwritten."""
    written = 0
    name = os.fspath(input_path)
    with open_input(name) as source, atomic_write(path) as target:
        for block in read_blocks(source, name=name):
            number = block.first_number
            pieces = block.data.split(b"\n")
            for i, raw in enumerate(pieces):
                last = i == len(pieces) - 1
                # Only the file's final line can lack its newline; write
                # each line exactly as it was, CR of a CRLF included.
                if number in lines and (raw or not last):
                    target.write(raw if last else raw + b"\n")
                    written += 1
                number += 1
    return written


# -- JSON ------------------------------------------------------------------------------

def _ratio(value: Decimal | None, places: int = 6) -> float | None:
    return None if value is None else float(round(value, places))


def _figures_doc(f: Figures) -> dict[str, Any]:
    return {
        "requests": f.requests,
        "succeeded": f.succeeded,
        "failed": f.failed,
        "missing": f.missing,
        "unexpected": f.unexpected,
        "compared": f.compared,
        "unknown_usage": f.unknown_usage,
        "prompt_tokens": {
            "estimated": f.estimated_prompt_tokens,
            "actual": f.actual_prompt_tokens,
            "exact_matches": f.exact_matches,
            "exact_match_rate": _ratio(f.exact_match_rate),
            "mean_absolute_error": _ratio(f.mean_absolute_error),
            "error": _ratio(f.prompt_error),
        },
        "output_tokens": {
            "estimated": f.estimated_output_tokens,
            "actual": f.actual_output_tokens,
            "over_estimate": f.output_over_estimate,
            "error": _ratio(f.output_error),
        },
        "batch_cost": {
            "estimated": exact(f.estimated_batch_cost),
            "actual": exact(f.actual_batch_cost),
            "error": _ratio(f.cost_error),
            "planned": exact(f.planned_batch_cost),
        },
    }


def document(rec: Reconciliation, retry: dict[str, Any] | None = None) -> dict[str, Any]:
    """The reconciliation as JSON-ready data, schema ``batchplan.reconcile/1``.

    Money is an exact decimal string, or null when unknown. Rates and errors
    are numbers: ``exact_match_rate`` is a share (0..1) of the compared
    requests; ``error`` is (actual - estimated) / estimated, null when the
    estimate is unknown or zero. Token and cost comparisons cover the
    ``compared`` requests (succeeded, with a usage); ``batch_cost.planned`` is
    the estimate for every request of the input. ``retry`` is
    ``{"path", "requests"}`` when a retry file was written, else null.
    """
    total = rec.total()
    return {
        "schema": JSON_SCHEMA,
        "input": rec.input_path,
        "output": rec.output_path,
        "errors": rec.errors_path,
        "region": rec.region,
        "currency": rec.currency,
        "batch_price_factor": exact(rec.batch_price_factor),
        "output_assumption": {
            "mode": rec.output.mode,
            "upper_bound": rec.output.is_upper_bound,
            "description": rec.output.describe(),
        },
        "models": [{"model": model, **_figures_doc(f)} for model, f in rec.models.items()],
        "total": _figures_doc(total),
        "invalid_lines": rec.invalid_lines,
        "invalid": rec.invalid,
        "duplicate_results": rec.duplicate_results,
        "duplicate_inputs": rec.duplicate_inputs,
        "unidentified_results": rec.unidentified,
        "failed": [
            {"custom_id": f.custom_id, "line": f.line, "code": f.code, "message": f.message,
             "source": f.source, "result_line": f.result_line}
            for f in rec.failures
        ],
        "missing": [{"custom_id": cid, "line": line} for cid, line in rec.missing],
        "unexpected": rec.unexpected,
        "prompt_token_differences": [
            {"custom_id": m.custom_id, "line": m.line, "model": m.model, "estimated": m.estimated,
             "actual": m.actual, "difference": m.difference}
            for m in rec.mismatches
        ],
        "retry": retry,
        "exit_code": rec.exit_code,
    }
