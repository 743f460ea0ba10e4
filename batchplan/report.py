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

JSON_SCHEMA = "batchplan.plan/1"
PER_REQUEST_FIELDS = ("line", "custom_id", "model", "tier", "input_tokens", "output_tokens", "realtime_cost", "batch_cost", "error")
MAX_ERRORS_SHOWN = 20


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


def warning_lines(result: BatchPlan) -> list[str]:
    """Warnings and invalid lines, one line each, for stderr."""
    out = []
    # With --sample, lines are named by the byte offset where they begin.
    at = "byte " if result.sample is not None else ""
    for error in result.plan.errors[:MAX_ERRORS_SHOWN]:
        where = f"{error.file}:" if error.file else ""
        out.append(f"invalid line: {where}{at}{error.line}: {error.reason}")
    hidden = result.plan.invalid - min(len(result.plan.errors), MAX_ERRORS_SHOWN)
    if hidden > 0 and at:
        out.append(f"invalid line: ... and about {hidden} more among the lines not read (estimated)")
    elif hidden > 0:
        out.append(f"invalid line: ... and {hidden} more (see --json or --per-request)")
    for w in warnings(result):
        if w["kind"] != "invalid_lines":
            shown = ", ".join(map(str, w["lines"][:10]))
            lines = "lines at bytes" if at else "lines"
            out.append(f"warning: {w['message']}" + (f"; {lines} {shown}" + (" ..." if w["count"] > 10 else "") if shown else ""))
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
        "errors": [{"line": e.line, "reason": e.reason, "custom_id": e.custom_id, "file": e.file} for e in plan.errors],
        "warnings": warnings(result),
        "exit_code": result.exit_code,
    }
    if result.sample is not None:
        doc["sample"] = result.sample.document()
    return doc


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
        "error": r.error,
        **({"file": r.file} if r.file else {}),
    }


class PerRequestWriter:
    """Writes one row per input line to ``.jsonl`` or ``.csv`` (by extension),
    into a temporary file that replaces ``path`` only when complete."""

    def __init__(self, path: str, multi_file: bool = False):
        self.path = path
        self.format = per_request_format(path)
        folder = os.path.dirname(os.path.abspath(path))
        self._tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
        try:
            self._handle = open(self._tmp, "w", encoding="utf-8", newline="")
        except OSError as exc:  # name the user's path, not our temporary one
            raise OSError(exc.errno, exc.strerror, path) from None
        fields = PER_REQUEST_FIELDS + (("file",) if multi_file else ())
        if self.format == "csv":
            self._csv = csv.DictWriter(self._handle, fieldnames=fields, extrasaction="ignore")
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

