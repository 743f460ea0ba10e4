"""Plans as text: the compare table, the real-time verdict table, warnings as
lines for stderr, and the price list. Money is exact until here; it is
rounded only for display."""

from __future__ import annotations

from decimal import Decimal

from batchplan.catalog.money import money
from batchplan.planning.aggregate import Row
from batchplan.planning.planner import BatchPlan
from batchplan.planning.reading import SHOW_LINES, line_ref
from batchplan.reports.documents import warnings

MAX_ERRORS_SHOWN = SHOW_LINES


def tokens(n: int | None) -> str:
    return "unknown" if n is None else f"{n:,}"


def saving_percent(row: Row) -> str:
    if row.saving is None or not row.realtime_cost:
        return ""
    return f" ({row.saving / row.realtime_cost:.0%})"


# -- table --------------------------------------------------------------------

def table(result: BatchPlan) -> str:
    """The human report: one row per model x tier, totals, warnings."""
    from tabulate import tabulate

    plan = result.plan
    cur = result.currency
    headers = ["model", "tier", "requests", "input tokens", "output tokens (assumed)", f"real-time cost ({cur})", f"batch cost ({cur})", "saving"]
    body = []
    for (model, tier, thinking), row in sorted(plan.rows.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        body.append(_row([model + (" [thinking]" if thinking else ""), tier], row))
    total = plan.total()
    body.append(_row(["TOTAL", ""], total))
    align = ("left", "left") + ("right",) * 6
    lines = [tabulate(body, headers, tablefmt="simple", colalign=align, disable_numparse=True)]
    if len(result.files) > 1:
        file_rows = [_row([path], p.total()) for path, p in result.files.items()]
        lines.append("")
        lines.append(tabulate(file_rows, ["file"] + headers[2:], tablefmt="simple", colalign=("left",) + ("right",) * 6, disable_numparse=True))
    lines.append("")
    lines.append(f"Region: {result.region} ({cur}). Requests: {plan.requests:,} of {plan.lines:,} lines.")
    lines.append(f"Output tokens: {result.output.describe()}.")
    lines.append(
        f"Batch is billed at {result.batch_price_factor:.0%} of the real-time list price on input and output; "
        "no context-cache or free-quota discount applies to batch, so both sides use list prices."
    )
    if any(thinking for _, _, thinking in plan.rows):
        lines.append("[thinking] rows are priced at the model's thinking output price where it has one.")
    if total.realtime_cost is None:
        lines.append("Some costs are unknown: see the unpriced warning. Totals are unknown, never counted as zero.")
    if result.sample is not None:
        lines.append(result.sample.describe(cur))
    if getattr(result, "output_estimate", None) is not None:  # compare --calibrate PILOT.jsonl
        from batchplan.reports import estimate

        lines.append("")
        lines.extend(estimate.lines(result))
    if result.realtime is not None:
        lines.append("")
        lines.append(realtime_table(result.realtime))
    return "\n".join(lines)


def _share(value: Decimal | None) -> str:
    return "" if value is None else f"{value:.1%}"


def realtime_table(decision) -> str:
    """The real-time side as DashScope would bill it, against batch, with
    the verdict per model and for the whole plan."""
    from tabulate import tabulate

    from batchplan.planning.realtime import human_duration

    o = decision.options
    cur = decision.currency
    quota = "no free quota" if not o.free_quota else "free quota on real-time only"
    headers = ["model", f"real-time list ({cur})", "cache", "free quota", f"real-time ({cur})", f"batch ({cur})",
               "input hit share", "real-time takes", "limits (RPM/TPM)"]
    body = []
    for m in decision.models + [decision.total]:
        lim = m.rate_limit
        limits = "" if lim is None else f"{lim.rpm:,}/{lim.tpm:,}" + (" UNCONFIRMED" if lim.unconfirmed else "")
        body.append([
            m.model, money(m.list_cost),
            "-" if m.cache_cost_saving is None else "-" + money(m.cache_cost_saving) if m.cache_cost_saving else "0",
            "-" if m.free_quota_saving is None else "-" + money(m.free_quota_saving) if m.free_quota_saving else "0",
            money(m.realtime_cost), money(m.batch_cost),
            _share(m.hit_share) if o.cache != "none" else "", human_duration(m.duration_seconds),
            limits if m.model != "TOTAL" else "",
        ])
    lines = [f"Real-time or batch (cache={o.cache}, {quota}, batch window {o.window_hours}h):"]
    lines.append(tabulate(body, headers, tablefmt="simple", colalign=("left",) + ("right",) * 8, disable_numparse=True))
    if decision.break_even_hit_share is not None:
        lines.append(
            f"Break-even: batch is cheaper on input while the implicit cache hit share is under {decision.break_even_hit_share:.1%} "
            f"(hits at {decision.implicit_hit_factor:.0%} of input price, batch at {decision.batch_factor:.0%})."
        )
    if o.cache != "none":
        lines.append(
            f"cache={o.cache}: " + ("every repeat of a shared prefix hits; the first use of each prefix is a miss." if o.cache == "best"
                                    else "as best, but implicit hits count only in whole blocks; the first use of each prefix is a miss.")
        )
    lines.append("Duration: sending at the per-second limits (RPM/60 requests, TPM/60 tokens), input plus expected output tokens; response latency not included.")
    for note in decision.notes:
        lines.append(f"Note: {note}.")
    lines.extend(m.verdict for m in decision.models)
    if len(decision.models) > 1:
        lines.append(decision.total.verdict)
    return "\n".join(lines)


def _row(head: list[str], row: Row) -> list[str]:
    return head + [
        f"{row.requests:,}",
        tokens(row.input_tokens),
        tokens(row.output_tokens),
        money(row.realtime_cost),
        money(row.batch_cost),
        money(row.saving) + saving_percent(row),
    ]


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


def prices_table(catalog, region: str) -> str:
    """The catalog's prices for one region, one row per model x tier."""
    from tabulate import tabulate

    cur = catalog.currency(region)
    rows = []
    for name, model in sorted(catalog.models.items()):
        price = model.price(region)
        lim = model.limits
        limits = f"{tokens(lim.context_window)}/{tokens(lim.max_input)}/{tokens(lim.max_output)}"
        if price is None:
            rows.append([name, "-", "no price", "", "", limits, ""])
            continue
        for tier in price.tiers:
            rows.append([
                name,
                price.tier_label(tier),
                str(tier.input),
                "-" if tier.output is None else str(tier.output),
                "" if tier.thinking_output is None else str(tier.thinking_output),
                limits if tier.index == 0 else "",
                f"{price.source} {price.as_of}" if tier.index == 0 else "",
            ])
    headers = ["model", "tier (input tokens)", f"input {cur}/1M", f"output {cur}/1M", "thinking output", "context/max in/max out", "source"]
    text = tabulate(rows, headers, tablefmt="simple", disable_numparse=True)
    sources = catalog.raw.get("sources", {})
    notes = [f"  {key}: {s.get('url', '')} (retrieved {s.get('retrieved', '?')})" for key, s in sorted(sources.items())]
    return text + f"\n\nRegion {region}: {catalog.regions[region].name}, {cur}. Batch = 50% of these prices.\nSources:\n" + "\n".join(notes)

