"""The pieces of `batchplan run` on their own: the external merge, the retry
classification, the fake server's job modes, the library call and the
benchmark script (at a small size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from openai import OpenAI

import batchplan
from batchplan.jobs import merge
from batchplan.jobs.client import BatchClient
from batchplan.jobs.failures import ACCOUNT, FINAL, RETRY, classify_failure
from tests.conftest import line
from tests.fakes.dashscope_server import FakeDashScope

ROOT = Path(__file__).parent.parent.parent


# ------------------------------------------------------------------- merge

def _run_file(tmp_path, name, seqs):
    source = tmp_path / f"{name}.src"
    picks, offset = [], 0
    with open(source, "wb") as out:
        for seq in seqs:
            data = json.dumps({"custom_id": f"c{seq}"}).encode() + b"\n"
            out.write(data)
            picks.append((seq, offset, len(data)))
            offset += len(data)
    path = tmp_path / f"{name}.run"
    merge.write_run(str(source), picks, str(path))
    return str(path)


def test_runs_merge_in_seq_order_in_passes_dropping_repeats(tmp_path, monkeypatch):
    monkeypatch.setattr(merge, "FAN_IN", 2)  # five runs: three passes
    runs = [_run_file(tmp_path, f"r{i}", seqs) for i, seqs in
            enumerate([[9, 1, 5], [2, 8], [3], [7, 4, 6], [5, 10]])]
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    written = merge.merge_runs(runs, str(target))
    got = [json.loads(x)["custom_id"] for x in target.read_text().splitlines()]
    assert got == [f"c{i}" for i in range(1, 11)] and written == 10  # seq 5 twice: once
    assert sorted(os.listdir(tmp_path)) == sorted([f"r{i}.src" for i in range(5)] + [f"r{i}.run" for i in range(5)]
                                                  + ["out.jsonl"])  # no scratch left


def test_a_failed_merge_leaves_the_old_output(tmp_path):
    run = _run_file(tmp_path, "r", [1, 2, 3])
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")

    def boom():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        merge.merge_runs([run], str(target), on_line=boom)
    assert target.read_text() == "old\n"


# ------------------------------------------------------------------- retry or not

@pytest.mark.parametrize("code, message, kind", [
    ("Throttling.RateQuota", "Requests rate limit exceeded", RETRY),
    ("InternalError.Algo", "inference internal error", RETRY),
    ("RequestTimeOut", "timeout error time is 300 seconds", RETRY),
    ("ModelUnavailable", "Model is unavailable, please try again later", RETRY),
    ("batch_expired", "not run", RETRY),
    ("http_503", "status code 503", RETRY),
    ("InvalidParameter", "Range of input length should be [1, 98304]", FINAL),
    ("DataInspectionFailed", "Input data may contain inappropriate content.", FINAL),
    ("http_400", "status code 400", FINAL),
    ("Arrearage", "Access denied, plesase make sure your account is in good standing.", ACCOUNT),
    ("CommodityNotPurchased", "", ACCOUNT),
    ("something_new", "the account is in arrears", ACCOUNT),
    ("something_new", "nothing known", FINAL),
])
def test_failures_are_sorted_by_what_a_retry_can_fix(code, message, kind):
    assert classify_failure(code, message) == kind


# ------------------------------------------------------------------- the fake's modes

def _client(server):
    return OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)


def _create(client, lines):
    data = "".join(line(f"q{i}", max_tokens=10) + "\n" for i in range(lines)).encode()
    f = client.files.create(file=("in.jsonl", data), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")


def test_instant_mode_ends_a_batch_on_its_first_retrieve():
    with FakeDashScope(instant=True) as server:
        client = _client(server)
        batch = _create(client, 3)
        done = client.batches.retrieve(batch.id)
        assert done.status == "completed" and done.request_counts.completed == 3


def test_an_expiring_batch_and_a_line_that_fails_only_once():
    with FakeDashScope(expire_batches={1: 0.5}, fail_custom_ids={"q0": {"code": "InternalError", "times": 1}}) as server:
        client = _client(server)
        first = _create(client, 4)
        client.batches.retrieve(first.id)  # validating -> in_progress
        ended = client.batches.retrieve(first.id)
        assert ended.status == "expired" and ended.request_counts.completed + ended.request_counts.failed == 4
        errors = client.files.content(ended.error_file_id).text
        assert '"q0"' in errors and errors.count("batch_expired") == 2
        second = _create(client, 1)  # q0 again: it succeeds the second time
        for _ in range(5):
            now = client.batches.retrieve(second.id)
        assert now.status == "completed" and now.request_counts.completed == 1


# ------------------------------------------------------------------- the library

def test_run_job_from_python(write_batch, tmp_path, monkeypatch):
    monkeypatch.delenv("BATCHPLAN_TEST_KILL_AT", raising=False)
    path = write_batch([line(f"r{i}", max_tokens=8) for i in range(5)])
    snaps, said = [], []
    with FakeDashScope(api_key="sk-lib", instant=True) as server, BatchClient("sk-lib", server.base_url) as client:
        report = batchplan.run_job([path], tmp_path / "job", client=client, max_lines=2, poll_interval=0,
                                   on_progress=snaps.append, on_message=said.append)
    assert isinstance(report, batchplan.JobReport)
    assert report.exit_code == 0 and report.stopped is None
    assert report.document["requests"]["succeeded"] == 5 and len(report.document["parts"]) == 3
    assert snaps[-1].done == snaps[-1].total == 5 and snaps[-1].parts == {"collected": 3}
    assert any("part 3" in m for m in said)
    assert json.loads((tmp_path / "job" / "report.json").read_text()) == report.document


# ------------------------------------------------------------------- the benchmark, small

def test_the_large_job_benchmark_runs(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("BATCHPLAN_TEST_KILL_AT", None)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "large_job.py"), "--lines", "300"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "300 lines merged into output.jsonl" in done.stdout and "peak RSS of the job" in done.stdout


# ------------------------------------------------------------------- polling over time

class _Timed(FakeDashScope):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.polls: list[tuple[float, str]] = []  # (time, status before the poll)

    def _advance(self, batch, run):
        self.polls.append((self.clock(), batch["status"]))
        super()._advance(batch, run)


def test_a_job_polls_with_backoff_as_batches_advance_over_time(write_batch, tmp_path, monkeypatch):
    monkeypatch.delenv("BATCHPLAN_TEST_KILL_AT", raising=False)
    now = [1_800_000_000.0]  # one virtual clock for the job and the service: nothing sleeps

    def sleep(seconds):
        now[0] += seconds

    path = write_batch([line(f"r{i}", max_tokens=8) for i in range(2)])
    with _Timed(api_key="sk-time", steps=1, step_seconds=1800, clock=lambda: now[0]) as server, \
            BatchClient("sk-time", server.base_url) as client:
        report = batchplan.run_job([path], tmp_path / "job", client=client, poll_interval=60,
                                   sleep=sleep, clock=lambda: now[0])
    assert report.exit_code == 0
    times = [t for t, _ in server.polls]
    gaps = [round(b - a) for a, b in zip(times, times[1:])]
    (batch,) = server.batches.values()
    assert times[0] - batch["created_at"] == 60  # the first poll a minute after the create
    assert gaps[:3] == [90, 135, 202]  # then 1.5x while nothing changes
    assert max(gaps) <= 600  # at most 10x the first interval
    assert 60 in gaps[5:]  # back to the first pace after a change
    assert len(server.polls) < 4 * 1800 / 60  # far fewer polls than once a minute
