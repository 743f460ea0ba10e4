"""The ledger: a local record of every submission, written before each step.

One row per submission in a SQLite database (stdlib ``sqlite3``: every write
is a committed transaction, so a crash never leaves half a record). A row
moves through states as the submission goes:

    intent    written before anything is sent: content sha256, path, region,
              base URL, endpoint, window, metadata, the estimate, the time
    uploaded  the input file id is known (written right after the upload)
    created   the batch id is known
    failed    the service refused the create outright; nothing is pending

A row left in ``intent`` or ``uploaded`` is an interrupted submission; the
next ``batchplan submit`` of the same content resumes it (jobs.submit.submit)
instead of creating a second batch. The API key is never stored here.

Location: ``$BATCHPLAN_HOME`` when set, else the user's data directory
(``platformdirs.user_data_dir("batchplan")``).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from batchplan.errors import LedgerError

HOME_ENV = "BATCHPLAN_HOME"
FILENAME = "ledger.sqlite3"

INTENT = "intent"
UPLOADED = "uploaded"
CREATED = "created"
FAILED = "failed"
PENDING = (INTENT, UPLOADED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    token TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    region TEXT NOT NULL,
    base_url TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    window TEXT NOT NULL,
    metadata TEXT,
    estimate TEXT,
    test INTEGER NOT NULL DEFAULT 0,
    input_file_id TEXT,
    batch_id TEXT,
    status TEXT,
    error TEXT,
    pid INTEGER,
    host TEXT,
    started REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS submissions_sha256 ON submissions (sha256);
CREATE INDEX IF NOT EXISTS submissions_batch ON submissions (batch_id);
"""
_COLUMNS = ("token", "state", "sha256", "path", "region", "base_url", "endpoint", "window", "metadata",
            "estimate", "test", "input_file_id", "batch_id", "status", "error", "pid", "host", "started", "updated")


@dataclass(frozen=True)
class Entry:
    token: str  # this submission's own id, made locally
    state: str
    sha256: str  # of the content uploaded
    path: str
    region: str
    base_url: str
    endpoint: str
    window: str
    metadata: dict[str, str] | None
    estimate: dict[str, Any] | None
    test: bool
    input_file_id: str | None
    batch_id: str | None
    status: str | None  # the batch status last seen
    error: str | None
    pid: int | None
    host: str | None
    started: float  # Unix seconds: when the intent was written
    updated: float

    @property
    def pending(self) -> bool:
        return self.state in PENDING

    @property
    def when(self) -> str:
        return iso(self.started)

    def in_flight_elsewhere(self) -> bool:
        """A live process on this machine other than this one is still working on it."""
        if not self.pending or self.pid is None or self.host != socket.gethostname() or self.pid == os.getpid():
            return False
        return _alive(self.pid)


def iso(ts: float | None) -> str:
    """Unix seconds as an ISO 8601 UTC time, to the second."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def ledger_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$BATCHPLAN_HOME``, else the user's data directory for batchplan."""
    env = os.environ if env is None else env
    home = env.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("batchplan", appauthor=False))


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


class Ledger:
    """The submissions ledger at ``directory/ledger.sqlite3``.

    Reading a ledger that does not exist yet finds nothing and creates
    nothing; the first write creates the directory (owner-only) and file.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None):
        self.directory = Path(directory) if directory is not None else ledger_dir()
        self.path = self.directory / FILENAME
        self._conn: sqlite3.Connection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- storage ---------------------------------------------------------------
    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if not create and not self.path.exists():
            return None
        try:
            if create:
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                if not self.path.exists():
                    # Owner-only from the start: it names files and batches.
                    os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=FULL")  # a committed step survives a power cut
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            if is_damaged(exc):
                raise LedgerError(damaged_message(self.path, exc)) from None
            raise LedgerError(f"{self.path}: cannot open the ledger ({exc}); set {HOME_ENV} to a writable directory") from None
        self._conn = conn
        return conn

    def _write(self, sql: str, args: tuple) -> None:
        conn = self._connect(create=True)
        try:
            with conn:  # one transaction, committed before returning
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(sql, args)
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot write the ledger ({exc})") from None

    def _query(self, sql: str, args: tuple = ()) -> list[Entry]:
        conn = self._connect(create=False)
        if conn is None:
            return []
        try:
            rows = conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            if is_damaged(exc):
                raise LedgerError(damaged_message(self.path, exc)) from None
            raise LedgerError(f"{self.path}: cannot read the ledger ({exc})") from None
        return [_entry(row) for row in rows]

    def _one(self, sql: str, args: tuple = ()) -> Entry | None:
        found = self._query(sql + " LIMIT 1", args)
        return found[0] if found else None

    # -- steps -----------------------------------------------------------------
    def begin(self, *, sha256: str, path: str, region: str, base_url: str, endpoint: str, window: str,
              metadata: Mapping[str, str] | None = None, estimate: Mapping[str, Any] | None = None,
              test: bool = False) -> Entry:
        """Record the intent to submit, before anything is sent."""
        token = uuid.uuid4().hex
        now = time.time()
        self._write(
            f"INSERT INTO submissions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
            (token, INTENT, sha256, _where(path), region, base_url, endpoint, window,
             _dump(metadata), _dump(estimate), int(test), None, None, None, None, os.getpid(),
             socket.gethostname(), now, now),
        )
        return self.get(token)

    def resume(self, token: str, *, path: str, window: str, metadata: Mapping[str, str] | None,
               estimate: Mapping[str, Any] | None) -> Entry:
        """Take over an interrupted submission in this process, with this run's options."""
        self._write(
            "UPDATE submissions SET path=?, window=?, metadata=?, estimate=?, pid=?, host=?, updated=? WHERE token=?",
            (_where(path), window, _dump(metadata), _dump(estimate), os.getpid(), socket.gethostname(),
             time.time(), token),
        )
        return self.get(token)

    def mark_uploaded(self, token: str, input_file_id: str) -> Entry:
        self._write("UPDATE submissions SET state=?, input_file_id=?, error=NULL, updated=? WHERE token=?",
                    (UPLOADED, input_file_id, time.time(), token))
        return self.get(token)

    def mark_created(self, token: str, batch_id: str, status: str | None = None) -> Entry:
        self._write("UPDATE submissions SET state=?, batch_id=?, status=?, error=NULL, updated=? WHERE token=?",
                    (CREATED, batch_id, status, time.time(), token))
        return self.get(token)

    def mark_failed(self, token: str, error: str) -> Entry:
        self._write("UPDATE submissions SET state=?, error=?, updated=? WHERE token=?",
                    (FAILED, error, time.time(), token))
        return self.get(token)

    def set_status(self, batch_id: str, status: str) -> None:
        """Remember the status last seen for a batch the ledger knows."""
        if self._connect(create=False) is None:
            return
        self._write("UPDATE submissions SET status=?, updated=? WHERE batch_id=? AND (status IS NOT ? )",
                    (status, time.time(), batch_id, status))

    def restore(self, entry: Entry) -> str | None:
        """Write back an entry rebuilt from the service (``ledger_rebuild``):
        "added"; "completed" when the ledger had it as an interrupted
        submission (now created, with its batch); None when it had it already."""
        conn = self._connect(create=True)
        values = tuple(_dump(getattr(entry, c)) if c in ("metadata", "estimate") else
                       int(entry.test) if c == "test" else getattr(entry, c) for c in _COLUMNS)
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                known = conn.execute("SELECT state FROM submissions WHERE token=? OR (batch_id IS NOT NULL AND batch_id=?)",
                                     (entry.token, entry.batch_id)).fetchone()
                if known and known["state"] in PENDING:
                    conn.execute("UPDATE submissions SET state=?, input_file_id=?, batch_id=?, status=?, error=NULL, "
                                 "updated=? WHERE token=?", (CREATED, entry.input_file_id, entry.batch_id, entry.status,
                                                            entry.updated, entry.token))
                    return "completed"
                if known:
                    return None
                conn.execute(f"INSERT INTO submissions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                             values)
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot write the ledger ({exc})") from None
        return "added"

    # -- lookups ---------------------------------------------------------------
    def get(self, token: str) -> Entry:
        entry = self._one("SELECT * FROM submissions WHERE token=?", (token,))
        if entry is None:
            raise LedgerError(f"{self.path}: no submission {token}")
        return entry

    def created_for(self, sha256: str) -> Entry | None:
        """The latest batch created from this content."""
        return self._one("SELECT * FROM submissions WHERE sha256=? AND state=? ORDER BY started DESC",
                         (sha256, CREATED))

    def pending_for(self, sha256: str, base_url: str | None = None) -> list[Entry]:
        """Interrupted submissions of this content (to ``base_url`` when given), oldest first."""
        if base_url is None:
            return self._query("SELECT * FROM submissions WHERE sha256=? AND state IN (?, ?) ORDER BY started",
                               (sha256, *PENDING))
        return self._query(
            "SELECT * FROM submissions WHERE sha256=? AND base_url=? AND state IN (?, ?) ORDER BY started",
            (sha256, base_url, *PENDING))

    def find_batch(self, batch_id: str) -> Entry | None:
        return self._one("SELECT * FROM submissions WHERE batch_id=? ORDER BY started DESC", (batch_id,))

    def latest(self) -> Entry | None:
        """The latest submission that has a batch."""
        return self._one("SELECT * FROM submissions WHERE batch_id IS NOT NULL ORDER BY started DESC, rowid DESC")

    def entries(self, limit: int | None = None) -> list[Entry]:
        """Every submission, newest first."""
        sql = "SELECT * FROM submissions ORDER BY started DESC, rowid DESC"
        if limit is not None:
            return self._query(sql + " LIMIT ?", (int(limit),))
        return self._query(sql)


def _where(path: str) -> str:
    """The path to record: absolute, but ``-`` (standard input) as it is."""
    return path if path == "-" else os.path.abspath(path)


def is_damaged(exc: BaseException) -> bool:
    """A file that is not an SQLite database, or a damaged one (SQLITE_NOTADB,
    SQLITE_CORRUPT): the sqlite3 module raises those as DatabaseError itself,
    where a locked or read-only ledger is an OperationalError."""
    return type(exc) is sqlite3.DatabaseError


def damaged_message(path: Path, exc: BaseException) -> str:
    return (f"{path}: the ledger is damaged ({exc}); `batchplan ledger rebuild` moves it aside and restores "
            "batchplan's batches of the last 30 days from the service")


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _entry(row: sqlite3.Row) -> Entry:
    data = dict(row)
    data["metadata"] = json.loads(data["metadata"]) if data["metadata"] else None
    data["estimate"] = json.loads(data["estimate"]) if data["estimate"] else None
    data["test"] = bool(data["test"])
    return Entry(**data)


def estimate_of(result) -> dict[str, Any]:
    """What the ledger keeps of a plan (plan.BatchPlan): money as exact
    decimal strings, unknown as null."""
    from batchplan.catalog.money import exact

    total = result.plan.total()
    return {
        "currency": result.currency,
        "region": result.region,
        "requests": result.plan.requests,
        "input_tokens": total.input_tokens,
        "output_tokens": total.output_tokens,
        "realtime_cost": exact(total.realtime_cost),
        "batch_cost": exact(total.batch_cost),
        "output_assumption": result.output.mode,
        "upper_bound": result.output.is_upper_bound,
    }
