"""``compare --sample``: estimate the plan from lines read at random byte
offsets, for inputs too large to count in full. The full count stays the
default.

How lines are drawn. Each file is sampled on its own. Its B bytes are cut
into n equal slices and one byte offset is drawn at random in each slice
(``random.Random(seed)``: the same seed draws the same lines). The line that
holds the byte is read (back to its start, forward to its end) and planned.
Nothing else of the file is read, so a 1% sample reads about 1% of it.

The estimator. A line of b bytes is hit with probability b/B, so long lines
are drawn more often than short ones (length bias). Each draw is weighted by
B / (n x b), its line's bytes: the Hansen-Hurwitz estimator, total =
(B/n) x sum(y/b), unbiased for any per-line figure y: prompt tokens, output
tokens, costs, requests and the number of lines itself (no pass counts them,
so those are estimated too). The table shows every sampled line scaled up by
its weight.

The interval: estimate +- t x SE, SE^2 = sum over files of s^2/n, with s^2
the sample variance of B x y / b over a file's draws. That is the variance of
n independent draws; drawing one per slice can only lower the true variance,
so the interval errs on the wide side. t is Student's 97.5% quantile with
the draws' degrees of freedom. The low end is never below what the lines read
add up to. Money stays Decimal.

How many draws. ``--sample N`` draws N lines in all, spread over the files
in proportion to their bytes, at least 2 a file. ``--sample FRACTION`` draws
enough lines to read about that fraction of each file's bytes, sized by a
pilot of PILOT random lines a file (only their lengths count; they are not
planned and not in the estimate). A file of which the sample would read half
or more is planned in full instead (exact, no sampling error).

Line numbers are unknown without reading the lines before a sampled one, so
with --sample the ``line`` of errors, warnings and per-request rows is the
byte offset where the line begins.

The draws are cut into tasks of CHUNK_DRAWS offsets: planned in this
process, in worker processes (``--workers``) or on a Dask cluster
(``--cluster``), and merged in order.
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from statistics import NormalDist
from typing import BinaryIO, Callable, Iterator

from .aggregate import KEEP_LINES, Plan, PlannedRequest, Row, Warning
from .catalog import DEFAULT_REGION, Catalog
from .output import OutputAssumption
from .plan import BatchPlan, Planner, _input_size, default_workers, unique_paths
from .reading import BOM, InputError, Line, line_start_at_or_after, open_input, read_range

CONFIDENCE = 0.95
MIN_PER_FILE = 2  # the fewest draws that give a file's variance
PILOT = 16  # lines a file whose lengths size a --sample FRACTION
CHUNK_DRAWS = 64  # draws a task
FULL_RANGE_BYTES = 4 * 1024 * 1024  # a file planned in full is cut into tasks of this size
PARALLEL_MIN_BYTES = 2 * 1024 * 1024  # expected bytes to plan before worker processes pay off
MONEY_PLACES = Decimal("1e-8")
SCALED_MONEY_PLACES = Decimal("1e-12")
METRICS = ("input_tokens", "output_tokens", "realtime_cost", "batch_cost", "requests", "lines")
STEP = 512  # bytes first read on each side of an offset


def parse_sample(text: str) -> float | int:
    """``--sample``: a fraction of the bytes ("0.05", "5%", "1.0") or a number
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


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (Cornish-Fisher expansion around the normal one;
    within 0.1% of the exact value from 5 degrees of freedom up)."""
    z = NormalDist().inv_cdf(p)
    if df <= 0:
        return float("inf")
    g1 = (z ** 3 + z) / 4
    g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96
    g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384
    g4 = (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160
    return z + g1 / df + g2 / df ** 2 + g3 / df ** 3 + g4 / df ** 4


@dataclass(frozen=True)
class FileSample:
    """How one file was sampled."""

    bytes: int
    draws: int  # offsets drawn (0 when planned in full)
    sampled_lines: int  # distinct lines planned
    lines: int  # its non-blank lines: estimated, exact when full
    full: bool


@dataclass(frozen=True)
class SampleEstimate:
    """What ``BatchPlan.sample`` holds after ``--sample``."""

    requested: float | int
    seed: int
    lines: int  # non-blank lines in all files (estimated unless exact)
    sampled: int  # distinct lines planned
    draws: int  # byte offsets drawn
    bytes: int  # bytes of all files
    bytes_read: int  # bytes read to sample them (the pilot too)
    files: dict[str, FileSample]
    line_count: Estimate
    requests: Estimate
    input_tokens: Estimate | None
    output_tokens: Estimate | None  # None: unknown for some sampled request
    realtime_cost: Estimate | None
    batch_cost: Estimate | None

    @property
    def exact(self) -> bool:
        return all(f.full for f in self.files.values())

    def describe(self, currency: str) -> str:
        """One paragraph for the table."""
        from .report import money

        if self.exact:
            return f"Sample (seed {self.seed}) took every one of the {self.lines:,} lines: the figures are exact."
        share = f"{self.bytes_read / self.bytes:.1%}" if self.bytes else "0%"
        full = sum(f.full for f in self.files.values())
        head = (
            f"Estimated from {self.sampled:,} lines read at {self.draws:,} random byte offsets ({share} of the bytes, "
            f"seed {self.seed}){f', {full} small file(s) in full' if full else ''}: each line is weighted by its "
            "file's bytes / (draws x its bytes), so long lines, drawn more often, count less. Line and request "
            "counts are estimates; positions of lines are byte offsets."
        )

        def count(e: Estimate) -> str:
            return f"{int(e.low):,} to {int(e.high):,}"

        def cost(e: Estimate) -> str:
            high = money(e.high)
            places = len(high.partition(".")[2])  # both bounds as precise as the larger one
            return f"{money(e.low, places)} to {high} {currency}"

        parts = []
        for label, estimate, show in (
            ("lines", self.line_count, count),
            ("requests", self.requests, count),
            ("prompt tokens", self.input_tokens, count),
            ("output tokens", self.output_tokens, count),
            ("real-time cost", self.realtime_cost, cost),
            ("batch cost", self.batch_cost, cost),
        ):
            parts.append(f"{label} {show(estimate)}" if estimate else f"{label} unknown")
        return head + f" {CONFIDENCE:.0%} confidence intervals: " + "; ".join(parts) + "."

    def document(self) -> dict:
        """The ``sample`` object of the JSON document (docs/json.md)."""
        from .report import exact

        def count(e: Estimate | None):
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
            "draws": self.draws,
            "bytes": self.bytes,
            "bytes_read": self.bytes_read,
            "exact": self.exact,
            "confidence": CONFIDENCE,
            "method": "lines at random byte offsets, one per equal slice of each file; Hansen-Hurwitz weights "
                      "(file bytes / (draws x line bytes)); Student t interval with the variance of independent draws",
            "positions": "byte offsets",
            "files": [{"path": path, "bytes": f.bytes, "lines": f.lines, "draws": f.draws, "sampled_lines": f.sampled_lines,
                       "full": f.full} for path, f in self.files.items()],
            "line_count": count(self.line_count),
            "requests": count(self.requests),
            "input_tokens": count(self.input_tokens),
            "output_tokens": count(self.output_tokens),
            "realtime_cost": cost(self.realtime_cost),
            "batch_cost": cost(self.batch_cost),
        }


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


# -- reading sampled lines ---------------------------------------------------------

class CountingReader:
    """A file handle that counts the bytes it reads (``bytes_read``)."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.bytes_read += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)


def line_at(handle, offset: int, name: str = "input") -> tuple[int, bytes]:
    """(start, bytes) of the line holding byte ``offset``, its ending
    included: read back to the newline before it, forward to the one after,
    in steps that double from STEP, so about the line itself is read."""
    head = b""
    position = offset
    start = 0
    step = STEP
    while position > 0:
        low = max(0, position - step)
        handle.seek(low)
        chunk = _read(handle, position - low, name)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            start = low + cut + 1
            head = chunk[cut + 1:] + head
            break
        head = chunk + head
        position = low
        step *= 2
    handle.seek(offset)
    tail = b""
    step = STEP
    while True:
        chunk = _read(handle, step, name)
        if not chunk:
            break
        cut = chunk.find(b"\n")
        if cut >= 0:
            tail += chunk[: cut + 1]
            break
        tail += chunk
        step *= 2
    return start, head + tail


def _read(handle, size: int, name: str) -> bytes:
    try:
        return handle.read(size)
    except OSError as exc:
        raise InputError(f"{name}: read failed ({exc.strerror or exc})") from None


def _raw(data: bytes, start: int) -> bytes:
    """A line's text: no BOM, no line ending."""
    if start == 0 and data.startswith(BOM):
        data = data[len(BOM):]
    if data.endswith(b"\n"):
        data = data[:-1]
    if data.endswith(b"\r"):
        data = data[:-1]
    return data


@dataclass(frozen=True)
class SampleUnit:
    """One task: the drawn ``offsets`` of a file (sorted), or, for a file
    planned in full, the lines that begin in bytes [start, end)."""

    path: str  # as the user wrote it
    source: str  # absolute, what a worker opens
    label: str | None  # the file named in rows and errors (several files)
    offsets: tuple[int, ...] = ()
    start: int = 0
    end: int = 0
    full: bool = False


@dataclass(frozen=True)
class SampledLine:
    start: int  # the line's first byte: its position
    size: int  # its bytes, line ending (and the BOM of line 1) included
    draws: int  # offsets of the unit that hit it (1 in full)
    plan: Plan  # the line's own plan: its row, error or warnings
    result: PlannedRequest | None  # None for a blank line


@dataclass(frozen=True)
class UnitResult:
    lines: list[SampledLine]
    bytes_read: int


def _plan_one(planner: Planner, start: int, size: int, raw: bytes, label: str | None, draws: int) -> SampledLine:
    plan = Plan()
    result = None
    if raw and not raw.isspace():
        result = planner.plan_line(Line(start, raw), plan, label)
    return SampledLine(start, size, draws, plan, result)


def sample_unit(planner: Planner, unit: SampleUnit) -> UnitResult:
    """Read and plan the lines of one unit. Pure apart from reading."""
    lines: list[SampledLine] = []
    with open_input(unit.source) as raw_handle:
        handle = CountingReader(raw_handle)
        if unit.full:
            has_bom = unit.start == 0 and _read(handle, len(BOM), unit.source) == BOM
            position = line_start_at_or_after(handle, unit.start, unit.source)
            for block in read_range(handle, unit.start, unit.end, name=unit.source):
                pieces = block.data.split(b"\n")
                if block.data.endswith(b"\n"):
                    pieces.pop()
                for piece in pieces:
                    size = len(piece) + 1 + (len(BOM) if has_bom and position == 0 else 0)
                    raw = piece[:-1] if piece.endswith(b"\r") else piece
                    lines.append(_plan_one(planner, position, size, raw, unit.label, 1))
                    position += size
        else:
            last: tuple[int, bytes] | None = None
            hits = 0
            for offset in unit.offsets:
                if last is not None and last[0] <= offset < last[0] + len(last[1]):
                    hits += 1  # the same line again
                    continue
                if last is not None:
                    lines.append(_plan_one(planner, last[0], len(last[1]), _raw(last[1], last[0]), unit.label, hits))
                last, hits = line_at(handle, offset, unit.source), 1
            if last is not None:
                lines.append(_plan_one(planner, last[0], len(last[1]), _raw(last[1], last[0]), unit.label, hits))
    return UnitResult(lines, handle.bytes_read)


# -- where the units run ------------------------------------------------------------

def _sample_in_worker(unit: SampleUnit) -> UnitResult:
    from . import plan as plan_module

    return sample_unit(plan_module._WORKER, unit)


def sample_task(settings, unit: SampleUnit) -> UnitResult:
    """The Dask task (see cluster.py): the planner is built once a worker."""
    from .cluster import unreadable, worker_planner

    try:
        return sample_unit(worker_planner(settings), unit)
    except InputError as exc:
        raise unreadable(unit.path, unit.source, exc) from None


def _run_units(planner: Planner, units: list[SampleUnit], workers: int, parallel: bool, client) -> Iterator[UnitResult]:
    if client is not None:
        from .cluster import Settings, results_in_order

        for _, result in results_in_order(client, sample_task, units, Settings.of(planner)):
            yield result
        return
    if not parallel:
        for unit in units:
            yield sample_unit(planner, unit)
        return
    import gc

    from .plan import _pool

    pool = _pool(workers, planner)
    try:
        futures = [pool.submit(_sample_in_worker, unit) for unit in units]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(cancel_futures=True)
        gc.unfreeze()


# -- the estimate -------------------------------------------------------------------

def _values(line: SampledLine) -> dict[str, Decimal | None]:
    """Each metric's value for one line; None when unknown for a valid request."""
    r = line.result
    if r is None:
        return {m: Decimal(0) for m in METRICS}
    out: dict[str, Decimal | None] = {"lines": Decimal(1), "requests": Decimal(0 if r.error else 1)}
    for metric in METRICS[:4]:
        value = getattr(r, metric)
        if value is None:
            out[metric] = Decimal(0) if r.error is not None else None
        else:
            out[metric] = Decimal(value)
    return out


class _Sums:
    """Per file: draws, sums and sums of squares of B x y / b over draws, and
    what the distinct lines read add up to. A metric becomes unknown (None)
    when a sampled request's value is."""

    def __init__(self):
        self.n = 0
        self.sums: dict[str, Decimal | None] = {m: Decimal(0) for m in METRICS}
        self.squares: dict[str, Decimal | None] = {m: Decimal(0) for m in METRICS}
        self.seen: dict[str, Decimal | None] = {m: Decimal(0) for m in METRICS}

    def add(self, line: SampledLine, weight_of_draw: Decimal | None, values: dict[str, Decimal | None]) -> None:
        self.n += line.draws
        for metric, value in values.items():
            if self.seen[metric] is None:
                continue
            if value is None:
                self.sums[metric] = self.squares[metric] = self.seen[metric] = None
                continue
            self.seen[metric] += value
            if weight_of_draw is not None:
                z = value * weight_of_draw
                self.sums[metric] += z * line.draws
                self.squares[metric] += z * z * line.draws


class _Scaled:
    """A file's plan with every sampled line counted ``weight`` times."""

    def __init__(self):
        self.lines = Decimal(0)
        self.invalid = Decimal(0)
        self.rows: dict = {}
        self.errors: list = []
        self.warnings: dict[str, list] = {}
        self.models: Counter = Counter()
        self.urls: Counter = Counter()
        self.thinking: Counter = Counter()

    def add(self, plan: Plan, weight: Decimal) -> None:
        self.lines += weight * plan.lines
        self.invalid += weight * plan.invalid
        if len(self.errors) < KEEP_LINES:
            self.errors.extend(plan.errors)
        for key, row in plan.rows.items():
            acc = self.rows.setdefault(key, [Decimal(0), Decimal(0), Decimal(0), Decimal(0), Decimal(0)])
            acc[0] += weight * row.requests
            acc[1] += weight * row.input_tokens
            acc[2] = None if acc[2] is None or row.output_tokens is None else acc[2] + weight * row.output_tokens
            acc[3] = None if acc[3] is None or row.realtime_cost is None else acc[3] + weight * row.realtime_cost
            acc[4] = None if acc[4] is None or row.batch_cost is None else acc[4] + weight * row.batch_cost
        for kind, w in plan.warnings.items():
            acc = self.warnings.setdefault(kind, [Decimal(0), [], set()])
            acc[0] += weight * w.count
            acc[1].extend(w.lines)
            acc[2] |= w.detail
        for counter, source in ((self.models, plan.models), (self.urls, plan.urls), (self.thinking, plan.thinking_modes)):
            for key, n in source.items():
                counter[key] += weight * n

    def plan(self) -> Plan:
        def count(x: Decimal) -> int:
            return int(x.to_integral_value())

        def cost(x: Decimal | None) -> Decimal | None:
            return None if x is None else x.quantize(SCALED_MONEY_PLACES)

        return Plan(
            lines=count(self.lines),
            rows={key: Row(count(a[0]), count(a[1]), None if a[2] is None else count(a[2]), cost(a[3]), cost(a[4]))
                  for key, a in self.rows.items()},
            invalid=count(self.invalid),
            errors=sorted(self.errors, key=lambda e: e.line)[:KEEP_LINES],
            warnings={kind: Warning(count(a[0]), sorted(a[1])[:KEEP_LINES], set(sorted(a[2])[:KEEP_LINES]))
                      for kind, a in self.warnings.items()},
            models=Counter({k: count(v) for k, v in self.models.items()}),
            urls=Counter({k: count(v) for k, v in self.urls.items()}),
            thinking_modes=Counter({k: count(v) for k, v in self.thinking.items()}),
        )


def _estimate(metric: str, strata: list[tuple[_Sums, bool]], value: Decimal | None, is_money: bool) -> Estimate | None:
    """The interval around ``value`` (the scaled total of ``metric``)."""
    if value is None or any(s.seen[metric] is None for s, _ in strata):
        return None
    variance = Decimal(0)
    floor = Decimal(0)
    df = 0
    for sums, full in strata:
        floor += sums.seen[metric]
        n = sums.n
        if full or n < 2:
            continue  # counted in full: no sampling error
        total, squares = sums.sums[metric], sums.squares[metric]
        spread = (squares - total * total / n) / (n - 1)
        variance += max(spread, Decimal(0)) / n
        df += n - 1
    error = variance.sqrt()
    q = Decimal(repr(t_quantile(0.5 + CONFIDENCE / 2, df))) if df else Decimal(0)
    low = max(value - q * error, floor)
    high = max(value + q * error, floor)
    if is_money:
        return Estimate(value, low.quantize(MONEY_PLACES, ROUND_FLOOR), high.quantize(MONEY_PLACES, ROUND_CEILING),
                        error.quantize(MONEY_PLACES, ROUND_CEILING))
    return Estimate(value, low.to_integral_value(ROUND_FLOOR), high.to_integral_value(ROUND_CEILING), error)


def _pilot(name: str, size: int, rng: random.Random) -> tuple[float, int]:
    """The mean bytes of PILOT lines at random offsets (the mean a draw
    reads), and the bytes read to find it."""
    with open_input(name) as raw_handle:
        handle = CountingReader(raw_handle)
        lengths = [len(line_at(handle, rng.randrange(size), name)[1]) for _ in range(PILOT)]
    return sum(lengths) / len(lengths), handle.bytes_read


def draw_offsets(size: int, draws: int, rng: random.Random) -> list[int]:
    """One offset at random in each of ``draws`` equal slices of ``size``
    bytes, in order."""
    return [min(size - 1, int((k + rng.random()) * size / draws)) for k in range(draws)]


def plan_sample(
    paths: list[str],
    size: float | int,
    seed: int = 0,
    *,
    catalog: Catalog | None = None,
    region: str = DEFAULT_REGION,
    output: OutputAssumption | None = None,
    workers: int | None = None,
    client=None,
    on_request: Callable[[PlannedRequest], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    planner: Planner | None = None,
) -> BatchPlan:
    """Plan lines of ``paths`` drawn at random byte offsets (``size``: a
    fraction of the bytes, or a number of lines) and scale them up to all
    lines; see the module's docstring. ``on_request`` receives the sampled
    lines, each once, in file order, with byte offsets for line numbers.
    The draws run in ``workers`` processes (default: the available cores),
    or on the Dask cluster of ``client``. The result's ``sample`` holds the
    intervals. Raises InputError for a file that cannot be read."""
    planner = planner or Planner(catalog, region, output)
    workers = default_workers() if workers is None else max(1, workers)
    names = unique_paths(paths)
    sizes = [_input_size(name) for name in names]  # fail on any bad path before work starts
    rng = random.Random(seed)
    label = len(names) > 1
    bytes_read = 0
    draws = allocate(size, sizes) if isinstance(size, int) else [0] * len(names)
    full: list[bool] = []
    means: list[float] = []  # bytes a draw reads, from the pilot
    for i, (name, bytes_) in enumerate(zip(names, sizes)):
        if bytes_ == 0 or (isinstance(size, float) and size >= 1) or draws[i] >= bytes_:
            full.append(True)
            means.append(0.0)
            continue
        mean, read = _pilot(name, bytes_, rng)
        bytes_read += read
        if isinstance(size, float):
            draws[i] = max(MIN_PER_FILE, math.ceil(size * bytes_ / mean))
        full.append(draws[i] * mean >= bytes_ / 2)
        means.append(mean)
    units: list[SampleUnit] = []
    offsets_of: dict[str, int] = {}
    expected = 0.0  # bytes to plan
    for name, bytes_, n, whole, mean in zip(names, sizes, draws, full, means):
        source = os.path.abspath(name)
        tag = name if label else None
        if whole:
            offsets_of[name] = 0
            expected += bytes_
            cuts = list(range(0, bytes_, FULL_RANGE_BYTES)) + [bytes_]
            for start, end in zip(cuts, cuts[1:]):
                units.append(SampleUnit(name, source, tag, start=start, end=end, full=True))
            continue
        offsets = draw_offsets(bytes_, n, rng)
        offsets_of[name] = n
        expected += n * mean
        for k in range(0, n, CHUNK_DRAWS):
            units.append(SampleUnit(name, source, tag, offsets=tuple(offsets[k: k + CHUNK_DRAWS])))
    parallel = client is None and workers > 1 and expected >= PARALLEL_MIN_BYTES and len(units) > 1

    scaled = {name: _Scaled() for name in names}
    sums = {name: _Sums() for name in names}
    distinct = {name: 0 for name in names}
    by_name = dict(zip(names, sizes))
    for unit, result in zip(units, _run_units(planner, units, workers, parallel, client)):
        bytes_read += result.bytes_read
        n = offsets_of[unit.path]
        file_bytes = Decimal(by_name[unit.path])
        for line in result.lines:
            if unit.full:
                per_draw = None
                weight = Decimal(1)
            else:
                per_draw = file_bytes / Decimal(line.size)  # B / b: a draw's value per unit of y
                weight = per_draw * line.draws / n
            sums[unit.path].add(line, per_draw, _values(line))
            scaled[unit.path].add(line.plan, weight)
            distinct[unit.path] += line.result is not None
            if on_request is not None and line.result is not None:
                on_request(line.result)
        if on_progress is not None:
            share = (unit.end - unit.start) if unit.full else by_name[unit.path] * len(unit.offsets) // max(1, n)
            on_progress(share)
    files = {name: scaled[name].plan() for name in names}
    result = planner.batch_plan(files)
    strata = [(sums[name], whole) for name, whole in zip(names, full)]
    total = result.plan.total()
    known_output = total.output_tokens
    result.sample = SampleEstimate(
        requested=size,
        seed=seed,
        lines=result.plan.lines,
        sampled=sum(distinct.values()),
        draws=sum(d for d, whole in zip(draws, full) if not whole),
        bytes=sum(sizes),
        bytes_read=bytes_read,
        files={name: FileSample(b, 0 if whole else n, distinct[name], files[name].lines, whole)
               for name, b, n, whole in zip(names, sizes, draws, full)},
        line_count=_estimate("lines", strata, Decimal(result.plan.lines), False),
        requests=_estimate("requests", strata, Decimal(result.plan.requests), False),
        input_tokens=_estimate("input_tokens", strata, Decimal(total.input_tokens), False),
        output_tokens=_estimate("output_tokens", strata, None if known_output is None else Decimal(known_output), False),
        realtime_cost=_estimate("realtime_cost", strata, total.realtime_cost, True),
        batch_cost=_estimate("batch_cost", strata, total.batch_cost, True),
    )
    return result


__all__ = ["Estimate", "SampleEstimate", "allocate", "line_at", "parse_sample", "plan_sample"]
