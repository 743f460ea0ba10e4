"""``batchplan ledger rebuild`` as text and as a JSON document."""

from __future__ import annotations

from typing import Any

from batchplan.jobs.ledger import iso
from batchplan.reports.batches import estimate_cost

REBUILD_SCHEMA = "batchplan.ledger-rebuild/1"
SHOW = 20


def rebuild_lines(result) -> list[str]:
    """What a rebuild did, for a person (``jobs.ledger_rebuild.Rebuilt``)."""
    out = []
    if result.moved_to is not None:
        out.append(f"{result.path}: damaged ({result.damaged}); moved aside to {result.moved_to} (kept, not deleted)")
    out.append(f"listed {result.listed:,} batch(es) of the last {result.days} days at {result.base_url}")
    for e in result.restored[:SHOW]:
        out.append(f"restored {e.batch_id}: {e.path} ({e.region}, submitted {iso(e.started)}, "
                   f"estimated batch cost {estimate_cost(e.estimate or {})}, last status {e.status})")
    if len(result.restored) > SHOW:
        out.append(f"... and {len(result.restored) - SHOW:,} more restored")
    for e in result.completed[:SHOW]:
        out.append(f"completed {e.batch_id}: the ledger had {e.path} as interrupted; its batch exists")
    if result.already:
        out.append(f"{len(result.already):,} batch(es) were in the ledger already")
    for miss in result.not_restored[:SHOW]:
        out.append(f"not restored {miss.batch_id}: {miss.reason}")
    if len(result.not_restored) > SHOW:
        out.append(f"... and {len(result.not_restored) - SHOW:,} more not restored")
    if result.others:
        out.append(f"not restored: {len(result.others):,} batch(es) without batchplan's metadata "
                   "(created by another tool, or by a batchplan older than this record)")
    if result.job_parts:
        out.append(f"left to their job folders: {len(result.job_parts):,} part(s) of `batchplan run` jobs "
                   "(each job's folder keeps its own ledger)")
    if not result.complete:
        out.append("the listing stopped before reaching the cut-off; run it again with fewer days")
    out.append(f"restored {len(result.restored):,} entr{'y' if len(result.restored) == 1 else 'ies'} into {result.path}. "
               "Submissions interrupted before their batch was created, and batches older than the service keeps, "
               "cannot be restored" + (f"; the old file at {result.moved_to} still holds them." if result.moved_to else "."))
    return out


def rebuild_document(result) -> dict[str, Any]:
    return {
        "schema": REBUILD_SCHEMA,
        "ledger": str(result.path),
        "base_url": result.base_url,
        "days": result.days,
        "damaged": result.damaged,
        "moved_to": None if result.moved_to is None else str(result.moved_to),
        "listed": result.listed,
        "restored": [{"batch_id": e.batch_id, "token": e.token, "path": e.path, "region": e.region,
                      "status": e.status, "submitted": iso(e.started)} for e in result.restored],
        "completed": [{"batch_id": e.batch_id, "token": e.token, "path": e.path} for e in result.completed],
        "already_in_ledger": result.already,
        "not_restored": [{"batch_id": m.batch_id, "reason": m.reason} for m in result.not_restored],
        "not_batchplans": result.others,
        "job_parts": result.job_parts,
        "complete": result.complete,
    }
