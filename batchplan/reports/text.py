"""Plans as text: the compare table, the real-time verdict table, warnings as
lines for stderr, and the price list. Money is exact until here; it is
rounded only for display."""

from __future__ import annotations

import os
from decimal import Decimal

from batchplan.catalog.money import money
from batchplan.planning.aggregate import Row
from batchplan.planning.planner import BatchPlan
from batchplan.planning.reading import SHOW_LINES, line_ref
from batchplan.reports import fit
from batchplan.reports.documents import warnings

MAX_ERRORS_SHOWN = SHOW_LINES


def tokens(n: int | None) -> str:
    return "unknown" if n is None else f"{n:,}"


def saving_percent(row: Row) -> str:
    if row.saving is None or not row.realtime_cost:
        return ""
    return f" ({row.saving / row.realtime_cost:.0%})"


# -- table --------------------------------------------------------------------

# What the compare tables give up, in order, when the width is short (after
# short headers and a legend). A new column is a Column in _plan_columns (with
# a short header), a key in _row (a Cell when it has a narrower form, such as
# a value without its interval), and a place in these lists.
PLAN_STEPS = (fit.narrow("saving"), fit.merge("tier", "model"), fit.drop("requests"), fit.drop("saving"),
              fit.drop("output_tokens"), fit.drop("input_tokens"))
FILE_STEPS = (fit.narrow("file"),) + PLAN_STEPS
REALTIME_STEPS = (fit.drop("limits"), fit.drop("list_cost"), fit.drop("hit_share"), fit.drop("free_quota"),
                  fit.drop("cache"), fit.drop("takes"))


def _plan_columns(cur: str, first: list[fit.Column]) -> list[fit.Column]:
    return first + [
        fit.Column("requests", "requests", "reqs"),
        fit.Column("input_tokens", "input tokens", "in tok"),
        fit.Column("output_tokens", "output tokens (assumed)", "out tok"),
        fit.Column("realtime_cost", f"real-time cost ({cur})", f"real-time {cur}", explain=False),
        fit.Column("batch_cost", f"batch cost ({cur})", f"batch {cur}", explain=False),
        fit.Column("saving", "saving"),
    ]


def table(result: BatchPlan, width: int | None = None) -> str:
    """The human report: one row per model x tier, totals, warnings. With a
    ``width``, every line fits it (``reports.fit``); without, every column shows."""
    plan = result.plan
    cur = result.currency
    columns = _plan_columns(cur, [fit.Column("model", "model", align="left"), fit.Column("tier", "tier", align="left")])
    body = []
    for (model, tier, thinking), row in sorted(plan.rows.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        body.append(_row({"model": model + (" [thinking]" if thinking else ""), "tier": tier}, row))
    total = plan.total()
    body.append(_row({"model": "TOTAL", "tier": ""}, total))
    fitted = [fit.fit_table(columns, body, width, PLAN_STEPS)]
    lines = list(fitted[0].lines)
    if len(result.files) > 1:
        file_rows = [_row({"file": fit.Cell(path, os.path.basename(path) or path)}, p.total()) for path, p in result.files.items()]
        fitted.append(fit.fit_table(_plan_columns(cur, [fit.Column("file", "file", align="left")]), file_rows, width, FILE_STEPS))
        lines.append("")
        lines.extend(fitted[-1].lines)
    notes = fit.notes(fitted)
    notes.append(f"Region: {result.region} ({cur}). Requests: {plan.requests:,} of {plan.lines:,} lines.")
    notes.append(f"Output tokens: {result.output.describe()}.")
    notes.append(
        f"Batch is billed at {result.batch_price_factor:.0%} of the real-time list price on input and output; "
        "no context-cache or free-quota discount applies to batch, so both sides use list prices."
    )
    if any(thinking for _, _, thinking in plan.rows):
        notes.append("[thinking] rows are priced at the model's thinking output price where it has one.")
    if total.realtime_cost is None:
        notes.append("Some costs are unknown: see the unpriced warning. Totals are unknown, never counted as zero.")
    if result.sample is not None:
        notes.append(result.sample.describe(cur))
    lines.append("")
    lines.extend(fit.wrap(notes, width))
    if getattr(result, "output_estimate", None) is not None:  # compare --calibrate PILOT.jsonl
        from batchplan.reports import estimate

        lines.append("")
        lines.extend(estimate.lines(result, width))
    if result.realtime is not None:
        lines.append("")
        lines.append(realtime_table(result.realtime, width))
    return "\n".join(lines)


def _share(value: Decimal | None) -> str:
    return "" if value is None else f"{value:.1%}"


def realtime_table(decision, width: int | None = None) -> str:
    """The real-time side as DashScope would bill it, against batch, with
    the verdict per model and for the whole plan."""
    from batchplan.planning.realtime import human_duration

    o = decision.options
    cur = decision.currency
    quota = "no free quota" if not o.free_quota else "free quota on real-time only"
    columns = [
        fit.Column("model", "model", align="left"),
        fit.Column("list_cost", f"real-time list ({cur})", "list"),
        fit.Column("cache", "cache"),
        fit.Column("free_quota", "free quota", "quota"),
        fit.Column("realtime", f"real-time ({cur})", f"real-time {cur}", explain=False),
        fit.Column("batch", f"batch ({cur})", f"batch {cur}", explain=False),
        fit.Column("hit_share", "input hit share", "hits"),
        fit.Column("takes", "real-time takes", "takes"),
        fit.Column("limits", "limits (RPM/TPM)", "RPM/TPM"),
    ]
    body = []
    for m in decision.models + [decision.total]:
        lim = m.rate_limit
        limits = "" if lim is None else f"{lim.rpm:,}/{lim.tpm:,}" + (" UNCONFIRMED" if lim.unconfirmed else "")
        body.append({
            "model": m.model, "list_cost": money(m.list_cost),
            "cache": "-" if m.cache_cost_saving is None else "-" + money(m.cache_cost_saving) if m.cache_cost_saving else "0",
            "free_quota": "-" if m.free_quota_saving is None else "-" + money(m.free_quota_saving) if m.free_quota_saving else "0",
            "realtime": money(m.realtime_cost), "batch": money(m.batch_cost),
            "hit_share": _share(m.hit_share) if o.cache != "none" else "", "takes": human_duration(m.duration_seconds),
            "limits": limits if m.model != "TOTAL" else "",
        })
    fitted = fit.fit_table(columns, body, width, REALTIME_STEPS)
    notes = [f"Real-time or batch (cache={o.cache}, {quota}, batch window {o.window_hours}h):"]
    lines = fit.wrap(notes, width) + fitted.lines
    notes = fit.notes([fitted])
    if decision.break_even_hit_share is not None:
        notes.append(
            f"Break-even: batch is cheaper on input while the implicit cache hit share is under {decision.break_even_hit_share:.1%} "
            f"(hits at {decision.implicit_hit_factor:.0%} of input price, batch at {decision.batch_factor:.0%})."
        )
    if o.cache != "none":
        notes.append(
            f"cache={o.cache}: " + ("every repeat of a shared prefix hits; the first use of each prefix is a miss." if o.cache == "best"
                                    else "as best, but implicit hits count only in whole blocks; the first use of each prefix is a miss.")
        )
    notes.append("Duration: sending at the per-second limits (RPM/60 requests, TPM/60 tokens), input plus expected output tokens; response latency not included.")
    for note in decision.notes:
        notes.append(f"Note: {note}.")
    notes.extend(m.verdict for m in decision.models)
    if len(decision.models) > 1:
        notes.append(decision.total.verdict)
    return "\n".join(lines + fit.wrap(notes, width))


def _row(head: dict, row: Row) -> dict:
    return {
        **head,
        "requests": f"{row.requests:,}",
        "input_tokens": tokens(row.input_tokens),
        "output_tokens": tokens(row.output_tokens),
        "realtime_cost": money(row.realtime_cost),
        "batch_cost": money(row.batch_cost),
        "saving": fit.Cell(money(row.saving) + saving_percent(row), saving_percent(row).strip(" ()") or money(row.saving)),
    }


def warning_lines(result: BatchPlan, invalid: bool = True) -> list[str]:
    """Invalid lines (unless ``invalid`` is false) as PATH:LINE: reason, then
    warnings, one line each, for stderr."""
    out = []
    if invalid:
        # With --sample, lines are named by the byte offset where they begin.
        for error in result.plan.errors[:MAX_ERRORS_SHOWN]:
            out.append(f"{error.file}: byte {error.line}: {error.reason}" if result.sample is not None else error.message)
        hidden = result.plan.invalid - min(len(result.plan.errors), MAX_ERRORS_SHOWN)
        if hidden > 0 and result.sample is not None:
            out.append(f"... and about {hidden:,} more invalid line(s) among the lines not read (estimated)")
        elif hidden > 0:
            out.append(f"... and {hidden:,} more invalid line(s) (see --json or --per-request)")
    for w in warnings(result):
        if w["kind"] != "invalid_lines":
            shown = ", ".join(_locations(result, w["kind"]))
            lines = "lines at bytes" if result.sample is not None else "lines"
            out.append(f"warning: {w['message']}" + (f"; {lines} {shown}" + (" ..." if w["count"] > 10 else "") if shown else ""))
    return out


def _locations(result: BatchPlan, kind: str, limit: int = 10) -> list[str]:
    """The first lines a warning is about, as PATH:LINE, file by file (line
    numbers alone would be ambiguous over several files)."""
    out: list[str] = []
    for path, plan in result.files.items():
        w = plan.warnings.get(kind)
        if w:
            out.extend(line_ref(path, n) for n in w.lines[: limit - len(out)])
        if len(out) >= limit:
            break
    return out


PRICES_STEPS = (fit.drop("source"), fit.drop("limits"), fit.drop("thinking_output"))


def prices_table(catalog, region: str, width: int | None = None) -> str:
    """The catalog's prices for one region, one row per model x tier (fitted
    to ``width`` as the compare table is)."""
    cur = catalog.currency(region)
    rows = []
    for name, model in sorted(catalog.models.items()):
        price = model.price(region)
        lim = model.limits
        limits = f"{tokens(lim.context_window)}/{tokens(lim.max_input)}/{tokens(lim.max_output)}"
        if price is None:
            rows.append({"model": name, "tier": "-", "input": "no price", "limits": limits})
            continue
        for tier in price.tiers:
            rows.append({
                "model": name,
                "tier": price.tier_label(tier),
                "input": str(tier.input),
                "output": "-" if tier.output is None else str(tier.output),
                "thinking_output": "" if tier.thinking_output is None else str(tier.thinking_output),
                "limits": limits if tier.index == 0 else "",
                "source": f"{price.source} {price.as_of}" if tier.index == 0 else "",
            })
    columns = [
        fit.Column("model", "model", align="left"),
        fit.Column("tier", "tier (input tokens)", "tier", align="left", explain=False),
        fit.Column("input", f"input {cur}/1M", f"in {cur}/1M", align="left"),
        fit.Column("output", f"output {cur}/1M", f"out {cur}/1M", align="left"),
        fit.Column("thinking_output", "thinking output", "thinking", align="left"),
        fit.Column("limits", "context/max in/max out", "ctx/in/out", align="left"),
        fit.Column("source", "source", align="left"),
    ]
    fitted = fit.fit_table(columns, rows, width, PRICES_STEPS)
    sources = catalog.raw.get("sources", {})
    notes = [f"  {key}: {s.get('url', '')} (retrieved {s.get('retrieved', '?')})" for key, s in sorted(sources.items())]
    prose = fit.notes([fitted]) + [f"Region {region}: {catalog.regions[region].name}, {cur}. Batch = 50% of these prices."]
    return "\n".join(fitted.lines) + "\n\n" + "\n".join(fit.wrap(prose, width)) + "\nSources:\n" + "\n".join(fit.wrap(notes, width))
