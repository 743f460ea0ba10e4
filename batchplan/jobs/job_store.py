"""The job store: what a ``batchplan run`` job knows, in ``DIR/job.sqlite3``.

SQLite (stdlib ``sqlite3``) in WAL mode with ``synchronous=FULL``: every
step is one committed transaction, so a kill at any moment leaves the store
as it was before or after that step, never between. Another process (``job
status``, ``job cancel``) may read and write while a run holds it.

Tables:

    meta      key -> value: the job key, files, base URL, flags (cancelled)
    files     the input files, in order, with their sha256
    requests  one row per valid input line: ``seq`` orders the whole job
              (file index * 2^32 + line number), custom_id (unique in the
              job), the estimate, the state and the last error
    parts     one row per part: its file, the reservation and actual cost,
              the ledger token of its create, the batch and its files
    members   which requests a part holds (a request is in one part per try)

Request states: ``queued`` (in a part not ended yet, or waiting for one),
``retry`` (failed retryably, waits for a new part), ``exhausted`` (retryable
but out of retries), ``ok``, ``failed`` (failed for good). Part states:
``split`` -> ``reserved`` -> ``submitting`` (ledger token known) ->
``running`` (batch id known) -> ``collected``; or ``dropped`` (its create was
refused outright: its requests went back to queued).

The API key is never stored here.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator

from batchplan.errors import LedgerError

FILENAME = "job.sqlite3"
SEQ_SHIFT = 32  # seq = file index << SEQ_SHIFT | line number

QUEUED, RETRY, EXHAUSTED, OK, FAILED = "queued", "retry", "exhausted", "ok", "failed"
SPLIT, RESERVED, SUBMITTING, RUNNING, COLLECTED, DROPPED = (
    "split", "reserved", "submitting", "running", "collected", "dropped")
UNFINISHED_PARTS = (SPLIT, RESERVED, SUBMITTING, RUNNING)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS files (idx INTEGER PRIMARY KEY, path TEXT NOT NULL, sha256 TEXT NOT NULL,
    lines INTEGER NOT NULL DEFAULT 0, invalid INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY,
    custom_id TEXT NOT NULL,
    model TEXT, tier TEXT, thinking INTEGER NOT NULL DEFAULT 0,
    est_input INTEGER, est_output INTEGER, est_cost TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    part INTEGER,
    code TEXT, message TEXT,
    act_input INTEGER, act_output INTEGER, act_cost TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS requests_custom_id ON requests (custom_id);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state, seq);
CREATE TABLE IF NOT EXISTS parts (
    id INTEGER PRIMARY KEY,
    round INTEGER NOT NULL,
    path TEXT NOT NULL,
    model TEXT, url TEXT, thinking INTEGER,
    lines INTEGER NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT NOT NULL,
    reserve TEXT,
    actual TEXT,
    state TEXT NOT NULL,
    token TEXT,
    batch_id TEXT, status TEXT, done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,
    input_file_id TEXT, output_file_id TEXT, error_file_id TEXT,
    succeeded INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, retried INTEGER NOT NULL DEFAULT 0,
    cleaned INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS members (part INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (part, seq)) WITHOUT ROWID;
"""


def seq_of(file_index: int, line: int) -> int:
    return (file_index << SEQ_SHIFT) | line


def split_seq(seq: int) -> tuple[int, int]:
    return seq >> SEQ_SHIFT, seq & ((1 << SEQ_SHIFT) - 1)


def _money(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Part:
    id: int
    round: int
    path: str
    model: str | None
    url: str | None
    thinking: bool
    lines: int
    bytes: int
    sha256: str
    reserve: Decimal | None
    actual: Decimal | None
    state: str
    token: str | None
    batch_id: str | None
    status: str | None
    done: int
    total: int
    input_file_id: str | None
    output_file_id: str | None
    error_file_id: str | None
    succeeded: int
    failed: int
    retried: int
    cleaned: bool
    error: str | None
    updated: float

    @property
    def name(self) -> str:
        return f"part {self.id}"

    @property
    def unfinished(self) -> bool:
        return self.state in UNFINISHED_PARTS


def _part(row: sqlite3.Row) -> Part:
    data = dict(row)
    data["thinking"] = bool(data["thinking"])
    data["cleaned"] = bool(data["cleaned"])
    data["reserve"] = _money(data["reserve"])
    data["actual"] = _money(data["actual"])
    return Part(**data)


class JobStore:
    """The store of the job in ``directory``; created on first use."""

    def __init__(self, directory: str | os.PathLike[str], *, create: bool = True):
        self.directory = Path(directory)
        self.path = self.directory / FILENAME
        if not create and not self.path.exists():
            raise LedgerError(f"{self.directory}: no batchplan job here (no {FILENAME})")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a committed step survives a power cut
            # 32 MB of page cache, whatever the job's size: the custom_id index
            # of a few million requests is then mostly read from memory.
            conn.execute("PRAGMA cache_size=-32768")
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"{self.path}: cannot open the job store ({exc})") from None
        self.conn = conn

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "JobStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------
    def tx(self):
        """``with store.tx() as c:`` one committed transaction."""
        return _Tx(self)

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot read the job store ({exc})") from None

    # -- meta --------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM meta WHERE key=?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def put(self, key: str, value: Any) -> None:
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # -- files and requests ------------------------------------------------------
    def files(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM files ORDER BY idx")

    def count(self, state: str | None = None) -> int:
        if state is None:
            return self.query("SELECT COUNT(*) AS n FROM requests")[0]["n"]
        return self.query("SELECT COUNT(*) AS n FROM requests WHERE state=?", (state,))[0]["n"]

    def counts(self) -> dict[str, int]:
        return {row["state"]: row["n"] for row in self.query("SELECT state, COUNT(*) AS n FROM requests GROUP BY state")}

    def iter_requests(self, where: str = "", args: tuple = (), chunk: int = 10_000) -> Iterator[sqlite3.Row]:
        """Requests in seq order, fetched in chunks (flat memory)."""
        last = -1
        while True:
            rows = self.query(f"SELECT * FROM requests WHERE seq > ? {('AND ' + where) if where else ''} "
                              f"ORDER BY seq LIMIT ?", (last, *args, chunk))
            if not rows:
                return
            yield from rows
            last = rows[-1]["seq"]

    def members(self, part_id: int) -> dict[str, int]:
        """custom_id -> seq of one part (at most a part's lines)."""
        rows = self.query("SELECT r.custom_id, r.seq FROM members m JOIN requests r ON r.seq = m.seq WHERE m.part=?",
                          (part_id,))
        return {row["custom_id"]: row["seq"] for row in rows}

    def reservation_of(self, part_id: int) -> Decimal | None:
        """The worst-case cost of a part's requests (None when one is unknown)."""
        total = Decimal(0)
        for row in self.query("SELECT r.est_cost FROM members m JOIN requests r ON r.seq = m.seq WHERE m.part=?",
                              (part_id,)):
            if row["est_cost"] is None:
                return None
            total += Decimal(row["est_cost"])
        return total

    # -- parts -------------------------------------------------------------------
    def parts(self, states: Iterable[str] | None = None) -> list[Part]:
        if states is None:
            return [_part(r) for r in self.query("SELECT * FROM parts ORDER BY id")]
        states = tuple(states)
        marks = ", ".join("?" * len(states))
        return [_part(r) for r in self.query(f"SELECT * FROM parts WHERE state IN ({marks}) ORDER BY id", states)]

    def part(self, part_id: int) -> Part:
        return _part(self.query("SELECT * FROM parts WHERE id=?", (part_id,))[0])

    def update_part(self, part_id: int, **fields: Any) -> Part:
        with self.tx() as c:
            set_part(c, part_id, fields)
        return self.part(part_id)

    def committed(self) -> Decimal | None:
        """What the job may have spent: the actual cost of collected parts, the
        reservation of parts reserved and not yet collected. None when unknown."""
        total = Decimal(0)
        for row in self.query("SELECT state, reserve, actual FROM parts WHERE state NOT IN (?, ?)", (SPLIT, DROPPED)):
            value = row["actual"] if row["state"] == COLLECTED else row["reserve"]
            if value is None:
                return None
            total += Decimal(value)
        return total

    def actual(self) -> Decimal | None:
        total = Decimal(0)
        for row in self.query("SELECT actual FROM parts WHERE state=?", (COLLECTED,)):
            if row["actual"] is None:
                return None
            total += Decimal(row["actual"])
        return total


def set_part(c: sqlite3.Connection, part_id: int, fields: dict[str, Any]) -> None:
    fields = dict(fields)
    for key in ("reserve", "actual"):
        if key in fields and isinstance(fields[key], Decimal):
            fields[key] = _text(fields[key])
    fields["updated"] = time.time()
    c.execute(f"UPDATE parts SET {', '.join(f'{k}=?' for k in fields)} WHERE id=?", (*fields.values(), part_id))


class _Tx:
    def __init__(self, store: JobStore):
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.store.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.store.path}: cannot write the job store ({exc})") from None
        return self.store.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        conn = self.store.conn
        if exc_type is None:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as error:
                conn.execute("ROLLBACK")
                raise LedgerError(f"{self.store.path}: cannot write the job store ({error})") from None
        else:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise LedgerError(f"{self.store.path}: cannot write the job store ({exc})") from None


