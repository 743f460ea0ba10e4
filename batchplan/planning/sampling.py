"""``compare --sample``: estimate the plan from byte windows read at random,
for inputs too large to count in full. The full count stays the default.

How lines are drawn. Each file is sampled on its own. Its B bytes are cut
into n equal slices; in each, one offset x is drawn at random
(``random.Random(seed)``: the same seed draws the same lines) and the lines
that *begin* in the window [x, x + W) are read and planned (the window wraps
from the end of the file to its start). Nothing else of the file is read but
the rest of the line that straddles x, so a 1% sample reads about 1% of it.

No length bias. A line is in a window when its first byte is, so every
line, long or short, is taken with the same chance, n x W / B (picking the
line that holds a random byte would favour long lines).

The estimate. B is known, so each file's total of any per-line figure y is
estimated by the ratio estimator B x sum(y) / sum(x) over the windows, x
being the bytes of the lines that begin in a window: each line read counts
B / (bytes of the lines read) times. Figures that grow with a line's bytes,
like prompt tokens, come out within a fraction of a percent; per-request
figures (requests, worst-case output tokens, and the number of lines
itself, which no pass counts, so it is estimated too) vary more. The ratio
estimator's bias is of order 1/n: measured at under 0.5% with 64 windows.
The table shows the lines read scaled up so.

The interval: estimate +- t x SE, with SE^2 the jackknife variance (the
spread of the estimates that leave out one window at a time), summed over
files. t is Student's 97.5% quantile with Satterthwaite's degrees of
freedom, fewer when the windows' pseudo-values are heavy-tailed (the
variance is then less sure). Windows are treated as independent; drawing
one per slice can only lower the true variance. The low end is never below
what the lines read add up to. Money stays Decimal.

Measured coverage. Generated files, line lengths log-normal from tens of
bytes to 20 KB, Chinese and English, about 300 lines read in 64 windows,
1,000 seeds: the prompt-token interval held the full count in 95.5% of
seeds, lines 96%, batch cost 96%. The benchmark's unique-content file
(13 MB, 5,000 requests; 1 MiB read, 400 lines; 150 seeds): prompt tokens
96%, bias -0.02%. With only about 70 lines read: prompt tokens 94.6%, lines
93.6%. The interval is about as often right as it says: an honest 95%, not
a conservative one.

How much is read. ``--sample FRACTION`` reads FRACTION of each file's
bytes in at least MIN_WINDOWS windows of at most MAX_WINDOW bytes, and at
least MIN_SAMPLE_BYTES (1 MiB, a few hundred lines) in all, since intervals
from fewer lines are less sure (so an input under 2 MiB is planned in full).
``--sample N`` reads about N lines in all, spread over the files in
proportion to their bytes, the lines per byte measured by a pilot of
PILOT_WINDOWS small windows a file (not planned, not in the estimate). A
file of which the sample would read half or more is planned in full
instead (exact, no sampling error).

Line numbers are unknown without reading the lines before a sampled one, so
with --sample the ``line`` of errors, warnings and per-request rows is the
byte offset where the line begins.

Windows are cut into tasks of CHUNK_WINDOWS: planned in this process, in
worker processes (``--workers``) or on a Dask cluster (``--cluster``), and
merged in order.
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import BinaryIO, Callable, Iterator

from batchplan.catalog.catalog import DEFAULT_REGION, Catalog
from batchplan.planning.aggregate import KEEP_LINES, Plan, PlannedRequest, Row, Warning
from batchplan.planning.estimate import t_quantile
from batchplan.planning.output import OutputAssumption
from batchplan.planning.planner import BatchPlan, Planner, _input_size, default_workers, unique_paths
from batchplan.planning.reading import BOM, InputError, Line, line_start_at_or_after, open_input, read_range

CONFIDENCE = 0.95
MIN_PER_FILE = 2  # the fewest lines that --sample N takes from a file
MIN_WINDOWS = 64  # windows a file at least: enough for the interval
MAX_WINDOW = 64 * 1024  # bytes: large enough that straddling lines cost little
MIN_SAMPLE_BYTES = 1024 * 1024  # --sample FRACTION reads at least this much in all
PILOT_WINDOWS = 4  # windows a file that measure its lines per byte for --sample N
PILOT_WINDOW = 16 * 1024
CHUNK_WINDOWS = 16  # windows a task
FULL_RANGE_BYTES = 4 * 1024 * 1024  # a file planned in full is cut into tasks of this size
PARALLEL_MIN_BYTES = 2 * 1024 * 1024  # expected bytes to plan before worker processes pay off
MONEY_PLACES = Decimal("1e-8")
SCALED_MONEY_PLACES = Decimal("1e-12")
METRICS = ("input_tokens", "output_tokens", "realtime_cost", "batch_cost", "requests", "lines")


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


@dataclass(frozen=True)
class FileSample:
    """How one file was sampled."""

    bytes: int
    windows: int  # windows read (0 when planned in full)
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
    windows: int  # windows read
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
        from batchplan.catalog.money import money

        if self.exact:
            return f"Sample (seed {self.seed}) took every one of the {self.lines:,} lines: the figures are exact."
        share = f"{self.bytes_read / self.bytes:.1%}" if self.bytes else "0%"
        full = sum(f.full for f in self.files.values())
        head = (
            f"Estimated from the {self.sampled:,} lines that begin in {self.windows:,} byte windows drawn at random "
            f"({share} of the bytes read, seed {self.seed}){f'; {full} file(s) planned in full' if full else ''}: "
            "every line has the same chance to be read, and each counts for the lines it stands for. Line and "
            "request counts are estimates too; lines are named by byte offset."
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
        from batchplan.catalog.money import exact

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
            "windows": self.windows,
            "bytes": self.bytes,
            "bytes_read": self.bytes_read,
            "exact": self.exact,
            "confidence": CONFIDENCE,
            "method": "the lines that begin in byte windows at random offsets, one window per equal slice of each file "
                      "(equal chance for every line); Student t interval with the variance of independent windows",
            "positions": "byte offsets",
            "files": [{"path": path, "bytes": f.bytes, "lines": f.lines, "windows": f.windows, "sampled_lines": f.sampled_lines,
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


def _read(handle, size: int, name: str) -> bytes:
    try:
        return handle.read(size)
    except OSError as exc:
        raise InputError(f"{name}: read failed ({exc.strerror or exc})") from None


def lines_beginning_in(handle, start: int, end: int, has_bom: bool = False, name: str = "input") -> Iterator[tuple[int, int, bytes]]:
    """(first byte, bytes, text) of each line that begins in bytes [start,
    end): its bytes with the line ending (and the BOM of line 1), its text
    without. Blank lines too."""
    position = line_start_at_or_after(handle, start, name)
    if position is None or position >= end:
        return
    for block in read_range(handle, position, end, name=name):  # a line begins at position: no scan
        pieces = block.data.split(b"\n")
        last = len(pieces) - 1
        if block.data.endswith(b"\n"):
            pieces.pop()
        for i, piece in enumerate(pieces):
            # read_range dropped the BOM of line 1; its bytes still count.
            size = len(piece) + (i < last) + (len(BOM) if has_bom and position == 0 else 0)
            yield position, size, piece[:-1] if piece.endswith(b"\r") else piece
            position += size


@dataclass(frozen=True)
class SampleUnit:
    """One task: windows of ``width`` bytes at ``offsets`` of a file of
    ``size`` bytes, or, for a file planned in full, the lines that begin in
    bytes [start, end)."""

    path: str  # as the user wrote it
    source: str  # absolute, what a worker opens
    label: str | None  # the file named in rows and errors (several files)
    size: int = 0
    offsets: tuple[int, ...] = ()
    width: int = 0
    start: int = 0
    end: int = 0
    full: bool = False


@dataclass(frozen=True)
class SampledLine:
    start: int  # the line's first byte: its position
    size: int  # its bytes
    draws: int  # windows of the unit it began in (1 in full)
    plan: Plan  # the line's own plan: its row, error or warnings
    result: PlannedRequest | None  # None for a blank line


@dataclass(frozen=True)
class UnitResult:
    lines: list[SampledLine]  # distinct, in file order
    windows: list[tuple[int, ...]]  # the first bytes of the lines in each window
    bytes_read: int


def sample_unit(planner: Planner, unit: SampleUnit) -> UnitResult:
    """Read and plan the lines of one unit. Pure apart from reading."""
    planned: dict[int, list] = {}
    windows: list[tuple[int, ...]] = []
    with open_input(unit.source) as raw_handle:
        handle = CountingReader(raw_handle)
        has_bom = _read(handle, len(BOM), unit.source) == BOM
        if unit.full:
            spans = [[(unit.start, unit.end)]]
        else:
            spans = []
            for x in unit.offsets:
                end = x + unit.width
                spans.append([(x, min(end, unit.size))] + ([(0, end - unit.size)] if end > unit.size else []))
        for window in spans:
            starts = []
            for a, b in window:
                for start, size, raw in lines_beginning_in(handle, a, b, has_bom, unit.source):
                    starts.append(start)
                    if start in planned:
                        planned[start][2] += 1
                        continue
                    plan = Plan()
                    result = planner.plan_line(Line(start, raw), plan, unit.label) if raw and not raw.isspace() else None
                    planned[start] = [size, plan, 1, result]
            windows.append(tuple(starts))
    lines = [SampledLine(start, size, draws, plan, result) for start, (size, plan, draws, result) in sorted(planned.items())]
    return UnitResult(lines, windows if not unit.full else [], handle.bytes_read)


# -- where the units run ------------------------------------------------------------

def _sample_in_worker(unit: SampleUnit) -> UnitResult:
    from batchplan.planning import planner as plan_module

    return sample_unit(plan_module._WORKER, unit)


def sample_task(settings, unit: SampleUnit) -> UnitResult:
    """The Dask task (see planning.cluster): the planner is built once a worker."""
    from batchplan.planning.cluster import unreadable, worker_planner

    try:
        return sample_unit(worker_planner(settings), unit)
    except InputError as exc:
        raise unreadable(unit.path, unit.source, exc) from None


def _run_units(planner: Planner, units: list[SampleUnit], workers: int, parallel: bool, client) -> Iterator[UnitResult]:
    if client is not None:
        from batchplan.planning.cluster import Settings, results_in_order

        for _, result in results_in_order(client, sample_task, units, Settings.of(planner)):
            yield result
        return
    if not parallel:
        for unit in units:
            yield sample_unit(planner, unit)
        return
    import gc

    from batchplan.planning.planner import _pool

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
    """Per file: each window's total of every metric (y), its bytes (x: the
    bytes of the lines that begin in it) and the lines in it; what the
    distinct lines read add up to; and, once ``calibrate`` has run, each
    window's weight. A metric becomes unknown (None) when a sampled
    request's value is."""

    def __init__(self):
        self.xs: list[Decimal] = []
        self.starts: list[tuple[int, ...]] = []
        self.ys: dict[str, list[Decimal] | None] = {m: [] for m in METRICS}
        self.seen: dict[str, Decimal | None] = {m: Decimal(0) for m in METRICS}
        self.weights: list[Decimal] = []
        self.size = 0

    @property
    def n(self) -> int:
        return len(self.xs)

    def add_line(self, values: dict[str, Decimal | None]) -> None:
        for metric, value in values.items():
            if self.seen[metric] is not None:
                self.seen[metric] = None if value is None else self.seen[metric] + value

    def add_window(self, starts: tuple[int, ...], lines: list[dict[str, Decimal | None]], sizes: list[int]) -> None:
        self.xs.append(Decimal(sum(sizes)))
        self.starts.append(starts)
        for metric in METRICS:
            if self.ys[metric] is None:
                continue
            values = [v[metric] for v in lines]
            self.ys[metric] = None if any(v is None for v in values) else self.ys[metric] + [sum(values, Decimal(0))]

    def calibrate(self, size: int) -> None:
        """Window weights of the ratio estimate: B / (the bytes of the lines
        read, each as often as its windows hold it), the same for every
        window. The windows' bytes then add up to the file's B, which is
        known; figures that grow with a line's bytes, like prompt tokens,
        come out far tighter than with B / (n x W)."""
        read = sum(self.xs, Decimal(0))
        self.size = size
        self.weights = [Decimal(size) / read if read else Decimal(0)] * len(self.xs)

    def spread(self, metric: str) -> tuple[float, float]:
        """The jackknife variance of the ratio estimate B x sum(y) / sum(x)
        (from the estimates made leaving out one window at a time, as
        pseudo-values), and the relative variance of that variance: 2/(n-1)
        plus the pseudo-values' excess kurtosis / n, large when a few
        windows hold most of the spread."""
        n = len(self.xs)
        if n < 2:
            return 0.0, 0.0
        xs = [float(x) for x in self.xs]
        ys = [float(y) for y in self.ys[metric]]
        sx, sy = sum(xs), sum(ys)
        if any(sx == x for x in xs):
            return 0.0, 0.0  # one window holds every line read: such a file is planned in full instead
        whole = self.size * sy / sx
        pseudo = [n * whole - (n - 1) * self.size * (sy - y) / (sx - x) for x, y in zip(xs, ys)]
        mean = sum(pseudo) / n
        m2 = sum((p - mean) ** 2 for p in pseudo) / n
        m4 = sum((p - mean) ** 4 for p in pseudo) / n
        kurtosis = m4 / (m2 * m2) - 3 if m2 > 0 else 0.0
        return m2 / (n - 1), 2 / (n - 1) + max(kurtosis, 0.0) / n


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
        # Prefix statistics (--cache, --html) of the lines read, unscaled:
        # realtime.decide scales their shares by the rows.
        self.realtime = None

    def add(self, plan: Plan, weight: Decimal) -> None:
        if plan.realtime is not None:
            self.realtime = plan.realtime if self.realtime is None else self.realtime.merge(plan.realtime)
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
            realtime=self.realtime,
        )


def _estimate(metric: str, strata: list[tuple[_Sums, bool, int]], value: Decimal | None, is_money: bool) -> Estimate | None:
    """The interval around ``value`` (the scaled total of ``metric``)."""
    if value is None or any(s.seen[metric] is None or s.ys[metric] is None for s, _, _ in strata):
        return None
    variance = spread_of_variance = 0.0
    floor = Decimal(0)
    for sums, full, size in strata:
        floor += sums.seen[metric]
        if full or sums.n < 2:
            continue  # counted in full: no sampling error
        v, relative = sums.spread(metric)
        variance += v
        spread_of_variance += v * v * relative
    error = Decimal(repr(math.sqrt(variance)))
    # Satterthwaite's degrees of freedom of the summed variance: fewer when
    # heavy tails make the variance itself uncertain, so t grows.
    df = 2 * variance * variance / spread_of_variance if spread_of_variance > 0 else 0
    q = Decimal(repr(t_quantile(0.5 + CONFIDENCE / 2, df))) if df else Decimal(0)
    low = max(value - q * error, floor)
    high = max(value + q * error, floor)
    if is_money:
        return Estimate(value, low.quantize(MONEY_PLACES, ROUND_FLOOR), high.quantize(MONEY_PLACES, ROUND_CEILING),
                        error.quantize(MONEY_PLACES, ROUND_CEILING))
    return Estimate(value, low.to_integral_value(ROUND_FLOOR), high.to_integral_value(ROUND_CEILING), error)


def _lines_per_byte(name: str, size: int, rng: random.Random) -> tuple[float, int]:
    """Lines per byte of a file, from PILOT_WINDOWS windows at random (for
    --sample N), and the bytes read to find it."""
    with open_input(name) as raw_handle:
        handle = CountingReader(raw_handle)
        width = min(size, PILOT_WINDOW)
        starts = 0
        for _ in range(PILOT_WINDOWS):
            x = rng.randrange(size - width + 1)
            starts += sum(1 for _ in lines_beginning_in(handle, x, x + width, False, name))
    return max(starts, 1) / (PILOT_WINDOWS * width), handle.bytes_read


def windows(size: int, share: float) -> tuple[int, int]:
    """(n, W): n windows of W bytes that read ``share`` of ``size`` bytes."""
    wanted = max(1, math.ceil(share * size))
    n = max(MIN_WINDOWS, math.ceil(wanted / MAX_WINDOW))
    return n, max(1, math.ceil(wanted / n))


def draw_offsets(size: int, n: int, rng: random.Random) -> list[int]:
    """One offset at random in each of ``n`` equal slices of ``size`` bytes,
    in order."""
    return [min(size - 1, int((k + rng.random()) * size / n)) for k in range(n)]


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
    """Plan the lines of ``paths`` that begin in byte windows drawn at random
    (``size``: a fraction of the bytes, or a number of lines) and scale them
    up to all lines; see the module's docstring. ``on_request`` receives the
    sampled lines, each once, in file order, with byte offsets for line
    numbers. The windows are read in ``workers`` processes (default: the
    available cores), or on the Dask cluster of ``client``. The result's
    ``sample`` holds the intervals. Raises InputError for a file that cannot
    be read."""
    planner = planner or Planner(catalog, region, output)
    workers = default_workers() if workers is None else max(1, workers)
    names = unique_paths(paths)
    sizes = [_input_size(name) for name in names]  # fail on any bad path before work starts
    rng = random.Random(seed)
    bytes_read = 0
    shares: list[float] = []  # of each file's bytes to read
    wanted = allocate(size, sizes) if isinstance(size, int) else None  # lines, in proportion to bytes
    fraction = None
    if wanted is None:
        # At least MIN_SAMPLE_BYTES in all: intervals from fewer lines are less sure.
        fraction = min(1.0, max(float(size), MIN_SAMPLE_BYTES / max(1, sum(sizes))))
    for i, (name, bytes_) in enumerate(zip(names, sizes)):
        if bytes_ == 0 or fraction is not None:
            shares.append(1.0 if bytes_ == 0 else fraction)
            continue
        density, read = _lines_per_byte(name, bytes_, rng)
        bytes_read += read
        shares.append(min(1.0, wanted[i] / (density * bytes_)))
    full = [share >= 0.5 for share in shares]
    units: list[SampleUnit] = []
    shape: dict[str, tuple[int, int]] = {}  # path -> (n, W)
    expected = 0  # bytes to plan
    for name, bytes_, share, whole in zip(names, sizes, shares, full):
        source = os.path.abspath(name)
        tag = name  # rows and errors name their file, as the user wrote it
        if whole:
            expected += bytes_
            cuts = list(range(0, bytes_, FULL_RANGE_BYTES)) + [bytes_]
            for start, end in zip(cuts, cuts[1:]):
                units.append(SampleUnit(name, source, tag, bytes_, start=start, end=end, full=True))
            continue
        n, width = windows(bytes_, share)
        shape[name] = (n, width)
        expected += n * width
        offsets = draw_offsets(bytes_, n, rng)
        for k in range(0, n, CHUNK_WINDOWS):
            units.append(SampleUnit(name, source, tag, bytes_, offsets=tuple(offsets[k: k + CHUNK_WINDOWS]), width=width))
    parallel = client is None and workers > 1 and expected >= PARALLEL_MIN_BYTES and len(units) > 1

    sums = {name: _Sums() for name in names}
    read: dict[str, list[SampledLine]] = {name: [] for name in names}  # distinct lines, in order
    seen: dict[str, set[int]] = {name: set() for name in names}

    def take(unit: SampleUnit, result: UnitResult) -> None:
        nonlocal bytes_read
        bytes_read += result.bytes_read
        by_start = {line.start: line for line in result.lines}
        if not unit.full:
            for window in result.windows:
                lines = [by_start[start] for start in window]
                sums[unit.path].add_window(window, [_values(line) for line in lines], [line.size for line in lines])
        for line in result.lines:
            if line.start in seen[unit.path]:
                continue  # in windows of two tasks: planned twice, counted as often as drawn, read once
            seen[unit.path].add(line.start)
            read[unit.path].append(line)
            sums[unit.path].add_line(_values(line))
            if on_request is not None and line.result is not None:
                on_request(line.result)
        if on_progress is not None:
            on_progress(unit.end - unit.start if unit.full else unit.size * len(unit.offsets) // shape[unit.path][0])

    for unit, result in zip(units, _run_units(planner, units, workers, parallel, client)):
        take(unit, result)
    # A file whose windows held fewer than two line starts (lines longer
    # than a window) gives no spread to measure: it is planned in full.
    empty = [i for i, name in enumerate(names) if not full[i] and sum(1 for x in sums[name].xs if x) < 2]
    if empty:
        again = [SampleUnit(names[i], os.path.abspath(names[i]), names[i], sizes[i], start=0,
                            end=sizes[i], full=True) for i in empty]
        for i in empty:
            full[i] = True
            shape.pop(names[i])
            sums[names[i]], read[names[i]], seen[names[i]] = _Sums(), [], set()
        for unit, result in zip(again, _run_units(planner, again, workers, False, client)):
            take(unit, result)
    scaled = {name: _Scaled() for name in names}
    for name, bytes_, whole in zip(names, sizes, full):
        weight: dict[int, Decimal] = Counter()  # line start -> the weights of the windows it began in
        if not whole:
            sums[name].calibrate(bytes_)
            for starts, w in zip(sums[name].starts, sums[name].weights):
                for start in starts:
                    weight[start] += w
        for line in read[name]:
            scaled[name].add(line.plan, Decimal(1) if whole else weight[line.start])
    files = {name: scaled[name].plan() for name in names}
    result = planner.batch_plan(files)
    strata = [(sums[name], whole, bytes_) for name, whole, bytes_ in zip(names, full, sizes)]
    total = result.plan.total()
    known_output = total.output_tokens
    result.sample = SampleEstimate(
        requested=size,
        seed=seed,
        lines=result.plan.lines,
        sampled=sum(line.result is not None for lines in read.values() for line in lines),
        windows=sum(n for n, _ in shape.values()),
        bytes=sum(sizes),
        bytes_read=bytes_read,
        files={name: FileSample(b, shape.get(name, (0, 0))[0], sum(l.result is not None for l in read[name]), files[name].lines, whole)
               for name, b, whole in zip(names, sizes, full)},
        line_count=_estimate("lines", strata, Decimal(result.plan.lines), False),
        requests=_estimate("requests", strata, Decimal(result.plan.requests), False),
        input_tokens=_estimate("input_tokens", strata, Decimal(total.input_tokens), False),
        output_tokens=_estimate("output_tokens", strata, None if known_output is None else Decimal(known_output), False),
        realtime_cost=_estimate("realtime_cost", strata, total.realtime_cost, True),
        batch_cost=_estimate("batch_cost", strata, total.batch_cost, True),
    )
    return result


__all__ = ["Estimate", "SampleEstimate", "allocate", "lines_beginning_in", "parse_sample", "plan_sample"]
