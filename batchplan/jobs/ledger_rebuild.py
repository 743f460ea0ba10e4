"""Rebuilding a damaged or lost ledger from what the service still knows.

The ledger is local; the batches are on the service for 30 days, and each
batch batchplan created carries its submission in its metadata
(``provenance``). ``rebuild``:

1. checks the ledger file; a damaged one is moved aside, beside it, under a
   new name (``ledger.sqlite3.damaged-20261203T101500Z``), never deleted or
   overwritten, with its journal files;
2. lists the account's batches created in the last ``days`` (30), newest
   first, page by page;
3. writes back an entry for each batch batchplan created that the ledger
   does not have (a healthy ledger only gains the ones it lacks, and an
   entry it holds as interrupted whose batch exists becomes created);
4. reports what it could not restore: batchplan's batches whose metadata is
   incomplete, and how many batches batchplan did not make.

What no rebuild can bring back: submissions interrupted before their batch
was created (the service never had them), batches older than the service
keeps, and batches of another region or account (run it once per base URL).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from batchplan.jobs import provenance as meta
from batchplan.jobs.ledger import CREATED, Entry, Ledger, is_damaged

DAYS = 30  # the service keeps batches this long [BATCH]
PAGE = 100  # the largest page the list call takes
MAX_PAGES = 1000  # a bound on the walk, far past 30 days of any account's batches
SIDE_FILES = ("-journal", "-wal", "-shm")


@dataclass(frozen=True)
class NotRestored:
    batch_id: str
    reason: str


@dataclass
class Rebuilt:
    path: Path  # the ledger
    base_url: str
    days: int
    damaged: str | None = None  # why the old file was moved aside
    moved_to: Path | None = None
    restored: list[Entry] = field(default_factory=list)
    completed: list[Entry] = field(default_factory=list)  # interrupted in the ledger, created on the service
    already: list[str] = field(default_factory=list)  # batch ids the ledger had
    not_restored: list[NotRestored] = field(default_factory=list)  # batchplan's, but unreadable
    others: list[str] = field(default_factory=list)  # batch ids batchplan did not create
    job_parts: list[str] = field(default_factory=list)  # parts of a `batchplan run`: their job folder's ledger has them
    listed: int = 0
    complete: bool = True  # False: stopped at MAX_PAGES before reaching the cut-off

    @property
    def ok(self) -> bool:
        return not self.not_restored and self.complete


def damage(path: Path) -> str | None:
    """Why the ledger file at ``path`` cannot be used, or None when it can
    (or does not exist). Opens it read-only: the check changes nothing."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return str(exc) if is_damaged(exc) else None
    try:
        found = conn.execute("PRAGMA quick_check").fetchall()
        if found != [("ok",)]:
            return "; ".join(str(row[0]) for row in found[:3])
        return None
    except sqlite3.Error as exc:
        return str(exc) if is_damaged(exc) else None
    finally:
        conn.close()


def set_aside(path: Path, now: float) -> Path:
    """Move the ledger (and its journal files) to a name beside it that no
    file has; the new name."""
    stamp = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while any(Path(str(target) + side).exists() for side in ("",) + SIDE_FILES):
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
        n += 1
    os.rename(path, target)
    for side in SIDE_FILES:
        extra = Path(str(path) + side)
        if extra.exists():
            os.rename(extra, Path(str(target) + side))
    return target


class RecentBatches:
    """The account's batches created at or after ``since`` (Unix seconds),
    newest first, as an iterable. It stops at the first older one (the list
    is newest first); ``complete`` turns False when it stopped at MAX_PAGES
    before reaching that cut-off."""

    def __init__(self, client, since: float):
        self.client = client
        self.since = since
        self.complete = True

    def __iter__(self) -> Iterator[dict[str, Any]]:
        after = None
        for _ in range(MAX_PAGES):
            page = self.client.list(limit=PAGE, after=after)
            data = page["data"]
            for batch in data:
                created = batch.get("created_at")
                if created is not None and created < self.since:
                    return
                yield batch
            if not page.get("has_more") or not data:
                return
            after = page.get("last_id") or data[-1].get("id")
        self.complete = False


def entry_from_batch(batch: Mapping[str, Any], base_url: str, now: float) -> Entry | str:
    """The ledger entry batchplan wrote for ``batch``, rebuilt from its
    metadata; a reason instead when the metadata cannot give one."""
    m = batch.get("metadata") or {}
    missing = [k for k in (meta.TOKEN, meta.SHA256, meta.PATH, meta.REGION) if not isinstance(m.get(k), str) or not m.get(k)]
    if missing:
        return f"its metadata lacks {', '.join(missing)}"
    if not batch.get("id") or not batch.get("endpoint") or not batch.get("completion_window"):
        return "the service's answer lacks its id, endpoint or completion_window"
    estimate = None
    if m.get(meta.ESTIMATE):
        try:
            estimate = json.loads(m[meta.ESTIMATE])
        except ValueError:
            return f"its {meta.ESTIMATE} is not JSON"
    try:
        started = float(m.get(meta.STARTED) or batch.get("created_at") or now)
    except ValueError:
        return f"its {meta.STARTED} is not a time"
    return Entry(
        token=m[meta.TOKEN], state=CREATED, sha256=m[meta.SHA256], path=m[meta.PATH], region=m[meta.REGION],
        base_url=base_url, endpoint=batch["endpoint"], window=batch["completion_window"],
        metadata=meta.user_metadata(m), estimate=estimate, test=m.get(meta.TEST) == "1",
        input_file_id=batch.get("input_file_id"), batch_id=batch["id"], status=batch.get("status"),
        error=None, pid=None, host=None, started=started, updated=now,
    )


def rebuild(ledger: Ledger, client, *, days: int = DAYS, now: float | None = None) -> Rebuilt:
    """Rebuild ``ledger`` from the batches ``client`` lists (see the module)."""
    now = time.time() if now is None else now
    result = Rebuilt(ledger.path, client.base_url, days)
    result.damaged = damage(ledger.path)
    if result.damaged is not None:
        ledger.close()
        result.moved_to = set_aside(ledger.path, now)
    listing = RecentBatches(client, now - days * 86400)
    for batch in listing:
        result.listed += 1
        if not meta.is_batchplans(batch):
            result.others.append(batch.get("id") or "?")
            continue
        if (batch.get("metadata") or {}).get(meta.JOB):
            # A run records its parts in DIR/ledger.sqlite3 and DIR/job.sqlite3, not here;
            # adding them would make the user's own submissions look repeated.
            result.job_parts.append(batch.get("id") or "?")
            continue
        made = entry_from_batch(batch, client.base_url, now)
        if isinstance(made, str):
            result.not_restored.append(NotRestored(batch.get("id") or "?", made))
        else:
            done = ledger.restore(made)
            if done is None:
                result.already.append(made.batch_id or "?")
            else:
                (result.restored if done == "added" else result.completed).append(made)
    result.complete = listing.complete
    return result
