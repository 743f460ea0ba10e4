"""The submissions ledger: where it lives, what a submission records at each
step, that every step survives the process, and the lookups submit relies on."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from decimal import Decimal

import pytest

from batchplan.jobs.ledger import CREATED, FAILED, INTENT, UPLOADED, Ledger, estimate_of, ledger_dir, sha256_file

URL = "http://127.0.0.1:9/compatible-mode/v1"
OTHER_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"


def begin(ledger, sha="a" * 64, base_url=URL, **extra):
    fields = dict(sha256=sha, path="in.jsonl", region="intl", base_url=base_url, endpoint="/v1/chat/completions",
                  window="24h", metadata={"ds_name": "run"}, estimate={"batch_cost": "0.5", "currency": "USD"})
    fields.update(extra)
    return ledger.begin(**fields)


def test_location_is_batchplan_home_else_the_user_data_dir(tmp_path):
    import platformdirs

    assert ledger_dir({"BATCHPLAN_HOME": str(tmp_path)}) == tmp_path
    assert ledger_dir({}) == type(tmp_path)(platformdirs.user_data_dir("batchplan", appauthor=False))
    assert Ledger(tmp_path).path == tmp_path / "ledger.sqlite3"


def test_reading_creates_nothing(tmp_path):
    home = tmp_path / "home"
    ledger = Ledger(home)
    assert ledger.latest() is None and ledger.entries() == [] and ledger.created_for("x") is None
    assert ledger.pending_for("x") == [] and ledger.find_batch("batch_1") is None
    ledger.set_status("batch_1", "completed")
    assert not home.exists()


def test_a_submission_step_by_step(tmp_path):
    ledger = Ledger(tmp_path / "home")
    entry = begin(ledger)
    assert entry.state == INTENT and entry.pending
    assert entry.path == os.path.abspath("in.jsonl") and entry.base_url == URL and entry.region == "intl"
    assert entry.metadata == {"ds_name": "run"} and entry.estimate == {"batch_cost": "0.5", "currency": "USD"}
    assert entry.input_file_id is None and entry.batch_id is None and entry.pid == os.getpid()
    assert entry.when.endswith("Z") and len(entry.token) == 32
    assert ledger.pending_for("a" * 64, URL) == [entry]
    assert ledger.created_for("a" * 64) is None

    entry = ledger.mark_uploaded(entry.token, "file-batch-1")
    assert entry.state == UPLOADED and entry.input_file_id == "file-batch-1" and entry.pending
    entry = ledger.mark_created(entry.token, "batch_1", "validating")
    assert entry.state == CREATED and entry.batch_id == "batch_1" and entry.status == "validating"
    assert not entry.pending and ledger.pending_for("a" * 64) == []
    assert ledger.created_for("a" * 64) == entry
    assert ledger.find_batch("batch_1") == entry and ledger.latest() == entry
    ledger.set_status("batch_1", "completed")
    assert ledger.find_batch("batch_1").status == "completed"


def test_failed_submissions_are_neither_pending_nor_duplicates(tmp_path):
    ledger = Ledger(tmp_path)
    entry = begin(ledger)
    entry = ledger.mark_failed(entry.token, "create batch: HTTP 400 invalid_parameter_error: bad")
    assert entry.state == FAILED and "HTTP 400" in entry.error
    assert ledger.pending_for("a" * 64) == [] and ledger.created_for("a" * 64) is None


def test_pending_is_per_base_url_and_oldest_first(tmp_path):
    ledger = Ledger(tmp_path)
    first = begin(ledger)
    second = begin(ledger)
    elsewhere = begin(ledger, base_url=OTHER_URL)
    begin(ledger, sha="b" * 64)
    assert [e.token for e in ledger.pending_for("a" * 64, URL)] == [first.token, second.token]
    assert [e.token for e in ledger.pending_for("a" * 64, OTHER_URL)] == [elsewhere.token]
    assert len(ledger.pending_for("a" * 64)) == 3


def test_latest_is_the_newest_with_a_batch(tmp_path):
    ledger = Ledger(tmp_path)
    old = begin(ledger)
    ledger.mark_created(old.token, "batch_old")
    new = begin(ledger, sha="b" * 64)
    ledger.mark_created(new.token, "batch_new")
    begin(ledger, sha="c" * 64)  # pending, no batch yet
    assert ledger.latest().batch_id == "batch_new"
    assert [e.batch_id for e in ledger.entries()] == [None, "batch_new", "batch_old"]
    assert len(ledger.entries(limit=1)) == 1


def test_resume_takes_over_with_this_runs_options(tmp_path):
    ledger = Ledger(tmp_path)
    entry = begin(ledger)
    with sqlite3.connect(ledger.path) as db:
        db.execute("UPDATE submissions SET pid=1234567")
    resumed = ledger.resume(entry.token, path="other.jsonl", window="48h", metadata=None, estimate={"batch_cost": None})
    assert resumed.token == entry.token and resumed.state == INTENT
    assert resumed.window == "48h" and resumed.metadata is None and resumed.estimate == {"batch_cost": None}
    assert resumed.path == os.path.abspath("other.jsonl") and resumed.pid == os.getpid()


def test_every_step_is_on_disk_before_the_call_returns(tmp_path):
    """Another process (a crash and a restart) sees each step at once."""
    ledger = Ledger(tmp_path)
    entry = begin(ledger)
    ledger.mark_uploaded(entry.token, "file-batch-9")
    # No close(): a killed process never closes either.
    script = ("import sys; from batchplan.jobs.ledger import Ledger; e = Ledger(sys.argv[1]).pending_for(sys.argv[2])[0];"
              "print(e.state, e.input_file_id)")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path), "a" * 64], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["uploaded", "file-batch-9"]


def test_only_the_owner_can_read_it(tmp_path):
    home = tmp_path / "new-home"
    begin(Ledger(home))
    assert stat.S_IMODE(os.stat(home / "ledger.sqlite3").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700


def test_in_flight_elsewhere_only_for_a_live_other_process(tmp_path):
    ledger = Ledger(tmp_path)
    entry = begin(ledger)
    assert not entry.in_flight_elsewhere()  # this process
    with sqlite3.connect(ledger.path) as db:
        db.execute("UPDATE submissions SET pid=?", (os.getppid(),))
    assert ledger.get(entry.token).in_flight_elsewhere()  # alive, not us
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with sqlite3.connect(ledger.path) as db:
        db.execute("UPDATE submissions SET pid=?", (dead.pid,))
    assert not ledger.get(entry.token).in_flight_elsewhere()
    ledger.mark_created(entry.token, "batch_1")
    with sqlite3.connect(ledger.path) as db:
        db.execute("UPDATE submissions SET pid=?", (os.getppid(),))
    assert not ledger.get(entry.token).in_flight_elsewhere()  # finished: nothing in flight


def test_an_unwritable_home_is_a_one_line_error(tmp_path):
    from batchplan.jobs.ledger import LedgerError

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LedgerError, match="cannot open the ledger"):
        begin(Ledger(blocker / "home"))


def test_sha256_file(tmp_path):
    import hashlib

    path = tmp_path / "x.jsonl"
    data = b'{"a": 1}\n' * 100_000
    path.write_bytes(data)
    assert sha256_file(path, chunk=4096) == hashlib.sha256(data).hexdigest()


def test_estimate_keeps_exact_money(write_batch):
    from batchplan.planning.planner import plan_file
    from tests.conftest import line

    result = plan_file(str(write_batch([line("1", max_tokens=100), line("2", max_tokens=100)])))
    est = estimate_of(result)
    total = result.plan.total()
    assert Decimal(est["batch_cost"]) == total.batch_cost and Decimal(est["realtime_cost"]) == total.realtime_cost
    assert est["currency"] == "USD" and est["region"] == "intl" and est["requests"] == 2
    assert est["output_tokens"] == 200 and est["output_assumption"] == "max" and est["upper_bound"] is True
