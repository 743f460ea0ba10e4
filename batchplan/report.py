"""Stage 7: report. Render a plan as a table, a JSON document, or one row per
request. Money is exact here too; it is rounded only in the table."""

from __future__ import annotations

import csv
import os
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from . import aggregate as agg
from .aggregate import Plan, PlannedRequest, Row
from .plan import BatchPlan
from .reading import SHOW_LINES, at_line, line_ref

JSON_SCHEMA = "batchplan.plan/1"
PER_REQUEST_FIELDS = ("line", "custom_id", "model", "tier", "input_tokens", "output_tokens", "realtime_cost", "batch_cost", "error", "file")
MAX_ERRORS_SHOWN = SHOW_LINES


def money(amount: Decimal | None, places: int | None = None) -> str:
    """A cost for display: rounded half-up (more places for small amounts, so
    a cheap job does not show as 0.00), or 'unknown'."""
    if amount is None:
        return "unknown"
    if places is None:
        places = 6 if abs(amount) < 1 else 4 if abs(amount) < 100 else 2
    return f"{amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):,}"


def exact(amount: Decimal | None) -> str | None:
    """A cost for machines: the exact decimal as a string, or null."""
    return None if amount is None else format(amount.normalize(), "f")


def tokens(n: int | None) -> str:
    return "unknown" if n is None else f"{n:,}"


def saving_percent(row: Row) -> str:
    if row.saving is None or not row.realtime_cost:
        return ""
    return f" ({row.saving / row.realtime_cost:.0%})"


# -- warnings ---------------------------------------------------------------

def warnings(result: BatchPlan) -> list[dict[str, Any]]:
    """Every warning of a plan, in report order, as data."""
    plan = result.plan
    out = []
    if plan.invalid:
        out.append({
            "kind": "invalid_lines",
            "message": f"{plan.invalid} invalid line(s) left out of the totals",
            "count": plan.invalid,
            "lines": [e.line for e in plan.errors],
        })
    # The Batch API takes one model and one thinking mode per file, so these
    # are checked file by file, not over the combined plan.
    for path, file_plan in result.files.items():
        where = f"{path} mixes" if len(result.files) > 1 else "the file mixes"
        if file_plan.mixed_models:
            names = ", ".join(f"{m} ({n})" for m, n in sorted(file_plan.models.items()))
            out.append({
                "kind": "mixed_models",
                "message": f"{where} models: {names}; the Batch API takes one model per file (batchplan split separates them)",
                "count": len(file_plan.models),
                "lines": [],
            })
        if len(file_plan.thinking_modes) > 1:
            out.append({
                "kind": "mixed_thinking",
                "message": f"{where} thinking and non-thinking requests; the Batch API takes one thinking mode per file",
                "count": file_plan.thinking_modes[True],
                "lines": [],
            })
    for kind, text in agg.WARNING_TEXT.items():
        w = plan.warnings.get(kind)
        if w:
            detail = f" ({'; '.join(sorted(w.detail))})" if w.detail else ""
            out.append({"kind": kind, "message": f"{w.count} {text}{detail}", "count": w.count, "lines": w.lines})
    return out


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

    from .realtime import human_duration

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


# -- JSON ---------------------------------------------------------------------

def _row_doc(row: Row) -> dict[str, Any]:
    return {
        "requests": row.requests,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "realtime_cost": exact(row.realtime_cost),
        "batch_cost": exact(row.batch_cost),
        "saving": exact(row.saving),
    }


def _known_total(plan: Plan) -> dict[str, Any]:
    priced = [r for r in plan.rows.values() if r.realtime_cost is not None]
    known = Row()
    for r in priced:
        known = known.merge(r)
    return {
        "priced_realtime_cost": exact(known.realtime_cost),
        "priced_batch_cost": exact(known.batch_cost),
        "unpriced_requests": sum(r.requests for r in plan.rows.values() if r.realtime_cost is None),
    }


def document(result: BatchPlan) -> dict[str, Any]:
    """The plan as a JSON-ready document (schema ``batchplan.plan/1``, see
    docs/json.md). Money is a decimal string, or null when unknown."""
    plan = result.plan
    doc: dict[str, Any] = {
        "schema": JSON_SCHEMA,
        "region": result.region,
        "currency": result.currency,
        "output_assumption": {
            "mode": result.output.mode,
            "upper_bound": result.output.is_upper_bound,
            "description": result.output.describe(),
            **({"calibration": result.output.calibration} if result.output.calibration else {}),
        },
        "batch_price_factor": exact(result.batch_price_factor),
        "lines": plan.lines,
        "requests": plan.requests,
        "invalid_lines": plan.invalid,
        "rows": [
            {"model": model, "tier": tier, "thinking": thinking, **_row_doc(row)}
            for (model, tier, thinking), row in sorted(plan.rows.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1]))
        ],
        "total": {**_row_doc(plan.total()), **_known_total(plan)},
        "files": [{"path": path, "lines": p.lines, "invalid_lines": p.invalid, **_row_doc(p.total())} for path, p in result.files.items()],
        "errors": [{"line": e.line, "reason": e.reason, "custom_id": e.custom_id, "file": e.file, "message": e.message}
                   for e in plan.errors],
        "warnings": warnings(result),
        "exit_code": result.exit_code,
    }
    if result.sample is not None:
        doc["sample"] = result.sample.document()
    if result.realtime is not None:
        doc["realtime"] = realtime_document(result.realtime)
    return doc


def _share_doc(value: Decimal | None) -> str | None:
    return None if value is None else exact(value.quantize(Decimal("0.000001")))


def _decision_doc(m) -> dict[str, Any]:
    lim = m.rate_limit
    return {
        "model": m.model,
        "requests": m.requests,
        "input_tokens": m.input_tokens,
        "output_tokens": m.output_tokens,
        "realtime_list_cost": exact(m.list_cost),
        "realtime_input_list_cost": exact(m.input_list_cost),
        "realtime_output_list_cost": exact(m.output_list_cost),
        "cache_saving": exact(m.cache_cost_saving),
        "free_quota_saving": exact(m.free_quota_saving),
        "realtime_cost": exact(m.realtime_cost),
        "batch_cost": exact(m.batch_cost),
        "cache_modes": list(m.cache_modes),
        "cache_note": m.cache_note,
        "cache_hit_tokens": exact(m.hit_tokens),
        "cache_created_tokens": exact(m.created_tokens),
        "cache_hit_share": _share_doc(m.hit_share),
        "free_quota_tokens": m.free_tokens,
        "rate_limit": None if lim is None else {"rpm": lim.rpm, "tpm": lim.tpm, "unconfirmed": lim.unconfirmed, "source": lim.source},
        "duration_seconds": m.duration_seconds,
        "duration_bound": m.duration_bound,
        "batch_window_seconds": m.window_seconds,
        "inside_batch_window": m.inside_window,
        "cheaper": m.cheaper,
        "difference": exact(m.difference),
        "difference_share": _share_doc(m.difference_share),
        "verdict": m.verdict,
    }


def realtime_document(decision) -> dict[str, Any]:
    """The ``realtime`` block of the plan document (docs/json.md)."""
    o = decision.options
    return {
        "cache": o.cache,
        "free_quota": o.free_quota,
        "free_quota_tokens_per_model": o.free_quota_tokens,
        "rpm": o.rpm,
        "tpm": o.tpm,
        "batch_window_hours": o.window_hours,
        "break_even_hit_share": _share_doc(decision.break_even_hit_share),
        "explicit_break_even_hit_share": _share_doc(decision.explicit_break_even_hit_share),
        "prefix_table_truncated": decision.prefix_table_truncated,
        "notes": decision.notes,
        "models": [_decision_doc(m) for m in decision.models],
        "total": _decision_doc(decision.total),
        "verdict": decision.verdict,
    }


# -- per request --------------------------------------------------------------

def per_request_record(r: PlannedRequest) -> dict[str, Any]:
    return {
        "line": r.line,
        "custom_id": r.custom_id,
        "model": r.model,
        "tier": r.tier,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "realtime_cost": exact(r.realtime_cost),
        "batch_cost": exact(r.batch_cost),
        "error": None if r.error is None else at_line(r.file, r.line, r.error),
        "file": r.file,
    }


class PerRequestWriter:
    """Writes one row per input line to ``.jsonl`` or ``.csv`` (by extension),
    into a temporary file that replaces ``path`` only when complete."""

    def __init__(self, path: str):
        self.path = path
        self.format = per_request_format(path)
        folder = os.path.dirname(os.path.abspath(path))
        self._tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
        try:
            self._handle = open(self._tmp, "w", encoding="utf-8", newline="")
        except OSError as exc:  # name the user's path, not our temporary one
            raise OSError(exc.errno, exc.strerror, path) from None
        if self.format == "csv":
            self._csv = csv.DictWriter(self._handle, fieldnames=PER_REQUEST_FIELDS)
            self._csv.writeheader()
        else:
            import jsonlines

            self._jsonl = jsonlines.Writer(self._handle, compact=True, flush=False)

    def write(self, r: PlannedRequest) -> None:
        record = per_request_record(r)
        if self.format == "csv":
            self._csv.writerow({k: "" if v is None else v for k, v in record.items()})
        else:
            self._jsonl.write(record)

    def commit(self) -> None:
        self._handle.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._handle.close()
        try:
            os.unlink(self._tmp)
        except OSError:
            pass


def per_request_format(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    raise ValueError(f"{path}: --per-request writes .jsonl or .csv, by the file's extension")


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

