"""``compare --sample``: estimate the plan from a random sample of lines, for
inputs too large to count in full. The full count stays the default.

The sample is stratified by file: each file gives lines in proportion to its
size (at least 2, or all it has), drawn without replacement with
``random.Random(seed)``, so the same seed picks the same lines. Each file's
sampled lines are scaled up to all its lines (the table shows these
estimates), and the totals come with a 95% confidence interval: the normal
interval of the stratified estimator with the finite-population correction,
never below what the sampled lines alone add up to. Money stays Decimal.

Two passes over each file: one counts its lines, one plans the chosen ones.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Callable

from .aggregate import Plan, PlannedRequest, Row, Warning
from .catalog import DEFAULT_REGION, Catalog
from .output import OutputAssumption
from .plan import BatchPlan, Planner, unique_paths
from .reading import open_input, read_blocks

CONFIDENCE = 0.95
Z = Decimal("1.959963984540054")  # two-sided 95% quantile of the normal distribution
MIN_PER_FILE = 2  # the fewest lines that give a file's variance
MONEY_PLACES = Decimal("1e-8")
METRICS = ("input_tokens", "output_tokens", "realtime_cost", "batch_cost")


def parse_sample(text: str) -> float | int:
    """``--sample``: a fraction of the lines ("0.05", "5%", "1.0") or a number
    of lines ("2000"). Raises ValueError with a one-line reason."""
    value = text.strip()
    if value.isdigit():
        lines = int(value)
        if lines < 1:
            raise ValueError("a sample needs at least 1 line (give a fraction like 0.05 or a number of lines like 2000)")
        return lines
    percent = value.endswith("%")
    try:
        fraction = float(value[:-1] if percent else value)
    except ValueError:
        raise ValueError(f"{text!r} is neither a fraction (like 0.05 or 5%) nor a number of lines (like 2000)") from None
    if percent:
        fraction /= 100
    if not 0 < fraction <= 1:  # also false for nan
        raise ValueError(f"{text!r}: a fraction must be more than 0 and at most 1 (a number of lines is a whole number, like 2000)")
    return fraction


@dataclass(frozen=True)
class Estimate:
    """An estimated total over all lines and its confidence interval."""

    value: Decimal
    low: Decimal
    high: Decimal
    standard_error: Decimal


@dataclass(frozen=True)
class SampleEstimate:
    """What ``BatchPlan.sample`` holds after ``--sample``."""

    requested: float | int
    seed: int
    lines: int  # non-blank lines in all files
    sampled: int  # lines planned
    files: dict[str, tuple[int, int]]  # path -> (sampled lines, lines)
    input_tokens: Estimate | None
    output_tokens: Estimate | None  # None: unknown for some sampled request
    realtime_cost: Estimate | None
    batch_cost: Estimate | None

    @property
    def exact(self) -> bool:
        return self.sampled == self.lines

    def describe(self, currency: str) -> str:
        """One paragraph for the table."""
        from .report import money

        share = f"{self.sampled / self.lines:.1%}" if self.lines else "0%"
        if self.exact:
            return f"Sample (seed {self.seed}) took every one of the {self.lines:,} lines: the figures are exact."
        head = (
            f"Estimated from a random sample of {self.sampled:,} of {self.lines:,} lines ({share}, seed {self.seed}): "
            "each file's sampled lines are scaled up to all its lines."
        )
        def tokens(e: Estimate) -> str:
            return f"{int(e.low):,} to {int(e.high):,}"

        def cost(e: Estimate) -> str:
            high = money(e.high)
            places = len(high.partition(".")[2])  # both bounds as precise as the larger one
            return f"{money(e.low, places)} to {high} {currency}"

        parts = []
        for label, estimate, show in (
            ("prompt tokens", self.input_tokens, tokens),
            ("output tokens", self.output_tokens, tokens),
            ("real-time cost", self.realtime_cost, cost),
            ("batch cost", self.batch_cost, cost),
        ):
            parts.append(f"{label} {show(estimate)}" if estimate else f"{label} unknown")
        return head + f" {CONFIDENCE:.0%} confidence intervals: " + "; ".join(parts) + "."

    def document(self) -> dict:
        """The ``sample`` object of the JSON document (docs/json.md)."""
        from .report import exact

        def tokens(e: Estimate | None):
            if e is None:
                return None
            return {"estimate": int(e.value), "low": int(e.low), "high": int(e.high), "standard_error": float(e.standard_error)}

        def cost(e: Estimate | None):
            if e is None:
                return None
            return {"estimate": exact(e.value), "low": exact(e.low), "high": exact(e.high), "standard_error": exact(e.standard_error)}

        return {
            "requested": self.requested,
            "seed": self.seed,
            "lines": self.lines,
            "sampled_lines": self.sampled,
            "exact": self.exact,
            "confidence": CONFIDENCE,
            "method": "stratified by file, proportional allocation, without replacement; "
                      "normal interval with finite-population correction",
            "files": [{"path": path, "lines": lines, "sampled_lines": taken} for path, (taken, lines) in self.files.items()],
            "input_tokens": tokens(self.input_tokens),
            "output_tokens": tokens(self.output_tokens),
            "realtime_cost": cost(self.realtime_cost),
            "batch_cost": cost(self.batch_cost),
        }


class _Sums:
    """Sums and sums of squares of each metric over one file's sampled lines.
    A metric becomes unknown (None) when a sampled request's value is."""

    def __init__(self):
        self.n = 0
        self.sums: dict[str, Decimal | None] = {m: Decimal(0) for m in METRICS}
        self.squares: dict[str, Decimal | None] = {m: Decimal(0) for m in METRICS}

    def add(self, r: PlannedRequest) -> None:
        self.n += 1
        for metric in METRICS:
            if self.sums[metric] is None:
                continue
            value = getattr(r, metric)
            if value is None:
                if r.error is None:  # a valid request whose value is unknown
                    self.sums[metric] = self.squares[metric] = None
                continue  # an invalid line adds nothing, as in the full plan
            value = Decimal(value)
            self.sums[metric] += value
            self.squares[metric] += value * value


def allocate(size: float | int, lines: list[int]) -> list[int]:
    """Lines to sample from each file: ``size`` in all (a fraction of the
    lines, or a number), spread in proportion to each file's lines, with at
    least MIN_PER_FILE from each file (or all it has)."""
    total = sum(lines)
    wanted = max(1, round(size * total)) if isinstance(size, float) else size
    if wanted >= total:
        return list(lines)
    floor = [min(MIN_PER_FILE, n) for n in lines]
    rest = max(0, wanted - sum(floor))
    room = [n - f for n, f in zip(lines, floor)]
    spare = sum(room)
    if rest == 0 or spare == 0:
        return floor
    quotas = [rest * r / spare for r in room]
    shares = [math.floor(q) for q in quotas]
    # Largest remainders get the lines left over; ties go to the earlier file.
    order = sorted(range(len(lines)), key=lambda i: (-(quotas[i] - shares[i]), i))
    for i in order[: rest - sum(shares)]:
        shares[i] += 1
    return [f + s for f, s in zip(floor, shares)]


def _count_lines(path: str) -> int:
    with open_input(path) as handle:
        return sum(1 for block in read_blocks(handle, name=path) for _ in block.lines())


def _scale(plan: Plan, lines: int, sampled: int) -> Plan:
    """A file's sampled plan scaled up to all its ``lines``."""
    if sampled == lines:
        return plan
    k = Decimal(lines) / Decimal(sampled)

    def count(n: int) -> int:
        return int((n * k).to_integral_value())

    def cost(c: Decimal | None) -> Decimal | None:
        return None if c is None else c * k

    return Plan(
        lines=lines,
        rows={
            key: Row(count(r.requests), count(r.input_tokens), None if r.output_tokens is None else count(r.output_tokens),
                     cost(r.realtime_cost), cost(r.batch_cost))
            for key, r in plan.rows.items()
        },
        invalid=count(plan.invalid),
        errors=list(plan.errors),
        warnings={kind: Warning(count(w.count), list(w.lines), set(w.detail)) for kind, w in plan.warnings.items()},
        models=Counter({m: count(n) for m, n in plan.models.items()}),
        urls=Counter({u: count(n) for u, n in plan.urls.items()}),
        thinking_modes=Counter({t: count(n) for t, n in plan.thinking_modes.items()}),
        realtime=plan.realtime,  # scaled by realtime.decide, from the rows
    )


def _estimate(metric: str, strata: list[tuple[_Sums, int]], value: Decimal | None, is_money: bool) -> Estimate | None:
    """The interval around ``value`` (the scaled total of ``metric``)."""
    if value is None or any(s.sums[metric] is None for s, _ in strata):
        return None
    variance = Decimal(0)
    floor = Decimal(0)
    for sums, lines in strata:
        n = sums.n
        if n == 0:
            continue
        total, squares = sums.sums[metric], sums.squares[metric]
        floor += total
        if n == lines:
            continue  # counted in full: no sampling error
        spread = (squares - total * total / n) / (n - 1)
        variance += Decimal(lines) * Decimal(lines) * (1 - Decimal(n) / Decimal(lines)) * max(spread, Decimal(0)) / n
    error = variance.sqrt()
    low = max(value - Z * error, floor)
    high = value + Z * error
    if is_money:
        return Estimate(value, low.quantize(MONEY_PLACES, ROUND_FLOOR), high.quantize(MONEY_PLACES, ROUND_CEILING),
                        error.quantize(MONEY_PLACES, ROUND_CEILING))
    return Estimate(value, low.to_integral_value(ROUND_FLOOR), high.to_integral_value(ROUND_CEILING), error)


def plan_sample(
    paths: list[str],
    size: float | int,
    seed: int = 0,
    *,
    catalog: Catalog | None = None,
    region: str = DEFAULT_REGION,
    output: OutputAssumption | None = None,
    on_request: Callable[[PlannedRequest], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    planner: Planner | None = None,
) -> BatchPlan:
    """Plan a random sample of the lines of ``paths`` (``size``: a fraction,
    or a number of lines) and scale it up to all lines. ``on_request``
    receives the sampled lines only, in file order. The result's ``sample``
    holds the intervals. Raises InputError for a file that cannot be read."""
    planner = planner or Planner(catalog, region, output)
    names = unique_paths(paths)
    for name in names:  # fail on any bad path before work starts
        open_input(name).close()
    lines = [_count_lines(name) for name in names]
    taken = allocate(size, lines)
    rng = random.Random(seed)
    files: dict[str, Plan] = {}
    strata: list[tuple[_Sums, int]] = []
    for name, count, want in zip(names, lines, taken):
        chosen = set(rng.sample(range(count), want))
        plan, sums = Plan(), _Sums()
        index = 0
        with open_input(name) as handle:
            for block in read_blocks(handle, name=name):
                for line in block.lines():
                    if index in chosen:
                        result = planner.plan_line(line, plan, name)
                        sums.add(result)
                        if on_request is not None:
                            on_request(result)
                    index += 1
                if on_progress is not None:
                    on_progress(len(block.data))
        files[name] = _scale(plan, count, want) if want else plan
        strata.append((sums, count))
    result = planner.batch_plan(files)
    total = result.plan.total()
    known_output = total.output_tokens
    sample = SampleEstimate(
        requested=size,
        seed=seed,
        lines=sum(lines),
        sampled=sum(taken),
        files={name: (want, count) for name, want, count in zip(names, taken, lines)},
        input_tokens=_estimate("input_tokens", strata, Decimal(total.input_tokens), False),
        output_tokens=_estimate("output_tokens", strata, None if known_output is None else Decimal(known_output), False),
        realtime_cost=_estimate("realtime_cost", strata, total.realtime_cost, True),
        batch_cost=_estimate("batch_cost", strata, total.batch_cost, True),
    )
    result.sample = sample
    return result


__all__ = ["Estimate", "SampleEstimate", "allocate", "parse_sample", "plan_sample"]
