"""``run_job``: a job of any size, from its files to merged results, inside a
budget, surviving a kill at any moment.

The steps, each recorded in the job store (``jobs.job_store``, DIR/job.sqlite3)
before the next one starts:

1. **Plan and guard.** Every file is planned at the worst case
   (``planning.paths.plan_paths``); bad lines are reported ``PATH:LINE:
   reason`` and left out. ``jobs.guard.check_budget`` refuses a job whose
   worst-case batch cost is over the budget before anything is sent.
2. **Split.** ``jobs.split.split_file`` cuts each file into parts under
   DIR/parts/ (one model and thinking mode, line and byte limits, lines byte
   for byte). Which request is in which part is recorded by custom_id.
3. **Submit.** At most ``parallel`` parts unfinished at once. Before a part
   is created its worst-case cost is *reserved*; a part whose reservation
   would take the committed total (actual cost of ended parts, reservations
   of the others) over the budget is not created. Each create goes through
   the job's own ledger (``jobs.ledger`` in DIR) and ``jobs.submit.submit``:
   the intent is written before the upload, a lost create answer is looked
   up on the service before any retry, and a resumed run finds the batch an
   earlier run made instead of making another.
4. **Follow.** Each unfinished part is polled at its own pace (from
   ``poll_interval``, 1.5x while nothing changes, ``jobs.poll``'s rule).
5. **Collect.** An ended part's output and error files are downloaded whole
   (``jobs.download``), each line classified (``jobs.results``), each failure
   sorted by ``jobs.failures`` (retry, final, account), and the successes
   written as a sorted run (``jobs.merge``). One transaction then records the
   part's outcome and its actual cost from usage. Its files on the service
   are deleted afterwards unless ``keep_remote``.
6. **Retry.** Retryable failures, and requests an expired or cancelled part
   left undone, go into new parts (``jobs.reconcile.write_retry_file`` copies
   their original lines), up to ``retries`` times.
7. **Merge.** DIR/output.jsonl (successes, in input order) and
   DIR/errors.jsonl (failures) are rewritten at the end of every run,
   atomically; DIR/report.json holds estimated against actual cost.

Test seam: ``$BATCHPLAN_TEST_KILL_AT`` = ``STEP`` or ``STEP:N`` makes the
process SIGKILL itself the Nth time (default the first) it reaches STEP:
``after_reserve``, ``after_upload_intent``, ``after_create``,
``after_download``, ``after_collect``, ``during_merge``; with
``$BATCHPLAN_TEST_KILL_AT_SIGNAL=INT`` it sends SIGINT instead (a Ctrl-C). Tests
use it to stop a run at exact points; nothing else reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import orjson

from batchplan.catalog.catalog import DEFAULT_REGION, Catalog, default_catalog
from batchplan.catalog.money import exact, money
from batchplan.errors import APIError, GuardError, InputError, LedgerError
from batchplan.jobs import job_store as js
from batchplan.jobs import provenance
from batchplan.jobs.client import TERMINAL_STATUSES, BatchAPIError, BatchClient, retry_delay
from batchplan.jobs.download import download_atomic
from batchplan.jobs.failures import ACCOUNT, RETRY, classify_failure
from batchplan.jobs.guard import check_budget
from batchplan.jobs.ledger import CREATED, FAILED, Ledger, sha256_file
from batchplan.jobs.merge import line_offsets, merge_runs, write_lines, write_run
from batchplan.jobs.poll import BACKOFF, progress_of
from batchplan.jobs.reconcile import Reconciler, Reconciliation, document, write_retry_file
from batchplan.jobs.results import ERRORS, OUTPUT, classify
from batchplan.jobs.rules import MAX_NAME_CHARS, parse_window
from batchplan.jobs.split import split_file
from batchplan.planning.aggregate import PlannedRequest
from batchplan.planning.output import OutputAssumption
from batchplan.planning.reading import STDIN, at_line, save_stdin

SCHEMA = "batchplan.job/1"
KILL_ENV = "BATCHPLAN_TEST_KILL_AT"  # and BATCHPLAN_TEST_KILL_AT_SIGNAL
# The account holds at most 1,000 unfinished batch tasks, shared with every
# other tool and person on it [BATCH]. Ten parts of up to 50,000 requests keep
# half a million requests in flight, leave 990 slots to the rest, and keep the
# budget's reservations fine-grained (each holds a part's worst case).
DEFAULT_PARALLEL = 10
DEFAULT_RETRIES = 2
# The service advises polling no more often than once a minute [BATCH].
DEFAULT_POLL = 60.0
MAX_POLL_FACTOR = 10  # backoff stops at 10x the first interval
CREATE_ATTEMPTS = 8  # a part's create answered 429/5xx this often in a row stops the run
KEEP_MESSAGES = 200  # bad-line messages kept for the report (counts stay exact)
INSERT_CHUNK = 10_000

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNFINISHED = 0, 1, 2, 3

_ended = TERMINAL_STATUSES


class JobError(InputError):
    """A job that cannot start in DIR: another job's DIR, another run at work, bad options."""


# -- the test seam ---------------------------------------------------------------------

_seen_steps: dict[str, int] = {}


def checkpoint(step: str) -> None:
    """SIGKILL this process at ``step`` when ``$BATCHPLAN_TEST_KILL_AT`` names it (tests only)."""
    wanted = os.environ.get(KILL_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != step:
        return
    _seen_steps[step] = _seen_steps.get(step, 0) + 1
    if _seen_steps[step] == (int(nth) if nth else 1):
        sig = signal.SIGINT if os.environ.get(KILL_ENV + "_SIGNAL", "").upper() == "INT" else signal.SIGKILL
        os.kill(os.getpid(), sig)


# -- what the caller sees ----------------------------------------------------------------

@dataclass(frozen=True)
class Preview:
    """What the job will do, shown before anything is sent (the CLI asks with it)."""

    requests: int
    invalid: int
    worst_case: Decimal | None
    currency: str
    verdict: Any  # jobs.guard.BudgetVerdict: ``describe(name)`` words it with the caller's name for the budget

    @property
    def cost_text(self) -> str:
        return "unknown" if self.worst_case is None else f"{money(self.worst_case)} {self.currency}"


@dataclass
class Snapshot:
    """The job at one moment, for a live display."""

    total: int
    done: int  # requests ended (succeeded, failed for good, or in an ended part)
    succeeded: int
    failed: int
    parts: dict[str, int]  # part state (or batch status) -> count
    committed: Decimal | None
    actual: Decimal | None
    max_cost: Decimal | None
    currency: str


@dataclass
class JobReport:
    """What ``run_job`` returns: the document written to DIR/report.json, the
    exit code (0 all succeeded, 1 some failed for good, 3 unfinished) and why."""

    directory: str
    document: dict[str, Any]
    exit_code: int
    stopped: str | None  # why the run stopped unfinished, one line; None when the job ended
    reconciliation: Reconciliation | None = None

    @property
    def output_path(self) -> str:
        return os.path.join(self.directory, "output.jsonl")

    @property
    def errors_path(self) -> str:
        return os.path.join(self.directory, "errors.jsonl")


@dataclass
class _Options:
    max_lines: int | None
    max_bytes: int | None
    parallel: int
    retries: int
    window: str
    time_limit: float | None
    poll: float
    max_cost: Decimal | None
    name: str
    keep_remote: bool
    region: str


# -- the key --------------------------------------------------------------------------

def job_key(digests: Sequence[str], max_lines: int | None, max_bytes: int | None) -> str:
    """The job's identity: its input content, in order, and the options that
    shape its parts."""
    doc = {"files": list(digests), "max_lines": max_lines, "max_bytes": max_bytes}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# -- the run ----------------------------------------------------------------------------

def run_job(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    client: BatchClient | None = None,
    base_url: str | None = None,
    max_cost: Decimal | None = None,
    confirm: Callable[[Preview], bool] | None = None,
    parallel: int = DEFAULT_PARALLEL,
    max_lines: int | None = None,
    max_bytes: int | None = None,
    retries: int = DEFAULT_RETRIES,
    window: str = "24h",
    time_limit: float | None = None,
    poll_interval: float = DEFAULT_POLL,
    name: str | None = None,
    keep_remote: bool = False,
    region: str = DEFAULT_REGION,
    catalog: Catalog | None = None,
    workers: int | None = None,
    on_message: Callable[[str], None] | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> JobReport:
    """Run the job of ``paths`` in ``out_dir``, or resume the one there.

    ``client`` is a ``jobs.client.BatchClient``; without one, a client is
    made for ``base_url`` (else $DASHSCOPE_BASE_URL, else the region's URL)
    with the key in $DASHSCOPE_API_KEY. ``confirm`` is asked once,
    before a new job sends anything (None: go ahead). Returns the
    ``JobReport`` (also written to DIR/report.json). Raises ``GuardError``
    when the worst case is over ``max_cost`` or not confirmed, ``JobError``
    for a DIR that holds another job, ``InputError`` for unreadable input
    and ``APIError`` for a refusal by the service. Ctrl-C (KeyboardInterrupt)
    leaves everything recorded; the batches keep running.
    """
    window = parse_window(window)
    if parallel < 1:
        raise JobError("parallel must be at least 1", hint="parallel")
    if retries < 0:
        raise JobError("retries must be zero or more", hint="retries")
    options = _Options(max_lines, max_bytes, parallel, retries, window, time_limit, max(0.0, poll_interval),
                       max_cost, (name or "batchplan")[:MAX_NAME_CHARS - 12], keep_remote, region)
    own = client is None
    if own:
        from batchplan.jobs.client import resolve_connection

        conn = resolve_connection(region, base_url)
        client = BatchClient(conn.api_key, conn.base_url)
    try:
        job = _Job(list(map(os.fspath, paths)), Path(out_dir), client, options, catalog or default_catalog(),
                   workers, on_message or (lambda m: None), on_progress, sleep, clock)
        with job.locked():
            return job.run(confirm)
    finally:
        if own:
            client.close()


class _Job:
    def __init__(self, paths, directory: Path, client, options: _Options, catalog: Catalog, workers,
                 on_message, on_progress, sleep, clock):
        self.paths = paths
        self.dir = directory
        self.parts_dir = directory / "parts"
        self.client = client
        self.o = options
        self.catalog = catalog
        self.workers = workers
        self.say = on_message
        self.on_progress = on_progress
        self.sleep = sleep
        self.clock = clock
        self.currency = catalog.currency(options.region)
        self.pricer = Reconciler(catalog, options.region)
        self.store: js.JobStore | None = None
        self.ledger: Ledger | None = None
        self.stopped: str | None = None
        self.due: dict[int, float] = {}  # part id -> when to poll it next
        self.pace: dict[int, float] = {}
        self.create_tries: dict[int, int] = {}
        self.timings: dict[str, float] = {}  # seconds this run spent per step (wall time)

    # -- one run per DIR ------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self):
        if self.dir.exists() and not self.dir.is_dir():
            raise JobError(f"{self.dir}: exists and is not a folder")
        self.dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.dir / "job.lock", "a+")
        try:
            try:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except ImportError:  # no flock (Windows): one run per DIR is up to the user
                pass
            except OSError:
                raise JobError(f"{self.dir}: another batchplan run is working on this job; "
                               "let it finish, or stop it first") from None
            yield
        finally:
            handle.close()
            if self.store is not None:
                self.store.close()
            if self.ledger is not None:
                self.ledger.close()

    # -- the whole run ----------------------------------------------------------------
    def run(self, confirm) -> JobReport:
        self._t0 = time.perf_counter()
        saved = self._save_stdin()
        digests = self._check_inputs()
        key = job_key(digests, self.o.max_lines, self.o.max_bytes)
        self.store = store = js.JobStore(self.dir)
        known = store.get("key")
        if known is not None and known != key:
            if saved is not None:
                os.unlink(saved)  # not this job's input: leave the folder as it was
            raise JobError(f"{self.dir}: holds another job (other input files, content or part limits, "
                           f"started {store.get('started_at', '?')}); use another output folder, or the same "
                           "files and options to resume it")
        base_url = getattr(self.client, "base_url", None)
        if known is not None and store.get("base_url") not in (None, base_url):
            raise JobError(f"{self.dir}: this job runs on {store.get('base_url')}, not {base_url}; "
                           "resume it against the same service")
        self.ledger = Ledger(self.dir)
        if not store.get("prepared"):
            self._prepare(key, digests, base_url, confirm)
            self._mark("prepare")
        else:
            self.say(f"resuming the job in {self.dir}")
            if store.get("cancelled"):
                store.put("cancelled", False)
                self.say("the job was cancelled; running it again resumes its unfinished requests")
            self._give_exhausted_more_tries()
        self.started = self.clock()
        try:
            self._recover()
            self._loop()
        finally:
            self._progress()
        self._mark("follow")
        return self._finish()

    def _mark(self, step: str) -> None:
        now = time.perf_counter()
        self.timings[step] = round(now - getattr(self, "_last_mark", self._t0), 3)
        self._last_mark = now

    # -- inputs ----------------------------------------------------------------------
    def _save_stdin(self) -> str | None:
        """``-`` (standard input) becomes its copy in DIR/input/, named by its
        content: the parts are cut from it, and a resumed run piped the same
        bytes finds it again. Returns the copy when this run made it."""
        if STDIN not in self.paths:
            return None
        if self.paths.count(STDIN) > 1:
            raise JobError(f"{STDIN}: standard input named twice")
        folder = self.dir / "input"
        before = set(os.listdir(folder)) if folder.is_dir() else set()
        copy = save_stdin(folder)
        if os.path.getsize(copy) == 0:
            os.unlink(copy)  # nothing to keep: leave the folder as it was
            raise InputError(f"{STDIN}: standard input is empty: no requests to run")
        self.paths = [copy if p == STDIN else p for p in self.paths]
        self.say(f"standard input saved as {copy}")
        return None if os.path.basename(copy) in before else copy

    def _check_inputs(self) -> list[str]:
        if not self.paths:
            raise JobError("no input files")
        seen: dict[str, str] = {}
        digests = []
        for path in self.paths:
            real = os.path.realpath(path)
            if real in seen:
                raise JobError(f"{path}: named twice (also as {seen[real]})")
            seen[real] = path
            try:
                digests.append(sha256_file(path))
            except OSError as exc:
                raise InputError(f"{path}: {exc.strerror or exc}") from None
        return digests

    # -- 1 + 2: plan, guard, split --------------------------------------------------------
    def _prepare(self, key, digests, base_url, confirm) -> None:
        from batchplan.planning.paths import plan_paths
        from batchplan.planning.planner import Planner

        store = self.store
        with store.tx() as c:  # an earlier run killed while preparing: start over
            for table in ("files", "requests", "parts", "members"):
                c.execute(f"DELETE FROM {table}")
            c.execute("DELETE FROM meta")
            for idx, (path, digest) in enumerate(zip(self.paths, digests)):
                c.execute("INSERT INTO files (idx, path, sha256) VALUES (?, ?, ?)", (idx, path, digest))
            for k, v in {"key": key, "base_url": base_url, "region": self.o.region, "files": self.paths,
                         "started_at": _now_iso(), "currency": self.currency,
                         "max_lines": self.o.max_lines, "max_bytes": self.o.max_bytes}.items():
                c.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (k, json.dumps(v)))
        index = {path: i for i, path in enumerate(self.paths)}
        bad = _BadLines()
        rows: list[tuple] = []

        def add(r: PlannedRequest) -> None:
            if r.error is not None or not r.custom_id:
                bad.add(at_line(r.file, r.line, r.error or "no custom_id"))
                return
            rows.append((js.seq_of(index[r.file], r.line), r.custom_id, r.model, r.tier, int(r.thinking),
                         r.input_tokens, r.output_tokens, None if r.batch_cost is None else str(r.batch_cost)))
            if len(rows) >= INSERT_CHUNK:
                self._insert(rows, bad)

        planner = Planner(self.catalog, self.o.region, OutputAssumption())
        result = plan_paths(self.paths, planner, workers=self.workers, on_request=add)
        self._insert(rows, bad)
        total = store.count()
        for message in bad.kept[:20]:
            self.say(message)
        if bad.count > 20:
            self.say(f"... and {bad.count - 20:,} more bad line(s), left out")
        if total == 0:
            raise InputError(f"{', '.join(self.paths)}: no valid requests to run")

        verdict = check_budget(result, self.o.max_cost)
        worst = _sum_costs(store)
        preview = Preview(total, bad.count, worst, self.currency, verdict)
        if not verdict.ok:
            raise GuardError(verdict.describe("the budget"), hint="max_cost")
        if confirm is not None and not confirm(preview):
            raise GuardError("not confirmed; nothing was sent")

        self.parts_dir.mkdir(exist_ok=True)
        for idx, path in enumerate(self.paths):
            span = (js.seq_of(idx, 0), js.seq_of(idx + 1, 0) - 1)
            if not store.query("SELECT 1 FROM requests WHERE seq BETWEEN ? AND ? LIMIT 1", span):
                continue  # no valid request in this file: nothing to split
            source = path
            repeated = bad.repeated.get(idx)
            if repeated:
                # custom_ids used on an earlier line: split a copy without those lines.
                folder = self.parts_dir / f"f{idx + 1:03d}"
                folder.mkdir(exist_ok=True)
                source = str(folder / f"{Path(path).stem}.jsonl")
                write_retry_file(path, _AllBut(repeated), source)
            self._split(source, idx, 0, self.parts_dir / f"f{idx + 1:03d}", bad, originals=path)
        store.put("invalid", {"count": bad.count, "messages": bad.kept})
        store.put("planned", {"requests": total, "worst_case": exact(worst)})
        store.put("prepared", True)
        self.say(f"planned {total:,} requests in {len(store.parts())} part(s); worst-case batch cost "
                 f"{preview.cost_text}")

    def _insert(self, rows: list[tuple], bad: "_BadLines") -> None:
        if not rows:
            return
        sql = ("INSERT INTO requests (seq, custom_id, model, tier, thinking, est_input, est_output, est_cost, state) "
               f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{js.QUEUED}')")
        import sqlite3

        try:
            with self.store.tx() as c:
                c.executemany(sql, rows)
        except LedgerError:
            # A custom_id used twice: one by one, to name the repeats.
            for row in rows:
                try:
                    with self.store.tx() as c:
                        c.execute(sql, row)
                except LedgerError:
                    first = self.store.query("SELECT seq FROM requests WHERE custom_id=?", (row[1],))
                    if not first:
                        raise
                    fidx, fline = js.split_seq(first[0]["seq"])
                    idx, line = js.split_seq(row[0])
                    where = f"line {fline}" if fidx == idx else f"{self.paths[fidx]}:{fline}"
                    bad.add(at_line(self.paths[idx], line, f"custom_id {row[1]!r} is already used on {where}"))
                    bad.repeated.setdefault(idx, set()).add(line)
        except sqlite3.Error as exc:  # pragma: no cover - mapped by the store
            raise LedgerError(str(exc)) from None
        rows.clear()

    def _split(self, source: str, file_idx: int, round_no: int, folder: Path, bad: "_BadLines | None",
               originals: str) -> int:
        """Split ``source`` (lines of input file ``file_idx``) into parts of round
        ``round_no``, record them and their members; the parts made."""
        store = self.store
        # Repeated custom_ids are out already (the store's unique index found
        # them), so split need not keep an index of every custom_id.
        manifest = split_file(source, folder, max_lines=self.o.max_lines, max_bytes=self.o.max_bytes,
                              catalog=self.catalog, force=True, check_duplicates=False)
        made = 0
        with store.tx() as c:
            for pf in manifest.files:
                cur = c.execute(
                    "INSERT INTO parts (round, path, model, url, thinking, lines, bytes, sha256, state, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (round_no, pf.path, pf.model, pf.url, int(pf.thinking), pf.lines, pf.bytes, pf.sha256, js.SPLIT,
                     time.time()))
                part_id = cur.lastrowid
                ids = list(_custom_ids(pf.path))
                c.executemany("INSERT OR IGNORE INTO members (part, seq) SELECT ?, seq FROM requests WHERE custom_id=?",
                              ((part_id, cid) for cid in ids))
                c.execute(f"UPDATE requests SET part=?, state='{js.QUEUED}' "
                          "WHERE seq IN (SELECT seq FROM members WHERE part=?)", (part_id, part_id))
                js.set_part(c, part_id, {"reserve": _reservation(c, part_id)})
                made += 1
            if bad is not None:
                # Lines the plan took and split did not (larger than a part may be).
                # (A filtered copy numbers its lines anew: its reasons cannot be placed.)
                reasons = {r.line: r.reason for r in manifest.rejected} if source == originals else {}
                lo, hi = js.seq_of(file_idx, 0), js.seq_of(file_idx + 1, 0) - 1
                for row in c.execute("SELECT seq FROM requests WHERE seq BETWEEN ? AND ? AND part IS NULL",
                                     (lo, hi)).fetchall():
                    line = js.split_seq(row["seq"])[1]
                    bad.add(at_line(originals, line, reasons.get(line, "left out of every part")))
                c.execute("DELETE FROM requests WHERE seq BETWEEN ? AND ? AND part IS NULL", (lo, hi))
        return made

    # -- 3..6: the loop ---------------------------------------------------------------------
    def _recover(self) -> None:
        """Parts an earlier run left between steps."""
        store = self.store
        for part in store.parts([js.RESERVED]):
            # Reserved, no ledger intent recorded: nothing was sent.
            store.update_part(part.id, state=js.SPLIT)
        if not self.o.keep_remote:
            for part in store.parts([js.COLLECTED]):
                if not part.cleaned:  # collected, but killed (or refused) before its files were deleted
                    self._clean(part)
        for part in store.parts([js.SUBMITTING]):
            self._submit(part)
            if self.stopped:
                return

    def _loop(self) -> None:
        store = self.store
        while True:
            if store.get("cancelled"):
                self.stopped = self.stopped or "the job was cancelled (batchplan job cancel)"
            running = store.parts([js.SUBMITTING, js.RUNNING])
            if not self.stopped:
                self._start_parts(len(running))
                running = store.parts([js.SUBMITTING, js.RUNNING])
            if not running:
                if self.stopped or store.parts([js.SPLIT]):
                    return  # stopped, or nothing fits the budget (said by _start_parts)
                if not self._new_round():
                    return
                continue
            if self.o.time_limit is not None and self.clock() - self.started >= self.o.time_limit:
                self.stopped = self.stopped or f"the time limit ({self.o.time_limit:g}s) passed"
                return
            now = self.clock()
            ready = [p for p in running if self.due.get(p.id, 0) <= now]
            if not ready:
                wait = min(self.due[p.id] for p in running) - now
                if self.o.time_limit is not None:
                    wait = min(wait, self.o.time_limit - (now - self.started))
                self.sleep(max(0.0, wait))
                continue
            for part in ready:
                if part.state == js.SUBMITTING:
                    self._submit(part)
                else:
                    self._poll(part)
            self._progress()

    def _start_parts(self, unfinished: int) -> None:
        store = self.store
        for part in store.parts([js.SPLIT]):
            if unfinished >= self.o.parallel or self.stopped:
                return
            if self.o.max_cost is not None:
                committed = store.committed()
                if part.reserve is None or committed is None or committed + part.reserve > self.o.max_cost:
                    if unfinished == 0:
                        committed_text = "unknown" if committed is None else f"{money(committed)} {self.currency}"
                        reserve_text = "unknown" if part.reserve is None else f"{money(part.reserve)} {self.currency}"
                        self.stopped = (f"{part.name} ({part.lines:,} requests, worst case {reserve_text}) would take "
                                        f"the committed cost {committed_text} over the budget {self.o.max_cost}; "
                                        "not created")
                    return  # wait: parts ending may free reservations
            store.update_part(part.id, state=js.RESERVED)
            checkpoint("after_reserve")
            self._submit(store.part(part.id))
            unfinished += 1

    def _submit(self, part: js.Part) -> None:
        """Create ``part``'s batch at most once, through the ledger."""
        from batchplan.jobs.submit import submit

        store, ledger = self.store, self.ledger
        if part.token is None:
            meta = {"ds_name": f"{self.o.name} part {part.id}", provenance.JOB: store.get("key"),
                    provenance.PART: str(part.id)}
            entry = ledger.begin(sha256=part.sha256, path=part.path, region=self.o.region,
                                 base_url=getattr(self.client, "base_url", ""), endpoint=part.url,
                                 window=self.o.window, metadata=meta,
                                 estimate={"batch_cost": exact(part.reserve), "requests": part.lines,
                                           "upper_bound": True, "currency": self.currency})
            part = store.update_part(part.id, state=js.SUBMITTING, token=entry.token)
            checkpoint("after_upload_intent")
        entry = ledger.get(part.token)
        if entry.state == CREATED:
            self._running(part, entry.batch_id, entry.status, entry.input_file_id)
            return
        if entry.state == FAILED:
            store.update_part(part.id, state=js.SPLIT, token=None)
            return
        try:
            done = submit(self.client, ledger, entry, part.path, notify=lambda m: None, sleep=self.sleep)
        except BatchAPIError as exc:
            self._create_failed(part, exc)
            return
        self.create_tries.pop(part.id, None)
        self._running(part, done.batch["id"], done.batch.get("status"), done.entry.input_file_id)
        how = {"found": " (its lost answer was found)", "recovered": " (made by an earlier run)"}.get(done.how, "")
        self.say(f"{part.name}: batch {done.batch['id']} created{how}, {part.lines:,} requests")
        checkpoint("after_create")

    def _running(self, part: js.Part, batch_id: str, status: str | None, file_id: str | None) -> None:
        self.store.update_part(part.id, state=js.RUNNING, batch_id=batch_id, status=status, input_file_id=file_id)
        self.due[part.id] = self.clock() + self.o.poll
        self.pace[part.id] = self.o.poll

    def _create_failed(self, part: js.Part, exc: BatchAPIError) -> None:
        store = self.store
        kind = classify_failure(exc.code, exc.message)
        if kind == ACCOUNT:
            self.stopped = f"the account cannot run batches: {exc.message}"
            if not self.ledger.get(part.token).pending:
                store.update_part(part.id, state=js.SPLIT, token=None)
            return
        if not self.ledger.get(part.token).pending:
            # Refused outright: nothing was created for it, and retrying would not help.
            store.update_part(part.id, state=js.SPLIT, token=None, error=exc.message)
            raise APIError(f"{part.name} ({part.path}): {exc.message}") from None
        tries = self.create_tries.get(part.id, 0) + 1
        self.create_tries[part.id] = tries
        if tries >= CREATE_ATTEMPTS:
            self.stopped = f"{part.name}: the service kept failing its create ({exc.message})"
            return
        self.due[part.id] = self.clock() + retry_delay(tries, exc.retry_after)
        self.say(f"{part.name}: create not confirmed ({exc.message}); trying again")

    def _poll(self, part: js.Part) -> None:
        try:
            batch = self.client.retrieve(part.batch_id)
        except BatchAPIError as exc:
            if exc.definite:
                raise
            self.due[part.id] = self.clock() + max(self.pace.get(part.id, self.o.poll), 1.0)
            return
        now = progress_of(batch, None)
        changed = (now.status, now.done) != (part.status, part.done)
        self.store.update_part(part.id, status=now.status, done=now.done, total=now.total or part.total)
        pace = self.o.poll if changed else min(self.o.poll * MAX_POLL_FACTOR, self.pace.get(part.id, self.o.poll) * BACKOFF)
        self.pace[part.id] = pace
        self.due[part.id] = self.clock() + pace
        if now.ended:
            self._collect(self.store.part(part.id), batch)

    # -- 5: collect ---------------------------------------------------------------------------
    def _collect(self, part: js.Part, batch: dict[str, Any]) -> None:
        store = self.store
        status = batch.get("status")
        base = self.parts_dir / f"p{part.id:04d}"
        files = []
        for kind, key in ((OUTPUT, "output_file_id"), (ERRORS, "error_file_id")):
            file_id = batch.get(key)
            path = Path(f"{base}.{kind}.jsonl")
            if file_id and not path.exists():
                download_atomic(self.client, file_id, str(path))
                checkpoint("after_download")
            files.append((kind, file_id, path if file_id else None))
        members = store.members(part.id)
        outcome: dict[int, tuple] = {}  # seq -> (state, code, message, prompt, completion, cost)
        picks: list[tuple[int, int, int]] = []
        account: str | None = None
        for kind, _, path in files:
            if path is None:
                continue
            with open(path, "rb") as handle:
                for number, (offset, length, raw) in enumerate(line_offsets(handle), 1):
                    try:
                        doc = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        continue  # not a result line; its request counts as missing
                    if not isinstance(doc, dict):
                        continue
                    result = classify(doc, number, kind)
                    seq = members.get(result.custom_id)
                    if seq is None or (seq in outcome and outcome[seq][0] == js.OK):
                        continue
                    if result.ok:
                        model = result.model or part.model
                        cost = None
                        if result.prompt_tokens is not None:
                            cost = self.pricer.actual_batch_cost(part.model or model, result.prompt_tokens,
                                                                 result.completion_tokens, part.thinking)
                        outcome[seq] = (js.OK, None, None, result.prompt_tokens, result.completion_tokens, cost)
                        picks.append((seq, offset, length))
                    else:
                        verdict = classify_failure(result.code, result.message)
                        if verdict == ACCOUNT:
                            account = account or f"{result.code}: {result.message}"
                            state = "account"
                        else:
                            state = js.RETRY if verdict == RETRY else js.FAILED
                        outcome[seq] = (state, result.code, result.message, None, None, None)
        if status == "failed" and not outcome:
            # Refused at validation: nothing ran, nothing was billed.
            errors = ((batch.get("errors") or {}).get("data") or [{}])
            first = errors[0] if errors else {}
            code, message = first.get("code") or "batch_failed", first.get("message") or "the batch failed validation"
            verdict = classify_failure(code, message)
            for seq in members.values():
                outcome[seq] = (js.RETRY if verdict == RETRY else js.FAILED, code, message, None, None, None)
        left = {"expired": "batch_expired", "cancelled": "batch_cancelled"}.get(status, "missing")
        for seq in members.values():
            if seq not in outcome:
                outcome[seq] = (js.RETRY, left, f"the part ended {status} before this request ran", None, None, None)
        run_path = f"{base}.run"
        if files[0][2] is not None:
            write_run(str(files[0][2]), picks, run_path)
        else:
            write_lines([], run_path)
        actual = Decimal(0)
        counts = {js.OK: 0, js.FAILED: 0, js.RETRY: 0, "account": 0}
        ok_rows, account_rows, failed_rows = [], [], []
        for seq, (state, code, message, prompt, completion, cost) in outcome.items():
            counts[state] += 1
            if state == js.OK:
                if actual is not None:
                    actual = None if cost is None else actual + cost
                ok_rows.append((prompt, completion, None if cost is None else str(cost), seq))
            elif state == "account":
                account_rows.append((code, message, seq))
            else:
                failed_rows.append((state, code, message, seq))
        with store.tx() as c:
            c.executemany(f"UPDATE requests SET state='{js.OK}', code=NULL, message=NULL, act_input=?, act_output=?, "
                          "act_cost=?, attempts=attempts+1 WHERE seq=?", ok_rows)
            # An account error is not the request's fault: it waits for the next run, no try spent.
            c.executemany(f"UPDATE requests SET state='{js.RETRY}', code=?, message=? WHERE seq=?", account_rows)
            c.executemany("UPDATE requests SET state=?, code=?, message=?, attempts=attempts+1 WHERE seq=?", failed_rows)
            js.set_part(c, part.id, {"state": js.COLLECTED, "status": status, "actual": actual,
                                     "output_file_id": batch.get("output_file_id"),
                                     "error_file_id": batch.get("error_file_id"),
                                     "succeeded": counts[js.OK], "failed": counts[js.FAILED],
                                     "retried": counts[js.RETRY] + counts["account"],
                                     "done": len(members), "total": len(members)})
        checkpoint("after_collect")
        self.due.pop(part.id, None)
        spent = "unknown" if actual is None else f"{money(actual)} {self.currency}"
        self.say(f"{part.name}: {status}; {counts[js.OK]:,} succeeded, {counts[js.FAILED]:,} failed, "
                 f"{counts[js.RETRY] + counts['account']:,} to retry; actual cost {spent}")
        if account:
            self.stopped = f"the account cannot run requests ({account}); fix it, then run the same command again"
        if not self.o.keep_remote:
            self._clean(store.part(part.id))

    def _clean(self, part: js.Part) -> None:
        """Delete a collected part's files on the service (they never expire)."""
        for file_id in (part.input_file_id, part.output_file_id, part.error_file_id):
            if not file_id:
                continue
            try:
                self.client.delete_file(file_id)
            except BatchAPIError as exc:
                if exc.status != 404:
                    self.say(f"{part.name}: could not delete {file_id} on the service ({exc.message}); it is kept")
                    return
        self.store.update_part(part.id, cleaned=1)

    # -- 6: retry rounds ------------------------------------------------------------------------
    def _new_round(self) -> bool:
        """Put retryable requests into new parts; False when none is left to try."""
        store = self.store
        with store.tx() as c:
            c.execute("UPDATE requests SET state=? WHERE state=? AND attempts > ?", (js.EXHAUSTED, js.RETRY, self.o.retries))
        if not store.count(js.RETRY):
            return False
        round_no = (store.query("SELECT MAX(round) AS r FROM parts")[0]["r"] or 0) + 1
        by_file: dict[int, set[int]] = {}
        for row in store.iter_requests("state=?", (js.RETRY,)):
            idx, line = js.split_seq(row["seq"])
            by_file.setdefault(idx, set()).add(line)
        made = 0
        for idx, lines in sorted(by_file.items()):
            folder = self.parts_dir / f"r{round_no:02d}-f{idx + 1:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            retry_path = str(folder / "retry.jsonl")
            write_retry_file(self.paths[idx], lines, retry_path)
            made += self._split(retry_path, idx, round_no, folder, None, originals=self.paths[idx])
        self.say(f"retry round {round_no}: {sum(map(len, by_file.values())):,} request(s) in {made} new part(s)")
        return made > 0

    def _give_exhausted_more_tries(self) -> None:
        with self.store.tx() as c:
            c.execute("UPDATE requests SET state=?, attempts=0 WHERE state=?", (js.RETRY, js.EXHAUSTED))

    # -- 7: merge, report ------------------------------------------------------------------------
    def _finish(self) -> JobReport:
        store = self.store
        with store.tx() as c:
            c.execute("UPDATE requests SET state=? WHERE state=? AND attempts > ?", (js.EXHAUSTED, js.RETRY, self.o.retries))
        runs = [str(self.parts_dir / f"p{p.id:04d}.run") for p in store.parts([js.COLLECTED])]
        checkpoint_every = _merge_checkpoint()
        written = merge_runs(runs, str(self.dir / "output.jsonl"), on_line=checkpoint_every)
        failed = write_lines(self._error_lines(), str(self.dir / "errors.jsonl"))
        self._mark("merge")
        counts = store.counts()
        unfinished = sum(counts.get(s, 0) for s in (js.QUEUED, js.RETRY, js.EXHAUSTED))
        if unfinished and not self.stopped:
            if counts.get(js.EXHAUSTED):
                self.stopped = (f"{counts[js.EXHAUSTED]:,} request(s) failed retryably {self.o.retries + 1} time(s) "
                                "(out of retries); they are in errors.jsonl")
            else:
                self.stopped = f"{unfinished:,} request(s) have not run"
        exit_code = EXIT_UNFINISHED if (self.stopped or unfinished) else (EXIT_FAILED if counts.get(js.FAILED) else EXIT_OK)
        rec = self._reconciliation()
        self._mark("report")
        doc = self._document(rec, written, failed, counts, exit_code)
        write_lines([(json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")], str(self.dir / "report.json"))
        return JobReport(str(self.dir), doc, exit_code, self.stopped, rec)

    def _error_lines(self) -> Iterator[bytes]:
        for row in self.store.iter_requests("state IN (?, ?)", (js.FAILED, js.EXHAUSTED)):
            idx, line = js.split_seq(row["seq"])
            yield orjson.dumps({
                "custom_id": row["custom_id"], "file": self.paths[idx], "line": line,
                "error": {"code": row["code"], "message": row["message"]},
                "attempts": row["attempts"], "retryable": row["state"] == js.EXHAUSTED,
            }) + b"\n"

    def _reconciliation(self) -> Reconciliation:
        """Estimated against actual, per model, as ``jobs.reconcile`` figures it,
        in chunks of requests so memory stays flat."""
        from batchplan.jobs.results import Result

        merged: dict = {}
        rec = None
        chunk: list = []

        def flush():
            nonlocal rec
            core = Reconciler(self.catalog, self.o.region, OutputAssumption())
            for row in chunk:
                idx, line = js.split_seq(row["seq"])
                cost = None if row["est_cost"] is None else Decimal(row["est_cost"])
                core.add_planned(PlannedRequest(line, row["custom_id"], row["model"], row["tier"], row["est_input"],
                                                row["est_output"], None, cost, None, bool(row["thinking"]), self.paths[idx]))
                if row["state"] == js.OK:
                    core.add_result(Result(line, row["custom_id"], True, row["act_input"], row["act_output"], row["model"]))
                elif row["state"] in (js.FAILED, js.EXHAUSTED):
                    core.add_result(Result(line, row["custom_id"], False, code=row["code"], message=row["message"]))
            rec = core.finish()
            for model, figures in rec.models.items():
                merged[model] = merged[model].merge(figures) if model in merged else figures
            chunk.clear()

        for row in self.store.iter_requests():
            chunk.append(row)
            if len(chunk) >= 50_000:
                flush()
        flush()
        rec.models = dict(sorted(merged.items()))
        rec.failures, rec.missing, rec.mismatches, rec.retry_lines = [], [], [], set()
        invalid = self.store.get("invalid", {"count": 0, "messages": []})
        rec.invalid_lines, rec.invalid = invalid["count"], invalid["messages"]
        rec.output_path = str(self.dir / "output.jsonl")
        rec.errors_path = str(self.dir / "errors.jsonl")
        return rec

    def _document(self, rec, written, failed, counts, exit_code) -> dict[str, Any]:
        store = self.store
        return {
            "schema": SCHEMA,
            "directory": str(self.dir),
            "key": store.get("key"),
            "files": [{"path": r["path"], "sha256": r["sha256"]} for r in store.files()],
            "base_url": store.get("base_url"),
            "region": self.o.region,
            "currency": self.currency,
            "requests": {
                "total": store.count(), "succeeded": counts.get(js.OK, 0), "failed": counts.get(js.FAILED, 0),
                "out_of_retries": counts.get(js.EXHAUSTED, 0),
                "not_run": counts.get(js.QUEUED, 0) + counts.get(js.RETRY, 0),
                "invalid_lines": rec.invalid_lines,
            },
            "output": {"path": str(self.dir / "output.jsonl"), "lines": written},
            "errors": {"path": str(self.dir / "errors.jsonl"), "lines": failed},
            "cost": {
                "max_cost": exact(self.o.max_cost),
                "worst_case": (store.get("planned") or {}).get("worst_case"),
                "committed": exact(store.committed()),
                "actual": exact(store.actual()),
            },
            "parts": [part_doc(p) for p in store.parts()],
            "reconcile": document(rec),
            "stopped": self.stopped,
            "seconds": dict(self.timings),  # this run's wall time per step
            "exit_code": exit_code,
        }

    # -- display ----------------------------------------------------------------------------------
    def _progress(self) -> None:
        if self.on_progress is None or self.store is None:
            return
        self.on_progress(snapshot(self.store, self.o.max_cost, self.currency))


def snapshot(store: js.JobStore, max_cost: Decimal | None, currency: str) -> Snapshot:
    counts = store.counts()
    parts: dict[str, int] = {}
    in_flight = 0
    for p in store.parts():
        label = p.status if p.state == js.RUNNING and p.status else p.state
        parts[label] = parts.get(label, 0) + 1
        if p.state == js.RUNNING:
            in_flight += p.done
    ended = counts.get(js.OK, 0) + counts.get(js.FAILED, 0) + counts.get(js.EXHAUSTED, 0)
    return Snapshot(store.count(), min(store.count(), ended + in_flight), counts.get(js.OK, 0),
                    counts.get(js.FAILED, 0), parts, store.committed(), store.actual(), max_cost, currency)


def part_doc(p: js.Part) -> dict[str, Any]:
    return {
        "part": p.id, "round": p.round, "file": p.path, "model": p.model, "thinking": p.thinking,
        "lines": p.lines, "bytes": p.bytes, "state": p.state, "batch_id": p.batch_id, "status": p.status,
        "done": p.done, "succeeded": p.succeeded, "failed": p.failed, "retried": p.retried,
        "reserved": exact(p.reserve), "actual": exact(p.actual), "remote_files_deleted": p.cleaned,
    }


# -- status and cancel, for another process ------------------------------------------------------

def job_status(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The job in ``directory`` part by part, from its store (no network)."""
    with js.JobStore(directory, create=False) as store:
        snap = snapshot(store, None, store.get("currency", ""))
        return {
            "directory": os.fspath(directory),
            "files": store.get("files"),
            "base_url": store.get("base_url"),
            "prepared": bool(store.get("prepared")),
            "cancelled": bool(store.get("cancelled")),
            "currency": snap.currency,
            "requests": {"total": snap.total, "done": snap.done, "succeeded": snap.succeeded, "failed": snap.failed,
                         **{k: v for k, v in store.counts().items() if k not in (js.OK, js.FAILED)}},
            "committed": exact(snap.committed),
            "actual": exact(snap.actual),
            "parts": [part_doc(p) for p in store.parts()],
        }


def cancel_job(directory: str | os.PathLike[str], client: BatchClient) -> list[tuple[str, str]]:
    """Mark the job cancelled (no part is created after this) and cancel every
    unfinished batch; (batch id, status) of each. Requests already done are
    billed and kept; a later run resumes the rest."""
    out = []
    with js.JobStore(directory, create=False) as store:
        store.put("cancelled", True)
        for part in store.parts([js.RUNNING]):
            if part.status in _ended:
                continue
            try:
                batch = client.cancel(part.batch_id)
            except BatchAPIError as exc:
                if exc.status != 400:  # 400: it ended meanwhile
                    raise
                out.append((part.batch_id, "already ended"))
                continue
            store.update_part(part.id, status=batch.get("status"))
            out.append((part.batch_id, batch.get("status") or "?"))
    return out


# -- helpers -----------------------------------------------------------------------------------

class _BadLines:
    def __init__(self) -> None:
        self.count = 0
        self.kept: list[str] = []
        self.repeated: dict[int, set[int]] = {}  # file index -> lines whose custom_id came earlier

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.kept) < KEEP_MESSAGES:
            self.kept.append(message)


class _AllBut:
    """Every line number except some (for write_retry_file, which asks ``in``)."""

    def __init__(self, left_out: set[int]):
        self.left_out = left_out

    def __contains__(self, number: int) -> bool:
        return number not in self.left_out


def _custom_ids(path: str) -> Iterator[str]:
    """The custom_id of every line of a part split wrote (valid lines only)."""
    from batchplan.planning.reading import read_lines

    for line in read_lines(path):
        yield orjson.loads(line.raw)["custom_id"]


def _reservation(c, part_id: int) -> str | None:
    """A part's worst-case cost, as exact text; None when a request's is unknown."""
    total = Decimal(0)
    for (cost,) in c.execute("SELECT r.est_cost FROM members m JOIN requests r ON r.seq = m.seq WHERE m.part=?",
                             (part_id,)):
        if cost is None:
            return None
        total += Decimal(cost)
    return str(total)


def _sum_costs(store: js.JobStore) -> Decimal | None:
    total = Decimal(0)
    for (cost,) in store.conn.execute("SELECT est_cost FROM requests"):
        if cost is None:
            return None
        total += Decimal(cost)
    return total


def _merge_checkpoint() -> Callable[[], None] | None:
    if not os.environ.get(KILL_ENV, "").startswith("during_merge"):
        return None
    return lambda: checkpoint("during_merge")


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


__all__ = ["JobError", "JobReport", "Preview", "Snapshot", "cancel_job", "job_key", "job_status", "run_job",
           "DEFAULT_PARALLEL", "DEFAULT_RETRIES", "DEFAULT_POLL"]
