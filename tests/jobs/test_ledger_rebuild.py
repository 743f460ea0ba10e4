"""`batchplan ledger rebuild`: a damaged or lost ledger rebuilt from the batches' metadata.

Against FakeDashScope (a real HTTP server on loopback) through the real
``openai`` client, with the CLI as a user runs it.
"""

from __future__ import annotations

import json
import time

import pytest
from openai import OpenAI

from batchplan.jobs.ledger import Ledger
from batchplan.jobs.ledger_rebuild import damage
from tests.conftest import line
from tests.fakes.dashscope_server import FakeDashScope

API_KEY = "sk-rebuild-5c1e"
FIELDS = ("token", "state", "sha256", "path", "region", "base_url", "endpoint", "window", "metadata", "estimate",
          "test", "input_file_id", "batch_id")


@pytest.fixture(scope="module")
def server():
    with FakeDashScope(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def home(tmp_path, monkeypatch, server):
    server.batches.clear()  # one server per module; each test starts with an empty account
    home = tmp_path / "home"
    monkeypatch.setenv("DASHSCOPE_API_KEY", API_KEY)
    monkeypatch.setenv("DASHSCOPE_BASE_URL", server.base_url)
    monkeypatch.setenv("BATCHPLAN_HOME", str(home))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return home


def submitted(run, write_batch, name, *args):
    path = write_batch([line(f"{name}-{i}", max_tokens=50) for i in range(3)], name=f"{name}.jsonl")
    result = run("submit", path, "--yes", *args)
    assert result.exit_code == 0, result.stderr
    return path


def snapshot(home):
    with Ledger(home) as ledger:
        return sorted(({f: getattr(e, f) for f in FIELDS} for e in ledger.entries()), key=lambda e: e["batch_id"])


def foreign_batch(server, tmp_path):
    """A batch made without batchplan (no batchplan metadata)."""
    client = OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0)
    src = tmp_path / "other.jsonl"
    src.write_text(line("x") + "\n")
    f = client.files.create(file=src.open("rb"), purpose="batch")
    batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"ds_name": "by hand"})
    client.close()
    return batch.id


def test_a_damaged_ledger_is_moved_aside_and_rebuilt_from_metadata(run, write_batch, server, home, tmp_path):
    submitted(run, write_batch, "first", "--name", "nightly", "--description", "first run")
    submitted(run, write_batch, "second", "--window", "48h")
    other = foreign_batch(server, tmp_path)
    before = snapshot(home)
    assert len(before) == 2

    ledger_file = home / "ledger.sqlite3"
    garbage = b"this is not an SQLite database\n" * 200
    ledger_file.write_bytes(garbage)
    broken = run("list", "--local")
    assert broken.exit_code == 2
    assert "ledger is damaged" in broken.stderr and "batchplan ledger rebuild" in broken.stderr
    assert "Traceback" not in broken.stderr and len(broken.stderr.strip().splitlines()) == 1

    result = run("ledger", "rebuild")
    assert result.exit_code == 0, result.stderr
    aside = [p for p in home.iterdir() if p.name.startswith("ledger.sqlite3.damaged-")]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage  # kept as it was, never deleted
    assert f"moved aside to {aside[0]}" in result.stdout
    assert "listed 3 batch(es)" in result.stdout
    assert "not restored: 1 batch(es) without batchplan's metadata" in result.stdout
    assert "restored 2 entries" in result.stdout

    after = snapshot(home)
    assert after == before  # every field the service could give back
    assert other not in {e["batch_id"] for e in after}

    again = run("ledger", "rebuild", "--json")  # a healthy ledger: nothing moved, nothing doubled
    doc = json.loads(again.stdout)
    assert again.exit_code == 0 and doc["moved_to"] is None and doc["damaged"] is None
    assert doc["restored"] == [] and sorted(doc["already_in_ledger"]) == sorted(e["batch_id"] for e in before)
    assert doc["not_batchplans"] == [other]
    assert snapshot(home) == after


def test_a_lost_ledger_is_rebuilt_and_old_or_incomplete_batches_are_reported(run, write_batch, server, home, tmp_path):
    submitted(run, write_batch, "old")  # the service lists newest first: old comes last
    submitted(run, write_batch, "kept")
    submitted(run, write_batch, "bare")
    by_path = {b["metadata"]["batchplan_path"].rsplit("/", 1)[-1]: b for b in server.batches.values()}
    by_path["old.jsonl"]["created_at"] = int(time.time()) - 40 * 86400  # older than the 30 days the service lists
    del by_path["bare.jsonl"]["metadata"]["batchplan_token"]
    (home / "ledger.sqlite3").unlink()  # lost

    result = run("ledger", "rebuild", "--json")
    assert result.exit_code == 1  # one of batchplan's batches could not be restored
    doc = json.loads(result.stdout)
    assert doc["moved_to"] is None
    assert [r["path"].rsplit("/", 1)[-1] for r in doc["restored"]] == ["kept.jsonl"]
    assert doc["not_restored"] == [{"batch_id": by_path["bare.jsonl"]["id"], "reason": "its metadata lacks batchplan_token"}]
    assert by_path["old.jsonl"]["id"] not in json.dumps(doc)

    shown = run("list", "--local")
    assert shown.exit_code == 0 and "kept.jsonl" in shown.stdout and "old.jsonl" not in shown.stdout


def test_a_truncated_ledger_is_damaged_and_a_healthy_one_is_not(run, write_batch, server, home):
    submitted(run, write_batch, "one")
    ledger_file = home / "ledger.sqlite3"
    assert damage(ledger_file) is None
    data = ledger_file.read_bytes()
    ledger_file.write_bytes(data[:100] + b"\0" * (len(data) - 100))  # the header survives, the pages do not
    assert damage(ledger_file) is not None
    assert damage(home / "missing.sqlite3") is None


def test_an_interrupted_entry_whose_batch_exists_becomes_created(run, write_batch, server, home):
    import sqlite3

    submitted(run, write_batch, "crashed")
    (batch,) = server.batches.values()
    # As if the process died after the create and before recording it.
    with sqlite3.connect(home / "ledger.sqlite3") as conn:
        conn.execute("UPDATE submissions SET state='uploaded', batch_id=NULL, status=NULL")
    result = run("ledger", "rebuild", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [c["batch_id"] for c in doc["completed"]] == [batch["id"]] and doc["restored"] == []
    (entry,) = Ledger(home).entries()
    assert entry.state == "created" and entry.batch_id == batch["id"] and entry.status == batch["status"]


def test_a_listing_cut_short_by_the_page_bound_says_it_is_incomplete(run, write_batch, server, home, monkeypatch):
    from batchplan.jobs import ledger_rebuild

    for name in ("a", "b", "c"):
        submitted(run, write_batch, name)
    (home / "ledger.sqlite3").unlink()
    monkeypatch.setattr(ledger_rebuild, "PAGE", 1)
    monkeypatch.setattr(ledger_rebuild, "MAX_PAGES", 2)  # two pages of one: the third batch is never listed
    result = run("ledger", "rebuild", "--json")
    doc = json.loads(result.stdout)
    assert doc["listed"] == 2 and len(doc["restored"]) == 2
    assert doc["complete"] is False
    monkeypatch.setattr(ledger_rebuild, "MAX_PAGES", 10)
    again = json.loads(run("ledger", "rebuild", "--json").stdout)
    assert again["complete"] is True and again["listed"] == 3 and len(again["already_in_ledger"]) == 2


def test_the_parts_of_a_run_stay_with_their_job_folder(run, write_batch, server, home, tmp_path):
    submitted(run, write_batch, "mine")
    job = write_batch([line(f"job-{i}", max_tokens=20) for i in range(4)], name="job.jsonl")
    ran = run("run", job, "--out", tmp_path / "job", "--yes", "--poll", "0", "--max-lines", "2")
    assert ran.exit_code == 0, ran.stderr
    assert len(server.batches) == 3
    (home / "ledger.sqlite3").unlink()
    result = run("ledger", "rebuild", "--json")
    doc = json.loads(result.stdout)
    assert len(doc["restored"]) == 1 and doc["restored"][0]["path"].endswith("mine.jsonl")
    assert len(doc["job_parts"]) == 2 and doc["not_restored"] == []
    assert len(snapshot(home)) == 1
    text = run("ledger", "rebuild").stdout
    assert "2 part(s) of `batchplan run` jobs" in text
