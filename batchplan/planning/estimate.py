"""Expected output tokens of a whole job from a pilot: a stratified random
sample of its requests, sent in real time, with a 95% interval.

Pure: data in, data out. ``jobs.pilot`` draws and sends the sample;
``jobs.calibrate`` reads it back and calls ``estimate``.

Notation (Cochran, *Sampling Techniques*, 3rd ed., ch. 5-7). Stratum h holds
N_h lines, of which n_h were sent (a simple random sample without
replacement, f_h = n_h / N_h); y = completion tokens (thinking included),
x = the prompt tokens batchplan counted, known for every line (X_h in all).

Per stratum, three estimators of the stratum's output total Y_h:

- mean per request: N_h * mean(y);
- ratio: X_h * sum(y) / sum(x) (output in proportion to the prompt);
- regression: N_h * (mean(y) + b * (X_h / N_h - mean(x))), b the least
  squares slope (a fixed part plus a proportional one).

Each has the usual variance N_h^2 (1 - f_h) / n_h * s_e^2, e being y less
what the estimator predicts from x (e = y - mean(y) for the mean). One
method is used for all strata of a model: the one whose summed estimated
variance is smallest (regression only with 30 or more requests of the model,
since with fewer its estimated variance is too optimistic). The report says
which.

The interval. LLM output lengths are right-skewed (CV 0.5-1.5), and the
plain t interval then misses on the high side, the side a budget cares
about. So the interval is Student's t with the finite-population
correction, corrected for skewness by Hall's transformation of the
Studentized total (Hall, Ann. Stat. 20, 1992; to first order Johnson's
shift, JASA 73, 1978, from the Edgeworth expansion):

    [T - se g^-1(q), T - se g^-1(-q)],  g(t) = t + c t^2/3 + c^2 t^3/27 + c/6,

c being the estimated skewness of the total (its third cumulant
sum N_h^3 (1 - f_h)(1 - 2 f_h) m3_h / n_h^2 over se^3), q the t quantile
with Satterthwaite's degrees of freedom, where each stratum's variance is
taken as known to 2/(n-1) + kurtosis/n of itself (fewer degrees of freedom,
so a larger q, when a few long answers make the variance itself unsure).
The interval reaches further above the estimate than below; its width is
close to the t interval's, 2 q SE. For ratio and regression the variance is
the larger of the linearized one and the jackknife's, which stays honest
when the spread grows with the prompt.

Measured coverage of the true total at n = 200 (2,000-4,000 generated
lines, two models, 200 seeds each): log-normal lengths of sigma 0.8 95%
(0.5% of seeds below the interval, 4.5% above), sigma 1.0 96%, sigma 0.5
95%; gamma(2) 94.5%; output in proportion to the prompt with 30% noise 94%.
The plain t interval (no skewness correction, linearized variance) gave 93%
at sigma 1.0 with 6% of seeds above it and 1% below. Where the lengths are more
skewed than the sample can carry (Cochran's rule, n >= 25 G1^2, fails) the
interval is too narrow, whatever the estimator; ``cochran_ok`` says so and
the report warns. benchmarks/pilot_accuracy.py measures the error against
the truth at n = 50 to 400.

ASSUMPTION: the pilot's answers (real time) are draws from the same length
distribution as the batch answers will be: same model, same body. Nothing
published says real-time and batch answers have the same length.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from statistics import NormalDist
from typing import Hashable, Iterable, Sequence

CONFIDENCE = 0.95
MEAN = "mean"
RATIO = "ratio"
REGRESSION = "regression"
METHODS = (MEAN, RATIO, REGRESSION)
MIN_REGRESSION = 30  # requests of a model before regression is considered
MIN_PER_STRATUM = 2  # for a variance


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile (Cornish-Fisher expansion around the normal one;
    within 0.1% of the exact value from 5 degrees of freedom up)."""
    z = NormalDist().inv_cdf(p)
    if df <= 0:
        return float("inf")
    df = max(df, 3.0)  # the expansion holds from a few degrees of freedom up
    g1 = (z ** 3 + z) / 4
    g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96
    g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384
    g4 = (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160
    return z + g1 / df + g2 / df ** 2 + g3 / df ** 3 + g4 / df ** 4


@dataclass(frozen=True)
class Stratum:
    """One stratum: its population (lines, counted prompt tokens) and the
    (x, y) pairs of its requests that came back."""

    key: tuple  # (model, thinking, tier, bin) or anything hashable; key[0] is the model
    lines: int
    prompt_tokens: int
    sample: tuple[tuple[int, int], ...]  # (counted prompt tokens, completion tokens)

    @property
    def model(self) -> str:
        return self.key[0]

    @property
    def n(self) -> int:
        return len(self.sample)


@dataclass(frozen=True)
class Part:
    """One stratum's estimate by one method: total, variance, third cumulant."""

    total: float
    variance: float
    third: float
    n: int
    kurtosis: float = 0.0  # excess kurtosis of the residuals, for the degrees of freedom


def stratum_estimate(s: Stratum, method: str) -> Part:
    """The estimate of the stratum's output total by ``method``."""
    n, big_n = s.n, s.lines
    ys = [float(y) for _, y in s.sample]
    xs = [float(x) for x, _ in s.sample]
    if n == 0:
        raise ValueError(f"stratum {s.key} has no sampled request")
    f = min(1.0, n / big_n) if big_n else 1.0
    my = sum(ys) / n
    mx = sum(xs) / n
    if method == RATIO and sum(xs) > 0:
        r = sum(ys) / sum(xs)
        total = r * s.prompt_tokens
        resid = [y - r * x for x, y in zip(xs, ys)]
        dof = n - 1
    elif method == REGRESSION and n >= 3 and sum((x - mx) ** 2 for x in xs) > 0:
        sxx = sum((x - mx) ** 2 for x in xs)
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
        total = big_n * (my + b * (s.prompt_tokens / big_n - mx))
        resid = [y - my - b * (x - mx) for x, y in zip(xs, ys)]
        dof = n - 2
    else:
        total = big_n * my
        resid = [y - my for y in ys]
        dof = n - 1
    if n < 2 or f >= 1.0:
        return Part(total, 0.0, 0.0, n)
    m = sum(resid) / n
    s2 = sum((e - m) ** 2 for e in resid) / max(dof, 1)
    m3 = sum((e - m) ** 3 for e in resid) * n / ((n - 1) * (n - 2)) if n > 2 else 0.0
    variance = big_n ** 2 * (1 - f) * s2 / n
    if method != MEAN and n > 3:
        variance = max(variance, _jackknife(s, method, total, n, f))
    third = big_n ** 3 * (1 - f) * (1 - 2 * f) * m3 / n ** 2
    m2 = sum((e - m) ** 2 for e in resid) / n
    m4 = sum((e - m) ** 4 for e in resid) / n
    kurt = m4 / (m2 * m2) - 3 if m2 > 0 else 0.0
    return Part(max(total, 0.0), variance, third, n, max(kurt, 0.0))


def _jackknife(s: Stratum, method: str, total: float, n: int, f: float) -> float:
    """The jackknife variance of the ratio or regression estimate (leave one
    request out at a time, from running sums: O(n)). It stays honest when
    the spread grows with the prompt, where the linearized one falls short
    (Royall and Cumberland, JASA 76, 1981)."""
    xs = [float(x) for x, _ in s.sample]
    ys = [float(y) for _, y in s.sample]
    sx, sy = sum(xs), sum(ys)
    sxx = sum(x * x for x in xs)
    sxy = sum(x * y for x, y in zip(xs, ys))
    mean_x = s.prompt_tokens / s.lines if s.lines else 0.0
    estimates = []
    m = n - 1
    for x, y in zip(xs, ys):
        rx, ry = sx - x, sy - y
        if method == RATIO:
            if rx <= 0:
                return 0.0
            estimates.append(ry / rx * s.prompt_tokens)
            continue
        mx, my = rx / m, ry / m
        vxx = (sxx - x * x) - m * mx * mx
        b = ((sxy - x * y) - m * mx * my) / vxx if vxx > 0 else 0.0
        estimates.append(s.lines * (my + b * (mean_x - mx)))
    mean = sum(estimates) / n
    return (1 - f) * (n - 1) / n * sum((e - mean) ** 2 for e in estimates)


def hall_inverse(x: float, c: float) -> float:
    """The inverse of Hall's (1992) transformation of a Studentized
    statistic whose estimator has skewness c: g(t) = t + c t^2 / 3 +
    c^2 t^3 / 27 + c / 6, monotone in t, so g^-1(x) = (3 / c)((1 + c (x -
    c / 6))^(1/3) - 1). To first order it is Johnson's shift x - c (2 x^2 + 1) / 6."""
    if abs(c) < 1e-12:
        return x
    inner = 1 + c * (x - c / 6)
    root = math.copysign(abs(inner) ** (1 / 3), inner)
    return 3 / c * (root - 1)


@dataclass(frozen=True)
class Interval:
    """An estimate and its interval (floats; callers make Decimals)."""

    estimate: float
    low: float
    high: float
    standard_error: float
    skewness: float  # of the estimate
    df: float


def combine(parts: Sequence[tuple[Part, float]], floor: float = 0.0) -> Interval:
    """The interval of sum(weight x part total): weights are prices for a
    cost (1 for tokens)."""
    total = sum(w * p.total for p, w in parts)
    variance = sum(w * w * p.variance for p, w in parts)
    third = sum(w ** 3 * p.third for p, w in parts)
    spread = sum((w * w * p.variance) ** 2 * (2 / (p.n - 1) + p.kurtosis / p.n) / 2 for p, w in parts if p.n > 1 and p.variance > 0)
    if variance <= 0:
        return Interval(total, total, total, 0.0, 0.0, math.inf)
    se = math.sqrt(variance)
    df = variance * variance / spread if spread > 0 else math.inf
    q = t_quantile(0.5 + CONFIDENCE / 2, df) if math.isfinite(df) else NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)
    g = third / se ** 3
    low = max(total - se * hall_inverse(q, g), floor)
    high = max(total - se * hall_inverse(-q, g), floor)
    return Interval(total, low, high, se, g, df)


@dataclass(frozen=True)
class ModelEstimate:
    model: str
    method: str
    sample_requests: int
    lines: int
    output_tokens: Interval
    variances: dict[str, float] = field(default_factory=dict)  # method -> summed variance, as compared
    parts: tuple = ()  # (stratum, Part) by the chosen method


def choose_method(strata: Sequence[Stratum]) -> tuple[str, dict[str, float]]:
    """The method with the smallest summed estimated variance over a model's strata."""
    n = sum(s.n for s in strata)
    candidates = [MEAN, RATIO] + ([REGRESSION] if n >= MIN_REGRESSION else [])
    variances = {m: sum(stratum_estimate(s, m).variance for s in strata) for m in candidates}
    best = min(candidates, key=lambda m: (variances[m], candidates.index(m)))
    return best, variances


def estimate_model(strata: Sequence[Stratum], method: str | None = None) -> ModelEstimate:
    """A model's output-token total over its strata (all sampled)."""
    chosen, variances = choose_method(strata) if method is None else (method, {})
    parts = tuple((s, stratum_estimate(s, chosen)) for s in strata)
    floor = float(sum(y for s in strata for _, y in s.sample))
    interval = combine([(p, 1.0) for _, p in parts], floor)
    return ModelEstimate(strata[0].model, chosen, sum(s.n for s in strata), sum(s.lines for s in strata),
                         interval, variances, parts)


def _method(method: str | dict[str, str], s: Stratum) -> str:
    return method if isinstance(method, str) else method.get(s.model, MEAN)


def required_requests(strata: Sequence[Stratum], method: str | dict[str, str], half_width: float) -> int:
    """Requests in all (Neyman allocation, FPC) for a relative half-width of
    ``half_width`` at 95% on the output total, from the spread measured so
    far (Cochran 5.25): n = (sum N_h S_h)^2 / ((e T / z)^2 + sum N_h S_h^2)."""
    z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)
    sums = 0.0
    squares = 0.0
    total = 0.0
    for s in strata:
        part = stratum_estimate(s, _method(method, s))
        total += part.total
        if s.n < 2 or s.lines <= s.n:
            continue
        f = s.n / s.lines
        s2 = part.variance * s.n / (s.lines ** 2 * (1 - f))
        sums += s.lines * math.sqrt(s2)
        squares += s.lines * s2
    if sums == 0 or total <= 0:
        return sum(s.n for s in strata)
    return math.ceil(sums ** 2 / ((half_width * total / z) ** 2 + squares))


def neyman(strata: Sequence[Stratum], method: str | dict[str, str], wanted: int) -> dict[tuple, int]:
    """How many requests each stratum should hold in all for ``wanted``:
    in proportion to N_h S_h, at least what it has, at most N_h."""
    weights = {}
    for s in strata:
        part = stratum_estimate(s, _method(method, s))
        f = s.n / s.lines if s.lines else 1.0
        s2 = part.variance * s.n / (s.lines ** 2 * (1 - f)) if s.n >= 2 and f < 1 else 0.0
        weights[s.key] = s.lines * math.sqrt(s2)
    total = sum(weights.values())
    out = {}
    for s in strata:
        share = wanted * weights[s.key] / total if total else wanted * s.lines / max(1, sum(t.lines for t in strata))
        out[s.key] = min(s.lines, max(s.n, round(share)))
    # Rounding and "at least what it has" may overshoot: trim the largest additions.
    while sum(out.values()) > max(wanted, sum(s.n for s in strata)):
        key = max(strata, key=lambda s: out[s.key] - s.n).key
        out[key] -= 1
    return out


# -- the prompt-count check ----------------------------------------------------------

@dataclass(frozen=True)
class CountCheck:
    """Billed against counted prompt tokens of one model's pilot requests."""

    model: str
    requests: int
    exact: int  # requests where the two agree
    mean_difference: float  # billed - counted, per request
    max_difference: int  # largest |billed - counted|
    ratio: float  # sum billed / sum counted
    ratio_low: float  # 95% interval of the ratio
    ratio_high: float
    approximate: bool  # the catalog says counts are approximate for this model

    @property
    def exact_share(self) -> float:
        return self.exact / self.requests if self.requests else 0.0

    @property
    def agrees(self) -> bool:
        return self.exact == self.requests

    def describe(self) -> str:
        text = (f"{self.model}: {self.exact}/{self.requests} requests billed exactly the prompt tokens counted "
                f"({self.exact_share:.0%}); billed - counted {self.mean_difference:+.2f} per request on average, "
                f"at most {self.max_difference:,}")
        return text


def count_check(model: str, pairs: Iterable[tuple[int, int]], approximate: bool = False) -> CountCheck:
    """``pairs``: (counted, billed) prompt tokens per request."""
    pairs = list(pairs)
    n = len(pairs)
    diffs = [b - c for c, b in pairs]
    exact = sum(1 for d in diffs if d == 0)
    sc = sum(c for c, _ in pairs)
    sb = sum(b for _, b in pairs)
    ratio = sb / sc if sc else float("nan")
    low = high = ratio
    if n >= 2 and sc:
        resid = [b - ratio * c for c, b in pairs]
        mc = sc / n
        se = math.sqrt(sum(e * e for e in resid) / (n - 1) / n) / mc
        q = t_quantile(0.5 + CONFIDENCE / 2, n - 1)
        low, high = ratio - q * se, ratio + q * se
    return CountCheck(model, n, exact, sum(diffs) / n if n else 0.0, max((abs(d) for d in diffs), default=0),
                      ratio, low, high, approximate)




def cochran_ok(strata: Sequence[Stratum], method: str) -> tuple[bool, float]:
    """Cochran's rule on a model's residuals: n >= 25 G1^2 (Sugden, Smith
    and Jones, JRSS B 62, 2000), G1 the residuals' sample skewness; the
    skewness is pooled over strata, weighted by their requests."""
    n = sum(s.n for s in strata)
    if n < 3:
        return False, float("nan")
    g_sum = 0.0
    for s in strata:
        if s.n < 3:
            continue
        part = stratum_estimate(s, method)
        f = min(1.0, s.n / s.lines)
        if part.variance <= 0 or f >= 1:
            continue
        s2 = part.variance * s.n / (s.lines ** 2 * (1 - f))
        denominator = s.lines ** 3 * (1 - f) * max(1e-9, 1 - 2 * f)
        m3 = part.third * s.n ** 2 / denominator if denominator else 0.0
        g_sum += s.n * m3 / s2 ** 1.5
    g1 = g_sum / n
    return n >= 25 * g1 * g1, g1


# -- drawing the sample (pure: the caller reads the files) ---------------------------

# Prompt-length bins a model x thinking x tier group is cut into. One: the
# ratio and regression estimators already use the prompt length, and
# measured on generated data (tests/planning/test_estimate.py's job, 300
# seeds, n = 200) four bins of about 35 answers each lowered the coverage
# from 95% to 91%, since each bin's variance and skewness from 35 answers
# is unsure. design(max_bins=...) keeps the choice open.
MAX_BINS = 1
PER_BIN = 10  # requests a bin should get before the group is cut


def length_edges(prompt_tokens: Sequence[int], bins: int) -> list[int]:
    """Edges cutting ``prompt_tokens`` into ``bins`` bins of about equal
    size: a value goes into bin ``bisect_right(edges, value)``."""
    xs = sorted(prompt_tokens)
    if bins <= 1 or not xs:
        return []
    edges = sorted({xs[(k * len(xs)) // bins] for k in range(1, bins)})
    return [e for e in edges if e > xs[0]]


def bin_of(edges: Sequence[int], prompt_tokens: int) -> int:
    return bisect.bisect_right(edges, prompt_tokens)


def allocate(sizes: dict[Hashable, int], n: int, least: int = MIN_PER_STRATUM) -> dict[Hashable, int]:
    """``n`` requests over strata of ``sizes`` lines in proportion (largest
    remainders), at least ``least`` each (all of a smaller stratum), at most
    its lines."""
    total = sum(sizes.values())
    if total == 0:
        return {k: 0 for k in sizes}
    raw = {k: n * size / total for k, size in sizes.items()}
    out = {k: min(size, max(min(least, size), int(raw[k]))) for k, size in sizes.items()}
    spare = n - sum(out.values())
    for k in sorted(sizes, key=lambda k: raw[k] - int(raw[k]), reverse=True):
        if spare <= 0:
            break
        if out[k] < sizes[k]:
            out[k] += 1
            spare -= 1
    return out


@dataclass(frozen=True)
class Design:
    """How lines fall into strata: per group (model, thinking, tier) the
    prompt-length edges; a stratum is (model, thinking, tier, bin)."""

    edges: dict[tuple, tuple[int, ...]]

    def stratum(self, group: tuple, prompt_tokens: int) -> tuple | None:
        edges = self.edges.get(group)
        if edges is None:
            return None
        return (*group, bin_of(edges, prompt_tokens))


def design(groups: dict[tuple, Sequence[int]], n: int, max_bins: int | None = None) -> Design:
    """Strata for a pilot of ``n`` requests: each group (model, thinking,
    tier) cut into up to ``max_bins`` (MAX_BINS) prompt-length bins, so that
    each bin can get PER_BIN requests."""
    shares = allocate({g: len(xs) for g, xs in groups.items()}, n)
    edges = {}
    limit = MAX_BINS if max_bins is None else max_bins
    for g, xs in groups.items():
        bins = max(1, min(limit, shares[g] // PER_BIN))
        edges[g] = tuple(length_edges(xs, bins))
    return Design(edges)


def draw_order(members: dict[tuple, list], seed: int) -> dict[tuple, list]:
    """Each stratum's members in a random order (seeded): the first n_h of it
    are a simple random sample of n_h, and a top-up takes the next ones."""
    rng = random.Random(seed)
    out = {}
    for key in sorted(members, key=repr):
        items = list(members[key])
        rng.shuffle(items)
        out[key] = items
    return out


# -- the job's expected output and cost, from the pilot (compare --calibrate) -------

MILLION = Decimal(1_000_000)
MONEY_PLACES = Decimal("1e-8")


@dataclass(frozen=True)
class Bounds:
    """An estimate with its 95% interval (tokens as whole numbers, money as Decimal)."""

    estimate: Decimal
    low: Decimal
    high: Decimal


@dataclass
class PopulationStratum:
    """What planning counted for one stratum's lines: how many, their prompt
    tokens, and the prices of their tier (per token; None when unknown)."""

    lines: int = 0
    prompt_tokens: int = 0
    input_price: Decimal | None = None  # real-time, per token
    output_price: Decimal | None = None  # real-time, per token (thinking price when thinking)


@dataclass(frozen=True)
class Sampled:
    """One pilot request, read back: its stratum, counted and billed prompt tokens, completion tokens."""

    custom_id: str
    stratum: tuple  # (model, thinking, tier, bin)
    counted: int
    billed: int | None
    completion: int


@dataclass(frozen=True)
class ModelOutput:
    model: str
    method: str
    sample_requests: int
    lines: int
    output_tokens: Bounds
    realtime_cost: Bounds | None
    batch_cost: Bounds | None
    cochran_ok: bool
    skewness: float
    variances: dict[str, float]


@dataclass(frozen=True)
class OutputEstimate:
    """The expected output tokens and cost of the whole job, per model and in
    total, from a pilot; what ``compare --calibrate PILOT.jsonl`` shows."""

    source: str
    models: dict[str, ModelOutput]
    total: ModelOutput | None  # None when some model was not in the pilot
    unsampled: dict[str, int]  # model -> lines with no pilot request in their group
    checks: tuple[CountCheck, ...]
    notes: tuple[str, ...] = ()
    currency: str = ""

    @property
    def method(self) -> str:
        methods = sorted({m.method for m in self.models.values()})
        return methods[0] if len(methods) == 1 else "mixed"


def _money_bounds(exact_input: Decimal, out: Interval, output_cost: Decimal, factor: Decimal = Decimal(1)) -> Bounds:
    """Exact input cost plus the estimated output cost, and its interval."""
    estimate = (exact_input + output_cost) * factor
    low = (exact_input + Decimal(repr(out.low))) * factor
    high = (exact_input + Decimal(repr(out.high))) * factor
    return Bounds(estimate, low.quantize(MONEY_PLACES, ROUND_FLOOR), high.quantize(MONEY_PLACES, ROUND_CEILING))


def _token_bounds(interval: Interval) -> Bounds:
    return Bounds(Decimal(repr(interval.estimate)).to_integral_value(),
                  Decimal(repr(interval.low)).to_integral_value(ROUND_FLOOR),
                  Decimal(repr(interval.high)).to_integral_value(ROUND_CEILING))


def _collapse(strata: list[Stratum]) -> list[Stratum]:
    """A group's bins, each with at least one request: an empty bin's lines
    join the next bin down (or up) that has some."""
    out = [s for s in strata]
    changed = True
    while changed and any(s.n == 0 for s in out) and any(s.n for s in out):
        changed = False
        for i, s in enumerate(out):
            if s.n:
                continue
            j = i - 1 if i > 0 else i + 1
            other = out[j]
            merged = Stratum(other.key, other.lines + s.lines, other.prompt_tokens + s.prompt_tokens, other.sample)
            out[j] = merged
            del out[i]
            changed = True
            break
    return out


def estimate_output(population: dict[tuple, PopulationStratum], sampled: Sequence[Sampled], batch_factor: Decimal,
                    source: str = "", currency: str = "", approximate: Iterable[str] = ()) -> OutputEstimate:
    """Per model and in total: expected output tokens, real-time and batch
    cost, each with its 95% interval. ``population`` holds every planned
    line's stratum (model, thinking, tier, bin); ``sampled`` the pilot's
    requests. Input cost is exact; only the output part is estimated."""
    by_stratum: dict[tuple, list[tuple[int, int]]] = {}
    for r in sampled:
        by_stratum.setdefault(r.stratum, []).append((r.counted, r.completion))
    groups: dict[tuple, list[tuple[tuple, PopulationStratum]]] = {}
    for key, pop in population.items():
        groups.setdefault(key[:3], []).append((key, pop))
    per_model: dict[str, list[tuple[Stratum, PopulationStratum]]] = {}
    unsampled: dict[str, int] = {}
    notes: list[str] = []
    for group, members in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        members.sort(key=lambda kv: kv[0][3])
        strata = [Stratum(key, pop.lines, pop.prompt_tokens, tuple(by_stratum.get(key, ()))) for key, pop in members]
        if not any(s.n for s in strata):
            unsampled[group[0]] = unsampled.get(group[0], 0) + sum(s.lines for s in strata)
            continue
        collapsed = _collapse(strata)
        if len(collapsed) < len(strata):
            notes.append(f"{group[0]}: {len(strata) - len(collapsed)} prompt-length bin(s) had no answer and were merged with a neighbour")
        prices = dict(members)
        for s in collapsed:
            pop = prices[s.key]
            per_model.setdefault(group[0], []).append((s, PopulationStratum(s.lines, s.prompt_tokens, pop.input_price, pop.output_price)))
    models: dict[str, ModelOutput] = {}
    all_tokens: list[tuple[Part, float]] = []
    all_costs: list[tuple[Part, float]] = []
    total_input = Decimal(0)
    total_output_cost = Decimal(0)
    priced = True
    for model, items in sorted(per_model.items()):
        strata = [s for s, _ in items]
        method, variances = choose_method(strata)
        parts = [stratum_estimate(s, method) for s in strata]
        floor = float(sum(y for s in strata for _, y in s.sample))
        tokens = combine([(p, 1.0) for p in parts], floor)
        ok, g1 = cochran_ok(strata, method)
        known = all(pop.input_price is not None and pop.output_price is not None for _, pop in items)
        realtime = batch = None
        if known:
            exact_input = sum((pop.input_price * s.prompt_tokens for s, pop in items), Decimal(0))
            out_exact = sum((pop.output_price * Decimal(repr(p.total)) for (s, pop), p in zip(items, parts)), Decimal(0))
            costs = [(p, float(pop.output_price)) for (_, pop), p in zip(items, parts)]
            out = combine(costs, float(sum(float(pop.output_price) * y for s, pop in items for _, y in s.sample)))
            realtime = _money_bounds(exact_input, out, out_exact)
            batch = _money_bounds(exact_input, out, out_exact, batch_factor)
            total_input += exact_input
            total_output_cost += out_exact
            all_costs.extend(costs)
        else:
            priced = False
        all_tokens.extend((p, 1.0) for p in parts)
        models[model] = ModelOutput(model, method, sum(s.n for s in strata), sum(s.lines for s in strata),
                                    _token_bounds(tokens), realtime, batch, ok, g1, variances)
    total = None
    if models and not unsampled:
        floor = float(sum(y for items in per_model.values() for s, _ in items for _, y in s.sample))
        tokens = combine(all_tokens, floor)
        realtime = batch = None
        if priced:
            out = combine(all_costs)
            realtime = _money_bounds(total_input, out, total_output_cost)
            batch = _money_bounds(total_input, out, total_output_cost, batch_factor)
        methods = sorted({m.method for m in models.values()})
        total = ModelOutput("TOTAL", methods[0] if len(methods) == 1 else "mixed", sum(m.sample_requests for m in models.values()),
                            sum(m.lines for m in models.values()), _token_bounds(tokens), realtime, batch,
                            all(m.cochran_ok for m in models.values()), max((m.skewness for m in models.values()), default=0.0), {})
    approximate = set(approximate)
    pairs: dict[str, list[tuple[int, int]]] = {}
    for r in sampled:
        if r.billed is not None:
            pairs.setdefault(r.stratum[0], []).append((r.counted, r.billed))
    checks = tuple(count_check(model, p, model in approximate) for model, p in sorted(pairs.items()))
    return OutputEstimate(source, models, total, unsampled, checks, tuple(notes), currency)


class Population:
    """Every planned line's stratum, summed (``on_request`` of the planner):
    lines, counted prompt tokens, and the prices of its tier. Groups the
    pilot has no edges for go to bin 0 and come out as not sampled."""

    def __init__(self, design: Design, catalog, region: str, wanted: Iterable[str] = ()):
        self.design = design
        self.catalog = catalog
        self.region = region
        self.strata: dict[tuple, PopulationStratum] = {}
        self.wanted = set(wanted)  # the pilot's custom_ids
        self.found: set[str] = set()
        self.exact_lines = 0  # requests with no output (embeddings)
        self.exact_realtime_cost: Decimal | None = Decimal(0)

    def add(self, r) -> None:
        """Add one planned request (aggregate.PlannedRequest)."""
        if r.error is not None or r.model is None:
            return
        if r.output_tokens == 0:  # an embedding: nothing generated, its cost is exact
            self.exact_lines += 1
            self.exact_realtime_cost = None if self.exact_realtime_cost is None or r.realtime_cost is None \
                else self.exact_realtime_cost + r.realtime_cost
            return
        group = (r.model, r.thinking, r.tier or "-")
        x = r.input_tokens or 0
        key = self.design.stratum(group, x) or (*group, 0)
        pop = self.strata.get(key)
        if pop is None:
            pop = self.strata[key] = PopulationStratum()
            model = self.catalog.model(r.model)
            price = model.price(self.region) if model is not None else None
            tier = price.tier_for(x) if price is not None else None
            if tier is not None:
                pop.input_price = tier.input / MILLION
                out = tier.output_price(r.thinking)
                pop.output_price = None if out is None else out / MILLION
        pop.lines += 1
        pop.prompt_tokens += x
        if r.custom_id in self.wanted:
            self.found.add(r.custom_id)


# -- the budget gate (compare --max-cost --gate) ------------------------------------

BOUND = "bound"
EXPECTED = "expected"
HIGH = "high"


@dataclass(frozen=True)
class Gate:
    over: bool
    figure: Decimal | None
    message: str


def budget_gate(result, estimate: OutputEstimate | None, amount: Decimal, gate: str = BOUND, realtime: bool = False) -> Gate:
    """Is the chosen figure of the batch cost (real-time with ``realtime``)
    over ``amount``? ``gate``: the upper bound (the plan's worst case), the
    expected cost, or the interval's high end (both need a pilot estimate,
    or for the expected cost an assumption that is not the worst case). An
    unknown figure is over: it cannot be shown to fit."""
    side = "real-time" if realtime else "batch"
    total = result.plan.total()
    figure: Decimal | None
    if gate == BOUND:
        if not result.output.is_upper_bound:
            raise ValueError("the upper bound needs the worst-case output assumption (drop --output-tokens, --output-ratio)")
        figure = total.realtime_cost if realtime else total.batch_cost
        what = f"the worst-case {side} cost"
    elif estimate is not None:
        if estimate.total is None:
            figure = None
        else:
            bounds = estimate.total.realtime_cost if realtime else estimate.total.batch_cost
            figure = None if bounds is None else (bounds.estimate if gate == EXPECTED else bounds.high)
        what = f"the expected {side} cost" if gate == EXPECTED else f"the high end of the 95% interval of the {side} cost"
    elif gate == EXPECTED and not result.output.is_upper_bound:
        figure = total.realtime_cost if realtime else total.batch_cost
        what = f"the {side} cost at the assumed output ({result.output.describe()})"
    else:
        raise ValueError(f"the {gate} gate needs an expected output: a pilot file (calibrate)")
    currency = result.currency
    from batchplan.catalog.money import money

    if figure is None:
        return Gate(True, None, f"{what} is unknown (a model is unpriced or was not in the pilot), so it cannot be shown "
                                f"to be within {amount} {currency}")
    if figure > amount:
        return Gate(True, figure, f"{what}, {money(figure)} {currency}, is over {amount} {currency} by {money(figure - amount)} {currency}")
    return Gate(False, figure, f"{what}, {money(figure)} {currency}, is within {amount} {currency}")
