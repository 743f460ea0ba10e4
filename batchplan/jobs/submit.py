"""Creating a batch at most once, and a submission recorded step by step.

Creating a batch is the one call that must not be repeated blindly: the SDK
retries a dropped connection, and a create whose answer was lost has often
been done already (tests/jobs/test_dashscope_server.py proves the duplicate).
``create_batch`` therefore sends the create without SDK retries and, when the
answer is lost, looks for a batch on the uploaded file before it tries again.
``submit`` ties that to the ledger, so a crash at any step is recovered by
running the same submit again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from batchplan.jobs.client import BatchAPIError, BatchClient, retry_delay
from batchplan.jobs.provenance import with_provenance

# -- the idempotent create ---------------------------------------------------------

@dataclass
class Created:
    batch: dict[str, Any]
    found: bool  # True: the create's answer was lost and the batch was found by lookup


class LookupFailed(BatchAPIError):
    """A create's answer was lost and the lookup failed too: the batch may exist."""


def create_batch(client: BatchClient, input_file_id: str, endpoint: str, window: str,
                 metadata: Mapping[str, str] | None = None, *, since: float | None = None,
                 attempts: int | None = None, sleep: Callable[[float], None] = time.sleep) -> Created:
    """Create a batch at most once for ``input_file_id``.

    Every input file is uploaded for one submission, so a batch on it is this
    submission's batch. After an answer is lost (or a 5xx, which a gateway
    sends when the answer was lost behind it), look for that batch before
    trying again. A 429 is retried after the wait the service asks for.
    """
    attempts = client.max_retries + 1 if attempts is None else max(1, attempts)
    last: BatchAPIError | None = None
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            sleep(retry_delay(attempt - 1, last.retry_after if last else None))
        try:
            return Created(client.create(input_file_id, endpoint, window, metadata), found=False)
        except BatchAPIError as exc:
            last = exc
            if exc.definite:
                raise
            if exc.lost or (exc.status or 0) >= 500:
                try:
                    hits = client.find_batches_for_file(input_file_id, since)
                except BatchAPIError as lookup:
                    raise LookupFailed(
                        f"{exc.message}; looking for the batch failed too ({lookup.message}), so it may exist",
                        status=lookup.status, lost=True) from None
                if hits:
                    return Created(_newest(hits), found=True)
    assert last is not None
    raise last


def _newest(batches: list[dict[str, Any]]) -> dict[str, Any]:
    return max(batches, key=lambda b: b.get("created_at") or 0)


# -- a submission, recorded ---------------------------------------------------------

@dataclass
class Submitted:
    entry: Any  # ledger.Entry, after the create was recorded
    batch: dict[str, Any]
    how: str  # "created" | "found" (answer lost, found by lookup) | "recovered" (an earlier run's batch)


def submit(client: BatchClient, ledger, entry, upload_path: str, *,
           notify: Callable[[str], None] = lambda message: None,
           sleep: Callable[[float], None] = time.sleep, create: bool = True) -> Submitted | None:
    """Upload and create for a ledger entry, recording each step.

    ``entry`` is a fresh intent, or an interrupted one being resumed. When it
    already has an input file, an earlier run may have created the batch:
    look for it first, and create only when it does not exist. Nothing here
    leaves the ledger claiming less than the service has done; an error
    leaves the entry pending for the next run to recover.

    With ``create=False`` an interrupted entry is only looked up: when its
    batch does not exist, the entry is closed as failed and None returned.
    """
    since = entry.started
    file_id = entry.input_file_id
    reused = bool(file_id)
    if reused:
        hits = client.find_batches_for_file(file_id, since)
        if hits:
            batch = _newest(hits)
            entry = ledger.mark_created(entry.token, batch["id"], batch.get("status"))
            return Submitted(entry, batch, "recovered")
    if not create:
        ledger.mark_failed(entry.token, "interrupted before a batch was created; not resumed")
        return None
    if reused:
        notify(f"reusing input file {file_id} from the interrupted submission")
    else:
        entry, file_id = _upload(client, ledger, entry, upload_path, notify)
    try:
        made = _create(client, ledger, entry, file_id, since, sleep)
    except BatchAPIError as exc:
        # A definite refusal of a reused file id: the earlier upload may be
        # gone from the service (accounts hold a limited number of files).
        if not (reused and exc.definite and exc.status in (400, 404) and exc.param in (None, "input_file_id")):
            raise
        notify(f"the service does not take {file_id} any more ({exc.message}); uploading again")
        entry, file_id = _upload(client, ledger, entry, upload_path, notify)
        made = _create(client, ledger, entry, file_id, since, sleep)
    entry = ledger.mark_created(entry.token, made.batch["id"], made.batch.get("status"))
    return Submitted(entry, made.batch, "found" if made.found else "created")


def _upload(client: BatchClient, ledger, entry, upload_path: str, notify):
    file_id = client.upload(upload_path)
    entry = ledger.mark_uploaded(entry.token, file_id)
    notify(f"uploaded {upload_path} as {file_id}")
    return entry, file_id


def _create(client: BatchClient, ledger, entry, file_id: str, since, sleep) -> Created:
    try:
        # The metadata carries the submission, so a lost ledger can be rebuilt (jobs.provenance).
        return create_batch(client, file_id, entry.endpoint, entry.window, with_provenance(entry), since=since, sleep=sleep)
    except BatchAPIError as exc:
        if exc.definite:
            # Refused outright: nothing was created, so nothing is pending.
            ledger.mark_failed(entry.token, exc.message)
        raise  # otherwise pending: the next submit of this content recovers it
