"""Real-time or batch: the real-time side as DashScope would bill it and as
long as it would take, beside batch, and a verdict. Pure: plan in, data out.

The rows of a plan price real-time at list prices. Here the real-time side
gets what batch never does [BATCH]:

- context cache (``--cache``): ``none`` (list prices, as the rows), ``best``
  (every repeat of a shared prefix of at least the minimum hits; the first use
  of each prefix is the miss that creates it), ``expected`` (as ``best``, but
  implicit hits count only in whole ``block_tokens`` blocks, an assumption).
  Explicit (``cache_control``) prefixes are created once at 125% and hit at
  10%; their 5-minute lifetime is assumed never to lapse while the job runs
  at the account's limits. Snapshot and ``-latest`` models get no cache.
  Output is always at full price.
- free quota (``free_quota``): the region's tokens per model, input and output
  together. They are applied to the model's totals, cheapest tokens first
  (the least the quota can be worth), so the saving is never overstated and
  does not depend on request order.
- duration: at the account's RPM and TPM, also enforced per second (RPM/60
  requests and TPM/60 tokens each second), for input plus expected output
  tokens. Models have separate limits, so a plan of several models run side
  by side takes the longest model's time. Response latency is not included.

Batch stays at ``batch_price_factor`` of list price on input and output.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from batchplan.catalog.catalog import _SNAPSHOT, Catalog, CatalogError
from batchplan.planning.cache import EXPLICIT, IMPLICIT, cache_tokens
from batchplan.planning.pricing import MILLION

CACHE_MODES = ("none", "expected", "best")
DEFAULT_WINDOW_HOURS = 24
_LATEST = re.compile(r"-latest$")


@dataclass(frozen=True)
class CacheRules:
    implicit_hit: Decimal = Decimal("0.2")
    implicit_min: int = 256
    block_tokens: int = 256
    explicit_hit: Decimal = Decimal("0.1")
    explicit_creation: Decimal = Decimal("1.25")
    explicit_min: int = 1024
    lifetime_seconds: int = 300
    implicit_models: frozenset[str] = frozenset()
    explicit_models: frozenset[str] = frozenset()

    @property
    def minimums(self) -> dict[str, int]:
        return {IMPLICIT: self.implicit_min, EXPLICIT: self.explicit_min}


def cache_rules(catalog: Catalog) -> CacheRules:
    """The catalog's ``context_cache`` section (none: no model is cached)."""
    raw = catalog.raw.get("context_cache")
    if raw is None:
        return CacheRules()
    try:
        imp, exp = raw["implicit"], raw["explicit"]
        return CacheRules(
            implicit_hit=Decimal(str(imp["hit_factor"])),
            implicit_min=int(imp["min_prefix_tokens"]),
            block_tokens=max(1, int(imp.get("block_tokens", 1))),
            explicit_hit=Decimal(str(exp["hit_factor"])),
            explicit_creation=Decimal(str(exp["creation_factor"])),
            explicit_min=int(exp["min_prefix_tokens"]),
            lifetime_seconds=int(exp.get("lifetime_seconds", 300)),
            implicit_models=frozenset(raw.get("implicit_models", ())),
            explicit_models=frozenset(raw.get("explicit_models", ())),
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise CatalogError(f"catalog context_cache does not follow the schema: {exc!r}") from None


def is_snapshot_or_latest(name: str) -> bool:
    return bool(_SNAPSHOT.match(name) or _LATEST.search(name))


def cache_supported(catalog: Catalog, rules: CacheRules, name: str, mode: str) -> bool:
    """Whether requests to ``name`` (as written) can hit the ``mode`` cache."""
    if is_snapshot_or_latest(name):
        return False
    model = catalog.model(name)
    base = model.name if model is not None else name
    return base in (rules.implicit_models if mode == IMPLICIT else rules.explicit_models)


@dataclass(frozen=True)
class RateLimit:
    rpm: int
    tpm: int
    unconfirmed: bool = False
    source: str = ""  # "catalog", "catalog (snapshot)", "--rpm/--tpm"


def rate_limit(catalog: Catalog, name: str, rpm: int | None = None, tpm: int | None = None) -> RateLimit | None:
    """RPM/TPM of ``name`` from the catalog, with ``rpm``/``tpm`` overriding.
    None when either is unknown."""
    raw = catalog.raw.get("rate_limits") or {}
    entry: dict[str, Any] | None = None
    where = "catalog"
    # The snapshot figures only for a snapshot or -latest name whose base the
    # catalog knows: an unknown name that merely ends like one (gpt-3.5-turbo-0125)
    # has unknown limits, so an unknown duration.
    if is_snapshot_or_latest(name) and raw.get("snapshot") and catalog.model(name) is not None:
        entry, where = raw["snapshot"], "catalog (snapshot/-latest)"
    else:
        model = catalog.model(name)
        entry = (raw.get("models") or {}).get(model.name if model else name)
    got_rpm = rpm if rpm is not None else (entry or {}).get("rpm")
    got_tpm = tpm if tpm is not None else (entry or {}).get("tpm")
    if not got_rpm or not got_tpm:
        return None
    overridden = rpm is not None or tpm is not None
    unconfirmed = bool((entry or {}).get("unconfirmed")) and not (rpm is not None and tpm is not None)
    return RateLimit(int(got_rpm), int(got_tpm), unconfirmed, "--rpm/--tpm" if overridden else where)


def free_quota_tokens(catalog: Catalog, region: str) -> int | None:
    """The catalog's free tokens per model in ``region``; None where none applies."""
    regions = (catalog.raw.get("free_quota") or {}).get("regions") or {}
    entry = regions.get(region)
    return None if not entry else int(entry["tokens_per_model"])


def duration_seconds(requests: int, tokens: int, limit: RateLimit) -> tuple[int, str]:
    """Whole seconds to send ``requests`` of ``tokens`` in all at ``limit``,
    paced per second (RPM/60 requests, TPM/60 tokens each second), and which
    limit binds ("RPM" or "TPM")."""
    def bound(amount: int, per_minute: int) -> int:
        # Per minute alone, a minute's worth can go in a burst: the last one
        # starts after (ceil(amount / limit) - 1) full minutes. Per second,
        # only limit/60 go each second. The job takes the longer of the two
        # (the per-second one, but for rounding).
        minutes = max(0, math.ceil(Fraction(amount, per_minute)) - 1) * 60
        seconds = math.ceil(Fraction(amount * 60, per_minute))
        return max(minutes, seconds)

    by_requests = bound(requests, limit.rpm)
    by_tokens = bound(tokens, limit.tpm)
    return (by_tokens, "TPM") if by_tokens > by_requests else (by_requests, "RPM")


def break_even(batch_factor: Decimal, hit_factor: Decimal) -> Decimal | None:
    """The hit share below which batch is cheaper on input: real-time input
    costs (1 - (1 - f) h) of list, batch costs b, so h* = (1 - b) / (1 - f).
    None when a cache gives no discount (f >= 1)."""
    if hit_factor >= 1:
        return None
    return (1 - batch_factor) / (1 - hit_factor)


@dataclass(frozen=True)
class RealtimeOptions:
    """What to assume about the real-time side."""

    cache: str = "none"  # none | expected | best
    free_quota: bool = False
    free_quota_tokens: int | None = None  # None: the catalog's figure for the region
    rpm: int | None = None
    tpm: int | None = None
    window_hours: int = DEFAULT_WINDOW_HOURS

    def __post_init__(self):
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, not {self.cache!r}")

    @property
    def collects(self) -> bool:
        """Whether planning must record prefixes (only for a cache mode)."""
        return self.cache != "none"


@dataclass(frozen=True)
class ModelDecision:
    """Real-time against batch for one model."""

    model: str
    requests: int
    input_tokens: int
    output_tokens: int | None
    list_cost: Decimal | None  # real-time at list prices (the rows)
    input_list_cost: Decimal | None
    output_list_cost: Decimal | None
    cache_cost_saving: Decimal | None  # what the cache takes off the input
    free_quota_saving: Decimal | None
    realtime_cost: Decimal | None  # list - cache - free quota
    batch_cost: Decimal | None
    cache: str  # the assumption used
    cache_modes: tuple[str, ...]  # caches that apply: implicit, explicit
    cache_note: str | None
    hit_tokens: Decimal
    created_tokens: Decimal
    hit_share: Decimal | None
    break_even_hit_share: Decimal | None
    free_tokens: int  # free-quota tokens applied
    rate_limit: RateLimit | None
    duration_seconds: int | None
    duration_bound: str | None
    window_seconds: int
    cheaper: str | None  # "batch" | "real-time" | "same" | None (unknown)
    difference: Decimal | None  # |real-time - batch|
    difference_share: Decimal | None  # difference / the dearer side
    inside_window: bool | None
    verdict: str = ""


@dataclass(frozen=True)
class Decision:
    """Real-time against batch per model and for the whole plan."""

    currency: str
    options: RealtimeOptions
    batch_factor: Decimal
    break_even_hit_share: Decimal | None  # implicit cache, from catalog factors
    explicit_break_even_hit_share: Decimal | None
    models: list[ModelDecision]
    total: ModelDecision
    prefix_table_truncated: bool = False
    notes: list[str] = field(default_factory=list)
    implicit_hit_factor: Decimal = Decimal("0.2")
    explicit_hit_factor: Decimal = Decimal("0.1")

    @property
    def verdict(self) -> str:
        return self.total.verdict


def decide(plan, catalog: Catalog, region: str, currency: str, batch_factor: Decimal, options: RealtimeOptions | None = None) -> Decision:
    """Real-time against batch for ``plan`` (an aggregate.Plan)."""
    options = options or RealtimeOptions()
    rules = cache_rules(catalog)
    quota = None
    notes: list[str] = []
    if options.free_quota:
        quota = options.free_quota_tokens if options.free_quota_tokens is not None else free_quota_tokens(catalog, region)
        if quota is None:
            notes.append(f"no free quota applies in region {region}")
    if options.collects and plan.realtime is None and plan.requests:
        notes.append("no prefixes were recorded (plan with Planner(realtime_stats=True) or realtime options), so no cache hits are counted")
    by_model: dict[str, list] = {}
    for (name, tier, thinking), row in plan.rows.items():
        by_model.setdefault(name, []).append((tier, thinking, row))
    stats = {name: s.normalized() for name, s in plan.realtime.models.items()} if plan.realtime is not None else {}
    models = [
        _decide_model(name, rows, stats.get(name), catalog, region, currency, batch_factor, options, rules, quota)
        for name, rows in sorted(by_model.items())
    ]
    total = _total(models, currency, batch_factor, options, rules)
    for m in models:
        # At the account's pace, requests of one model are duration/requests
        # apart; past the explicit lifetime an entry could lapse between uses.
        if m.created_tokens and m.duration_seconds is not None and m.duration_seconds > rules.lifetime_seconds * m.requests:
            notes.append(f"{m.model}: requests are more than {rules.lifetime_seconds} s apart on average, so explicit cache entries may lapse between uses")
    truncated = any(s.truncated for s in stats.values())
    if truncated:
        notes.append("more distinct prefixes than kept: cache hits are a lower bound")
    return Decision(currency, options, batch_factor, break_even(batch_factor, rules.implicit_hit),
                    break_even(batch_factor, rules.explicit_hit), models, total, truncated, notes,
                    rules.implicit_hit, rules.explicit_hit)


def _tier_prices(catalog: Catalog, name: str, region: str) -> dict[str, Any]:
    model = catalog.model(name)
    price = model.price(region) if model is not None else None
    if price is None:
        return {}
    return {price.tier_label(t): t for t in price.tiers}


def _decide_model(name, rows, stats, catalog, region, currency, batch_factor, options, rules, quota) -> ModelDecision:
    tiers = _tier_prices(catalog, name, region)
    requests = sum(r.requests for _, _, r in rows)
    input_tokens = sum(r.input_tokens for _, _, r in rows)
    outs = [r.output_tokens for _, _, r in rows]
    output_tokens = None if any(o is None for o in outs) else sum(outs)
    known = all(r.realtime_cost is not None and r.batch_cost is not None and tier in tiers for tier, _, r in rows)
    list_cost = sum((r.realtime_cost for _, _, r in rows), Decimal(0)) if known else None
    batch_cost = sum((r.batch_cost for _, _, r in rows), Decimal(0)) if known else None

    # Cache: which modes apply, and their tokens per tier.
    modes = tuple(m for m in (IMPLICIT, EXPLICIT) if options.cache != "none" and cache_supported(catalog, rules, name, m))
    note = None
    if options.cache != "none" and not modes:
        note = "no cache: snapshot or -latest model" if is_snapshot_or_latest(name) else "no cache: model not in the catalog's cache lists"
    per_tier: dict[str, dict] = {}
    if modes and stats is not None:
        order = [label for label in tiers]  # cheapest tier first
        per_tier = cache_tokens(stats, options.cache, rules.block_tokens, order)
    tier_input = {}
    for tier, _, r in rows:
        tier_input[tier] = tier_input.get(tier, 0) + r.input_tokens
    hit_tokens = Decimal(0)
    created_tokens = Decimal(0)
    input_list = Decimal(0)
    cache_saving = Decimal(0)
    buckets: list[tuple[Decimal, int]] = []  # (cost, tokens) after cache, for the free quota
    for tier, tokens in tier_input.items():
        seen = stats.input_tokens.get(tier, 0) if stats is not None else 0
        # Sampled plans scale the rows; prefix tables scale with them.
        scale = Decimal(tokens) / Decimal(seen) if seen else Decimal(0)
        got = per_tier.get(tier, {})
        imp = got.get(IMPLICIT) if IMPLICIT in modes else None
        exp = got.get(EXPLICIT) if EXPLICIT in modes else None
        hit_i = Decimal(imp.hit) * scale if imp else Decimal(0)
        hit_e = Decimal(exp.hit) * scale if exp else Decimal(0)
        made = Decimal(exp.created) * scale if exp else Decimal(0)
        hit_tokens += hit_i + hit_e
        created_tokens += made
        if tier in tiers:
            price = tiers[tier].input
            list_in = tokens * price / MILLION
            saving = price * ((1 - rules.implicit_hit) * hit_i + (1 - rules.explicit_hit) * hit_e
                              - (rules.explicit_creation - 1) * made) / MILLION
            input_list += list_in
            cache_saving += saving
            buckets.append((list_in - saving, tokens))
    output_list = list_cost - input_list if known else None
    if known:
        for tier, thinking, r in rows:
            out_price = tiers[tier].output_price(thinking)
            if r.output_tokens and out_price is not None:
                buckets.append((r.output_tokens * out_price / MILLION, r.output_tokens))
    free_tokens = 0
    free_saving = Decimal(0)
    if quota and known:
        free_tokens, free_saving = _apply_quota(quota, buckets)
    realtime = list_cost - cache_saving - free_saving if known else None
    hit_share = hit_tokens / input_tokens if input_tokens else None
    limit = rate_limit(catalog, name, options.rpm, options.tpm)
    seconds = bound = None
    if limit is not None and output_tokens is not None:
        seconds, bound = duration_seconds(requests, input_tokens + output_tokens, limit)
    return _finish(ModelDecision(
        model=name, requests=requests, input_tokens=input_tokens, output_tokens=output_tokens,
        list_cost=list_cost, input_list_cost=input_list if known else None, output_list_cost=output_list,
        cache_cost_saving=cache_saving if known else None, free_quota_saving=free_saving if known else None,
        realtime_cost=realtime, batch_cost=batch_cost, cache=options.cache, cache_modes=modes, cache_note=note,
        hit_tokens=hit_tokens, created_tokens=created_tokens, hit_share=hit_share,
        break_even_hit_share=break_even(batch_factor, rules.explicit_hit if modes == (EXPLICIT,) else rules.implicit_hit),
        free_tokens=free_tokens, rate_limit=limit, duration_seconds=seconds, duration_bound=bound,
        window_seconds=options.window_hours * 3600, cheaper=None, difference=None, difference_share=None,
        inside_window=None,
    ), currency, options)


def _apply_quota(quota: int, buckets: list[tuple[Decimal, int]]) -> tuple[int, Decimal]:
    """Free tokens used and the cost they take off, cheapest tokens first."""
    left = quota
    saving = Decimal(0)
    used = 0
    for cost, tokens in sorted((b for b in buckets if b[1] > 0), key=lambda b: (Fraction(b[0]) / b[1], b[1])):
        if left <= 0:
            break
        take = min(left, tokens)
        saving += cost if take == tokens else cost * take / tokens
        used += take
        left -= take
    return used, saving


def _total(models: list[ModelDecision], currency: str, batch_factor: Decimal, options: RealtimeOptions, rules: CacheRules) -> ModelDecision:
    def total(attr):
        values = [getattr(m, attr) for m in models]
        return None if not values or any(v is None for v in values) else sum(values, Decimal(0) if isinstance(values[0], Decimal) else 0)

    input_tokens = sum(m.input_tokens for m in models)
    hit = sum((m.hit_tokens for m in models), Decimal(0))
    durations = [m.duration_seconds for m in models]
    seconds = None if not durations or any(d is None for d in durations) else max(durations)
    slowest = max((m for m in models if m.duration_seconds is not None), key=lambda m: m.duration_seconds, default=None)
    modes = tuple(sorted({mode for m in models for mode in m.cache_modes}))
    return _finish(ModelDecision(
        model="TOTAL", requests=sum(m.requests for m in models), input_tokens=input_tokens,
        output_tokens=total("output_tokens"), list_cost=total("list_cost"), input_list_cost=total("input_list_cost"),
        output_list_cost=total("output_list_cost"), cache_cost_saving=total("cache_cost_saving"),
        free_quota_saving=total("free_quota_saving"), realtime_cost=total("realtime_cost"), batch_cost=total("batch_cost"),
        cache=options.cache, cache_modes=modes, cache_note=None, hit_tokens=hit,
        created_tokens=sum((m.created_tokens for m in models), Decimal(0)),
        hit_share=hit / input_tokens if input_tokens else None,
        break_even_hit_share=break_even(batch_factor, rules.implicit_hit), free_tokens=sum(m.free_tokens for m in models),
        rate_limit=slowest.rate_limit if slowest and seconds is not None else None,
        duration_seconds=seconds, duration_bound=slowest.duration_bound if slowest and seconds is not None else None,
        window_seconds=options.window_hours * 3600, cheaper=None, difference=None, difference_share=None, inside_window=None,
    ), currency, options)


def _finish(m: ModelDecision, currency: str, options: RealtimeOptions) -> ModelDecision:
    from dataclasses import replace

    cheaper = difference = share = None
    if m.realtime_cost is not None and m.batch_cost is not None:
        difference = abs(m.realtime_cost - m.batch_cost)
        dearer = max(m.realtime_cost, m.batch_cost)
        share = difference / dearer if dearer else Decimal(0)
        cheaper = "same" if difference == 0 else "batch" if m.batch_cost < m.realtime_cost else "real-time"
    inside = None if m.duration_seconds is None else m.duration_seconds <= m.window_seconds
    m = replace(m, cheaper=cheaper, difference=difference, difference_share=share, inside_window=inside)
    return replace(m, verdict=verdict_text(m, currency, options))


def human_duration(seconds: int | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{round(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def verdict_text(m: ModelDecision, currency: str, options: RealtimeOptions) -> str:
    """One line: which way is cheaper, by how much, under which assumptions,
    and whether real-time would finish inside the batch window."""
    from batchplan.catalog.money import money

    if m.cheaper is None:
        cost = "cost unknown (some prices or output tokens are unknown)"
    elif m.cheaper == "same":
        cost = "real-time and batch cost the same"
    else:
        cost = f"{m.cheaper} is cheaper by {money(m.difference)} {currency} ({m.difference_share:.0%})"
    cache = f"cache={options.cache}"
    if options.cache != "none":
        if m.cache_note:
            cache += f" ({m.cache_note})"
        elif m.hit_share is not None:
            cache += f" (hit share {m.hit_share:.0%})"
    quota = "no free quota" if not options.free_quota else f"free quota {m.free_tokens:,} tokens" if m.free_tokens else "free quota (none applies)"
    if m.duration_seconds is None:
        which = "some model" if m.model == "TOTAL" else "this model"
        time = f"real-time duration unknown (no RPM/TPM for {which}, or output tokens unknown; pass --rpm and --tpm)"
    else:
        lim = m.rate_limit
        limits = f" at {lim.rpm:,} RPM / {lim.tpm:,} TPM" + (" (UNCONFIRMED)" if lim.unconfirmed else "") if lim else ""
        where = "inside" if m.inside_window else "outside"
        time = f"real-time takes about {human_duration(m.duration_seconds)}{limits}, {where} the {options.window_hours}h batch window"
        if m.model == "TOTAL":
            time += " (models side by side, each at its own limits)"
    return f"{m.model}: {cost} with {cache}, {quota}; {time}."
