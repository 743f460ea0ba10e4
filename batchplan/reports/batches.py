"""Batches and submissions for people: the text submit, status, list, wait
and download print. Data in, lines out; nothing here reads or writes."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any

from batchplan.catalog.money import money
from batchplan.jobs.ledger import iso
from batchplan.planning.reading import SHOW_LINES, at_line
from batchplan.reports.documents import warnings
from batchplan.reports.text import warning_lines

SHOW_VIOLATIONS = SHOW_LINES
SHOW_ERRORS = 50


# -- submit -------------------------------------------------------------------------

def plan_warning_lines(check) -> list[str]:
    """The plan's warnings for a checked file (jobs.rules.FileCheck), less
    those its violations already say: invalid lines, mixed models or
    thinking modes."""
    shown_as_violations = tuple(f"warning: {w['message']}" for w in warnings(check.plan)
                                if w["kind"] in ("mixed_models", "mixed_thinking"))
    return [line for line in warning_lines(check.plan, invalid=False)
            if not line.startswith(shown_as_violations)]


def violation_total(check) -> int:
    return sum(check.violation_counts.values()) or len(check.violations)


def violation_lines(check, name: str) -> list[str]:
    """The first violations as ``name:line: rule: message``, then how many more."""
    out = []
    for v in check.violations[:SHOW_VIOLATIONS]:
        reason = f"{v.rule}: {v.message}"
        out.append(at_line(name, v.line, reason) if v.line is not None else f"{name}: {reason}")
    total = violation_total(check)
    if total > SHOW_VIOLATIONS:
        out.append(f"... and {total - SHOW_VIOLATIONS:,} more (batchplan validate lists them)")
    return out


def submission_text(requests: int, base_url: str, endpoint: str, window: str) -> str:
    return f"{requests:,} requests to {base_url} ({endpoint}, window {window})"


def dry_run_lines(resume, upload_path: str, size: int, digest: str, what: str, cost_text: str) -> list[str]:
    out = []
    if resume is not None:
        out.append(f"dry run: would resume the interrupted submission of {resume.when} "
                   f"({resume.state}{', input file ' + resume.input_file_id if resume.input_file_id else ''})")
    out.append(f"dry run: would upload {upload_path} ({size:,} bytes, sha256 {digest}) and "
               f"submit {what}; worst-case batch cost {cost_text}; nothing was sent")
    return out


def submitted_lines(done, cost_text: str, ledger_path) -> list[str]:
    """What a finished submission (jobs.submit.Submitted) made, found or recovered."""
    batch = done.batch
    if done.how == "recovered":
        head = (f"recovered: {batch['id']} ({batch.get('status')}), created by the interrupted submission "
                f"of {done.entry.when}; no new batch was created")
    elif done.how == "found":
        head = (f"submitted: {batch['id']} ({batch.get('status')}); the answer to the create was lost, "
                "and the batch was found on the service")
    else:
        head = f"submitted: {batch['id']} ({batch.get('status')})"
    return [
        head,
        f"  input file: {done.entry.input_file_id}; endpoint {done.entry.endpoint}; window {done.entry.window}",
        f"  worst-case batch cost: {cost_text}; ledger: {ledger_path}",
        f"next: batchplan wait {batch['id']}",
    ]


# -- status / wait / download -------------------------------------------------------

def _ts(value) -> str:
    return iso(value) if value else "-"


def describe(batch, entry=None) -> list[str]:
    """A batch for people: status, counts, times, files, and validation errors by line."""
    counts = batch.get("request_counts") or {}
    out = [f"{batch.get('id')}: {batch.get('status')}"]
    out.append(f"  endpoint {batch.get('endpoint')}, window {batch.get('completion_window')}")
    out.append(f"  requests: {counts.get('total', 0):,} total, {counts.get('completed', 0):,} completed, "
               f"{counts.get('failed', 0):,} failed")
    times = [(label, batch.get(key)) for label, key in (
        ("created", "created_at"), ("in progress", "in_progress_at"), ("finalizing", "finalizing_at"),
        ("completed", "completed_at"), ("failed", "failed_at"), ("expired", "expired_at"),
        ("cancelling", "cancelling_at"), ("cancelled", "cancelled_at"), ("expires", "expires_at"))]
    out.append("  " + "; ".join(f"{label} {_ts(value)}" for label, value in times if value))
    out.append(f"  input file: {batch.get('input_file_id')}")
    if batch.get("output_file_id"):
        out.append(f"  output file: {batch['output_file_id']}")
    if batch.get("error_file_id"):
        out.append(f"  error file: {batch['error_file_id']}")
    meta = batch.get("metadata") or {}
    if meta.get("ds_name"):
        out.append(f"  name: {meta['ds_name']}")
    if meta.get("ds_description"):
        out.append(f"  description: {meta['ds_description']}")
    if entry is not None:
        est = entry.estimate or {}
        out.append(f"  submitted from {entry.path} at {entry.when}{' (--test)' if entry.test else ''}; "
                   f"estimated batch cost {estimate_cost(est)}{' (worst case)' if est.get('upper_bound') else ''}")
    out.extend(error_lines(batch))
    return out


def error_lines(batch) -> list[str]:
    """The service's validation errors (errors.data), one per line: ``line N: code: message``."""
    errors = (batch.get("errors") or {}).get("data") or []
    out = []
    for err in errors[:SHOW_ERRORS]:
        where = f"line {err['line']}" if err.get("line") is not None else "file"
        out.append(f"  {where}: {err.get('code')}: {err.get('message')}")
    if len(errors) > SHOW_ERRORS:
        out.append(f"  ... and {len(errors) - SHOW_ERRORS:,} more (batchplan status --json lists them)")
    if out:
        out.insert(0, "errors:")
    return out


# -- list ---------------------------------------------------------------------------

def estimate_cost(estimate) -> str:
    """A ledger estimate's batch cost for display."""
    if not estimate:
        return "-"
    cost = estimate.get("batch_cost")
    return f"{money(Decimal(cost))} {estimate.get('currency', '')}".strip() if cost is not None else "unknown"


def entry_doc(entry) -> dict[str, Any]:
    """A ledger entry as JSON, without the process that wrote it."""
    doc = asdict(entry)
    doc["started"] = iso(entry.started)
    doc["updated"] = iso(entry.updated)
    doc.pop("pid", None)
    doc.pop("host", None)
    return doc


def ledger_table(entries) -> str:
    from tabulate import tabulate

    rows = [[e.when, e.state, e.batch_id or "-", e.status or "-", e.path, e.region,
             estimate_cost(e.estimate)] for e in entries]
    if not rows:
        return "the ledger is empty"
    return tabulate(rows, ["submitted", "state", "batch", "last status", "file", "region", "batch cost (est.)"],
                    tablefmt="simple", disable_numparse=True)


def batches_table(page, known) -> list[str]:
    """A page of the service's batches, with the file each was submitted
    from when the ledger knows it (``known``: batch id -> entry or None)."""
    from tabulate import tabulate

    rows = []
    for b in page["data"]:
        counts = b.get("request_counts") or {}
        entry = known.get(b["id"])
        rows.append([b["id"], b.get("status"), _ts(b.get("created_at")),
                     f"{counts.get('completed', 0):,}/{counts.get('total', 0):,}", f"{counts.get('failed', 0):,}",
                     (b.get("metadata") or {}).get("ds_name") or "", entry.path if entry else ""])
    if not rows:
        return ["no batches"]
    out = [tabulate(rows, ["batch", "status", "created", "done/total", "failed", "name", "file"],
                    tablefmt="simple", disable_numparse=True)]
    if page.get("has_more"):
        out.append(f"more: batchplan list --after {page.get('last_id') or page['data'][-1]['id']}")
    return out
