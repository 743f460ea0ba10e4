"""Plans as data: the JSON document of ``compare --json`` (schema
``batchplan.plan/1``, docs/json.md), the warnings as records, and the
per-request rows of ``--per-request``. Money is a decimal string, or null
when unknown."""

from __future__ import annotations

import csv
import os
import sys
from decimal import Decimal
from typing import Any

from batchplan.catalog.money import exact
from batchplan.errors import InputError
from batchplan.planning import aggregate as agg
from batchplan.planning.aggregate import Plan, PlannedRequest, Row
from batchplan.planning.planner import BatchPlan
from batchplan.planning.reading import STDIN, at_line

JSON_SCHEMA = "batchplan.plan/1"
# "-" as an output path is standard output, as it is standard input as an input path.
STDOUT = STDIN
PER_REQUEST_FIELDS = ("line", "custom_id", "model", "tier", "input_tokens", "output_tokens", "realtime_cost", "batch_cost", "error", "file")


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
    if getattr(result, "output_estimate", None) is not None:  # compare --calibrate PILOT.jsonl
        from batchplan.reports import estimate

        doc["output_estimate"] = estimate.document(result)
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
    into a temporary file that replaces ``path`` only when complete.

    As a context manager it commits when the block ends and aborts (leaving
    ``path`` as it was) when the block raises."""

    def __init__(self, path: str):
        self.path = path
        self.format = per_request_format(path)
        self._tmp = None
        if path == STDOUT:
            # Standard output: rows as they come (JSON lines), nothing to rename.
            import jsonlines

            self._handle = sys.stdout
            self._jsonl = jsonlines.Writer(self._handle, compact=True, flush=False)
            return
        folder = os.path.dirname(os.path.abspath(path))
        self._tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
        try:
            self._handle = open(self._tmp, "w", encoding="utf-8", newline="")
        except OSError as exc:  # name the user's path, not our temporary one
            raise InputError(f"{path}: {exc.strerror or exc}") from None
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
        if self._tmp is None:
            self._handle.flush()
            return
        self._handle.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._tmp is None:
            return
        self._handle.close()
        try:
            os.unlink(self._tmp)
        except OSError:
            pass

    def __enter__(self) -> PerRequestWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            try:
                self.commit()
            except OSError as exc:
                raise InputError(f"{self.path}: {exc.strerror or exc}") from None
        else:
            self.abort()


def per_request_format(path: str) -> str:
    if path == STDOUT:
        return "jsonl"
    lower = path.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    raise ValueError(f"{path}: per-request rows are written as .jsonl or .csv, by the file's extension")


