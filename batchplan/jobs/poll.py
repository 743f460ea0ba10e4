"""Follow a batch until it ends: poll with backoff, yield what changed.

The pace starts at ``interval`` and grows 1.5x while nothing changes, up to
``max_interval``; any progress (a new status or more requests done) brings
it back to ``interval``. The service advises polling no more than about once
a minute for long jobs [BATCH]; callers choose the interval.

A generator, so the caller draws its own display (tqdm, a log line, nothing)
and decides when to stop; ``sleep`` and ``clock`` are seams for tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from batchplan.errors import BatchplanError
from batchplan.jobs.client import TERMINAL_STATUSES

BACKOFF = 1.5


class StillRunning(BatchplanError):
    """The wait ran out before the batch ended; the batch keeps running."""

    exit_code = 3

    def __init__(self, message: str, batch: dict[str, Any]):
        super().__init__(message)
        self.batch = batch


@dataclass(frozen=True)
class Progress:
    """One poll's answer: the batch as the service sent it, and what it means."""

    batch: dict[str, Any]
    status: str | None
    done: int  # requests completed or failed
    total: int  # requests in the batch (0 until the service knows)
    changed: bool  # the status or the done count moved since the last poll
    status_changed: bool

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATUSES


def progress_of(batch: dict[str, Any], before: Progress | None) -> Progress:
    """What one retrieved batch says, against the poll before it."""
    status = batch.get("status")
    counts = batch.get("request_counts") or {}
    done = (counts.get("completed") or 0) + (counts.get("failed") or 0)
    total = counts.get("total") or 0
    changed = before is None or (status, done) != (before.status, before.done)
    return Progress(batch, status, done, total, changed, before is None or status != before.status)


def poll(retrieve: Callable[[str], dict[str, Any]], batch_id: str, *, interval: float = 5.0,
         max_interval: float = 60.0, timeout: float | None = None,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> Iterator[Progress]:
    """Yield each poll of ``batch_id`` until it ends (the last one yielded is
    the ended batch). Raises StillRunning when ``timeout`` seconds would pass
    before the next poll."""
    start = clock()
    delay = interval
    last: Progress | None = None
    while True:
        now = progress_of(retrieve(batch_id), last)
        if now.changed:
            delay = interval  # progress: poll at the first pace again
        elif last is not None:
            delay = min(max_interval, delay * BACKOFF)
        last = now
        yield now
        if now.ended:
            return
        if timeout is not None and clock() - start + delay > timeout:
            raise StillRunning(f"{batch_id} is still {now.status} ({now.done:,}/{now.total:,} requests done) "
                               f"after {timeout:g}s; it keeps running", now.batch)
        sleep(delay)
