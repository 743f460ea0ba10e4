"""submit, status, list, wait, cancel and download, as a user drives them.

Every test runs the real CLI against FakeDashScope (a real HTTP server on
127.0.0.1) through the real ``openai`` SDK. The server's lifecycle is
deterministic (each retrieve advances a batch one step), so nothing sleeps.
Faults are injected on the server: 429/500 answers, dropped connections
before and after the server acted, hangs, and a process killed mid-submit.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading

import pytest

from batchplan.jobs.client import MissingKey, resolve_connection
from batchplan.jobs.ledger import Ledger, sha256_file
from batchplan.jobs.provenance import user_metadata
from batchplan.jobs.rules import parse_window
from tests.conftest import line
from tests.fakes.dashscope_server import FakeDashScope

API_KEY = "sk-lifecycle-7f3a9c2e5b1d4a60"
INTL_URL = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
CN_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def api(monkeypatch, home):
    """Start a FakeDashScope and point the CLI at it through the environment."""
    started = []

    def start(server_class=FakeDashScope, **kwargs):
        kwargs.setdefault("api_key", API_KEY)
        server = server_class(**kwargs).start()
        started.append(server)
        monkeypatch.setenv("DASHSCOPE_API_KEY", API_KEY)
        monkeypatch.setenv("DASHSCOPE_BASE_URL", server.base_url)
        monkeypatch.setenv("BATCHPLAN_HOME", str(home))
        for name in PROXY_VARS:  # loopback traffic goes direct
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(api):
    return api()


@pytest.fixture
def batch_file(write_batch):
    """Five valid qwen-plus requests with a max_tokens each."""
    return write_batch([line(f"req-{i}", max_tokens=100,
                             messages=[{"role": "user", "content": f"Question {i}?"}]) for i in range(5)])


def submit_ok(run, path, *args):
    result = run("submit", path, "--yes", *args)
    assert result.exit_code == 0, result.stderr
    return result


def only_batch(server):
    (batch,) = server.batches.values()
    return batch


def no_traceback(result):
    return "Traceback" not in result.stdout + result.stderr


def entries(home):
    with Ledger(home) as ledger:
        return ledger.entries()


# ------------------------------------------------------------------- the happy path

def test_submit_status_wait_download(run, api, batch_file, home, tmp_path):
    server = api(fail_custom_ids={"req-3"})
    result = submit_ok(run, batch_file, "--name", "nightly eval", "--description", "five questions", "--window", "2d")
    batch = only_batch(server)
    assert "TOTAL" in result.stdout and "batch cost (USD)" in result.stdout  # the compare table first
    assert f"submitted: {batch['id']}" in result.stdout
    assert batch["endpoint"] == "/v1/chat/completions"
    assert batch["completion_window"] == "2d"
    # The user's keys as given; batchplan's own (jobs.provenance) beside them.
    assert user_metadata(batch["metadata"]) == {"ds_name": "nightly eval", "ds_description": "five questions"}
    assert batch["metadata"]["batchplan_path"] == os.path.abspath(batch_file)
    assert server.files[batch["input_file_id"]]["bytes"] == batch_file.read_bytes()
    assert server.files[batch["input_file_id"]]["purpose"] == "batch"
    assert [r[:2] for r in server.requests] == [("POST", "/files"), ("POST", "/batches")]

    (entry,) = entries(home)
    assert entry.state == "created" and entry.batch_id == batch["id"]
    assert entry.input_file_id == batch["input_file_id"]
    assert entry.sha256 == sha256_file(batch_file)
    assert entry.path == str(batch_file) and entry.region == "intl" and entry.base_url == server.base_url
    assert entry.estimate["currency"] == "USD" and entry.estimate["upper_bound"] is True
    assert entry.estimate["requests"] == 5 and entry.estimate["output_tokens"] == 500

    status = run("status")  # no id: the ledger's latest
    assert status.exit_code == 0, status.stderr
    assert f"{batch['id']}: in_progress" in status.stdout
    assert "requests: 5 total, 0 completed, 0 failed" in status.stdout
    assert str(batch_file) in status.stdout  # what the ledger knows

    waited = run("wait", batch["id"], "--interval", "0")
    assert waited.exit_code == 0, waited.stderr
    assert f"{batch['id']}: completed" in waited.stdout
    assert "requests: 5 total, 4 completed, 1 failed" in waited.stdout
    assert "1 request(s) failed" in waited.stdout
    assert entries(home)[0].status == "completed"

    out = tmp_path / "results"
    got = run("download", batch["id"], "--out", out)
    assert got.exit_code == 0, got.stderr
    output = out / f"{batch['id']}.output.jsonl"
    errors = out / f"{batch['id']}.errors.jsonl"
    done = server.batches[batch["id"]]
    assert output.read_bytes() == server.files[done["output_file_id"]]["bytes"]
    assert errors.read_bytes() == server.files[done["error_file_id"]]["bytes"]
    assert sorted(json.loads(x)["custom_id"] for x in output.read_text().splitlines()) == [
        "req-0", "req-1", "req-2", "req-4"]
    assert [json.loads(x)["custom_id"] for x in errors.read_text().splitlines()] == ["req-3"]
    assert sorted(p.name for p in out.iterdir()) == sorted([output.name, errors.name])  # no temp files left


def test_status_json_and_list(run, server, batch_file, write_batch, home):
    submit_ok(run, batch_file)
    other = write_batch([line("x", max_tokens=10)], name="other.jsonl")
    submit_ok(run, other, "--name", "second")
    first_id, second_id = list(server.batches)

    doc = json.loads(run("status", first_id, "--json").stdout)
    assert doc["id"] == first_id and doc["status"] == "in_progress" and doc["request_counts"]["total"] == 5

    listed = run("list")
    assert listed.exit_code == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert second_id in rows[2] and first_id in rows[3]  # newest first, under the header
    assert str(other) in rows[2] and "second" in rows[2] and str(batch_file) in rows[3]
    page = json.loads(run("list", "--json", "--limit", "1").stdout)
    assert [b["id"] for b in page["data"]] == [second_id] and page["has_more"] is True
    assert f"--after {second_id}" in run("list", "--limit", "1").stdout

    local = run("list", "--local")
    assert local.exit_code == 0 and first_id in local.stdout and "created" in local.stdout
    docs = json.loads(run("list", "--local", "--json").stdout)
    assert [d["batch_id"] for d in docs] == [second_id, first_id]


def test_status_without_a_ledger_asks_for_an_id(run, server):
    result = run("status")
    assert result.exit_code == 2
    assert "no batch in the ledger" in result.stderr and "BATCH_ID" in result.stderr
    assert server.requests == []


# ------------------------------------------------------------------- guards

def test_invalid_file_is_refused_before_any_request(run, server, write_batch):
    path = write_batch([line("1", max_tokens=10), line("2", model="qwen-flash", max_tokens=10), line("1")])
    result = run("submit", path, "--yes")
    assert result.exit_code == 1
    assert "mixed_models" in result.stderr and "duplicate_custom_id" in result.stderr
    assert f"{path}:3: duplicate_custom_id" in result.stderr
    assert "not submitted" in result.stderr
    assert server.requests == []


def test_max_cost_refuses_over_budget_and_passes_within(run, server, batch_file):
    over = run("submit", batch_file, "--yes", "--max-cost", "0.0001")
    assert over.exit_code == 1
    assert "over --max-cost 0.0001" in over.stderr and "worst-case batch cost" in over.stderr
    assert server.requests == []

    within = run("submit", batch_file, "--yes", "--max-cost", "1")
    assert within.exit_code == 0, within.stderr
    assert "within budget" in within.stdout
    assert len(server.batches) == 1


def test_max_cost_is_checked_at_the_worst_case(run, server, write_batch):
    # No max_tokens: the worst case is the model's max output per request.
    path = write_batch([line(str(i)) for i in range(3)])
    result = run("submit", path, "--yes", "--max-cost", "0.01")
    assert result.exit_code == 1 and "over --max-cost" in result.stderr
    assert server.requests == []


def test_unpriced_model_under_a_budget_is_refused(run, server, write_batch, tmp_path):
    from batchplan.catalog.catalog import default_catalog

    intl = dict(default_catalog().raw["regions"]["intl"])
    intl["batch_models"] = [*intl["batch_models"], "acme-chat"]
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"regions": {"intl": intl}}))
    path = write_batch([line("1", model="acme-chat", max_tokens=10)])

    refused = run("submit", path, "--yes", "--prices", prices, "--max-cost", "100")
    assert refused.exit_code == 1
    assert "cost is unknown" in refused.stderr and "acme-chat" in refused.stderr
    assert server.requests == []
    # Without a budget an unknown cost is shown as unknown, never as zero.
    dry = run("submit", path, "--prices", prices, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "worst-case batch cost unknown" in dry.stdout


def test_without_a_terminal_it_refuses_unless_yes(run, server, batch_file):
    result = run("submit", batch_file)
    assert result.exit_code == 2
    assert "--yes" in result.stderr and "terminal" in result.stderr
    assert server.requests == []


def _submit_on_a_terminal(path, answer, env):
    """Run submit with a real pseudo-terminal as stdin and type ``answer``."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "batchplan", "submit", str(path)], stdin=terminal,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        os.write(controller, answer.encode() + b"\n")  # buffered by the terminal until read
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(terminal)
        os.close(controller)
    return proc.returncode, out.decode(), err.decode()


def test_on_a_terminal_it_asks_first(server, batch_file):
    env = dict(os.environ)
    code, out, err = _submit_on_a_terminal(batch_file, "n", env)
    assert code == 1, err
    assert "Submit 5 requests to" in err and "not submitted" in err
    assert server.requests == []
    code, out, err = _submit_on_a_terminal(batch_file, "y", env)
    assert code == 0, err
    assert f"submitted: {only_batch(server)['id']}" in out


def test_dry_run_sends_nothing_and_needs_no_key(run, server, batch_file, home, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    result = run("submit", batch_file, "--dry-run", "--max-cost", "1")
    assert result.exit_code == 0, result.stderr
    assert "TOTAL" in result.stdout and "within budget" in result.stdout
    assert "nothing was sent" in result.stdout and server.base_url in result.stdout
    assert sha256_file(batch_file) in result.stdout
    assert server.requests == []
    assert entries(home) == []


def test_region_picks_the_documented_base_url(run, batch_file, monkeypatch, tmp_path):
    env = {"DASHSCOPE_API_KEY": "k"}
    assert resolve_connection("intl", None, env).base_url == INTL_URL
    assert resolve_connection("cn", None, env).base_url == CN_URL
    assert resolve_connection(None, None, env).base_url == INTL_URL
    assert resolve_connection(None, None, env, fallback_base_url=CN_URL).base_url == CN_URL
    assert resolve_connection("cn", None, {**env, "DASHSCOPE_BASE_URL": "http://127.0.0.1:9/x/"}).base_url == "http://127.0.0.1:9/x"
    assert resolve_connection("cn", "https://proxy.example/v1", {**env, "DASHSCOPE_BASE_URL": "http://a/b"}).base_url == "https://proxy.example/v1"
    base_url, key = resolve_connection("cn", None, env)
    assert (base_url, key) == (CN_URL, "k")
    assert "sk-repr-secret" not in repr(resolve_connection("cn", None, {"DASHSCOPE_API_KEY": "sk-repr-secret"}))
    with pytest.raises(MissingKey):
        resolve_connection("intl", None, {})
    # Through the CLI, without the network: a dry run says where it would go.
    monkeypatch.delenv("DASHSCOPE_BASE_URL", raising=False)
    monkeypatch.setenv("BATCHPLAN_HOME", str(tmp_path / "home"))
    cn = run("submit", batch_file, "--region", "cn", "--dry-run")
    assert cn.exit_code == 0, cn.stderr
    assert f"to {CN_URL} (/v1/chat/completions, window 24h)" in cn.stdout
    assert "real-time cost (CNY)" in cn.stdout
    intl = run("submit", batch_file, "--dry-run")
    assert f"to {INTL_URL} " in intl.stdout


@pytest.mark.parametrize("window, sent", [("24h", "24h"), ("336h", "336h"), ("1d", "1d"), ("14D", "14d")])
def test_completion_window_accepted(window, sent):
    assert parse_window(window) == sent


@pytest.mark.parametrize("window", ["23h", "337h", "15d", "0d", "24", "1w", "1.5d", ""])
def test_completion_window_refused(run, server, batch_file, window):
    with pytest.raises(ValueError):
        parse_window(window)
    result = run("submit", batch_file, "--yes", "--window", window)
    assert result.exit_code == 2 and "--window" in result.stderr
    assert server.requests == []


def test_metadata_limits_are_checked_locally(run, server, batch_file):
    too_long = run("submit", batch_file, "--yes", "--name", "n" * 101)
    assert too_long.exit_code == 2 and "at most 100" in too_long.stderr
    too_long = run("submit", batch_file, "--yes", "--description", "d" * 201)
    assert too_long.exit_code == 2 and "at most 200" in too_long.stderr
    assert server.requests == []
    submit_ok(run, batch_file, "--name", "n" * 100, "--description", "d" * 200)
    assert user_metadata(only_batch(server)["metadata"]) == {"ds_name": "n" * 100, "ds_description": "d" * 200}


def test_test_flag_submits_a_free_copy_for_the_test_model(run, server, batch_file, home):
    result = submit_ok(run, batch_file, "--test")
    assert "--test: submitting a copy for batch-test-model on /v1/chat/ds-test" in result.stdout
    batch = only_batch(server)
    assert batch["endpoint"] == "/v1/chat/ds-test"
    sent = server.file_lines(batch["input_file_id"])
    original = [json.loads(x) for x in batch_file.read_text().splitlines()]
    assert [s["custom_id"] for s in sent] == [o["custom_id"] for o in original]
    assert {s["url"] for s in sent} == {"/v1/chat/ds-test"}
    assert {s["body"]["model"] for s in sent} == {"batch-test-model"}
    assert [s["body"]["messages"] for s in sent] == [o["body"]["messages"] for o in original]
    assert batch_file.read_text().count("qwen-plus") == 5  # the user's file is untouched
    (entry,) = entries(home)
    assert entry.test is True and entry.estimate["batch_cost"] == "0"

    waited = run("wait", batch["id"], "--interval", "0")
    assert waited.exit_code == 0
    out = server.file_lines(server.batches[batch["id"]]["output_file_id"])
    assert {o["response"]["body"]["choices"][0]["message"]["content"] for o in out} == {"This is a test result."}


def test_test_flag_refuses_a_file_over_the_test_limits(run, server, write_batch):
    path = write_batch([line(str(i), max_tokens=10) for i in range(101)])
    result = run("submit", path, "--yes", "--test")
    assert result.exit_code == 1
    assert "test_file_too_large" in result.stderr and "at most 100 lines" in result.stderr
    assert server.requests == []


def test_same_content_is_refused_naming_the_earlier_batch(run, server, batch_file, tmp_path):
    submit_ok(run, batch_file)
    first = only_batch(server)["id"]
    copy = tmp_path / "renamed.jsonl"
    copy.write_bytes(batch_file.read_bytes())  # same content under another name
    again = run("submit", copy, "--yes")
    assert again.exit_code == 1
    assert first in again.stderr and "--force" in again.stderr
    assert len(server.batches) == 1 and server.count("POST", "/files") == 1

    forced = run("submit", copy, "--yes", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert len(server.batches) == 2 and server.count("POST", "/files") == 2


# ------------------------------------------------------------------- the key

def test_missing_key_is_a_clear_error(run, server, batch_file, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    for args in (("submit", batch_file, "--yes"), ("status", "batch_x"), ("list",), ("wait", "batch_x"),
                 ("cancel", "batch_x"), ("download", "batch_x")):
        result = run(*args)
        assert result.exit_code == 2, args
        assert "DASHSCOPE_API_KEY is not set" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and no_traceback(result)
    assert server.requests == []


def test_the_key_never_appears_in_output_or_the_ledger(run, server, batch_file, home, tmp_path, monkeypatch):
    outputs = []

    def go(*args):
        result = run(*args)
        outputs.append(result.stdout + result.stderr)
        return result

    go("submit", batch_file, "--yes", "--name", "k")
    batch_id = only_batch(server)["id"]
    server.inject("GET", f"/batches/{batch_id}", "500", times=3)
    assert go("status", batch_id).exit_code == 2  # an error message too
    server.inject("POST", "/batches", "drop_after_commit")
    go("submit", batch_file, "--yes", "--force")
    go("wait", batch_id, "--interval", "0")
    go("download", batch_id, "--out", tmp_path / "out")
    go("list")
    go("list", "--local", "--json")
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-wrong-" + API_KEY)
    refused = go("status", batch_id)
    assert refused.exit_code == 2 and "401" in refused.stderr and no_traceback(refused)

    text = "\n".join(outputs)
    assert batch_id in text
    assert API_KEY not in text
    stored = [p for p in home.rglob("*") if p.is_file()]
    assert stored  # the ledger exists
    for path in stored + [p for p in (tmp_path / "out").rglob("*") if p.is_file()]:
        assert API_KEY.encode() not in path.read_bytes(), path


# ------------------------------------------------------------------- faults: retries

def test_429_and_500_are_retried(run, server, batch_file):
    server.inject("POST", "/files", "500")
    server.inject("POST", "/batches", "429")
    result = submit_ok(run, batch_file)
    assert [r.status for r in server.requests if r.path == "/files"] == [500, 200]
    assert [r.status for r in server.requests if r[:2] == ("POST", "/batches")] == [429, 200]
    assert len(server.files) == 1 and len(server.batches) == 1
    assert f"submitted: {only_batch(server)['id']}" in result.stdout


def test_500_on_create_then_success_makes_one_batch(run, server, batch_file):
    server.inject("POST", "/batches", "500")
    submit_ok(run, batch_file)
    assert server.count("POST", "/batches") == 2
    assert len(server.batches) == 1


def test_500_while_polling_is_retried(run, server, batch_file):
    submit_ok(run, batch_file)
    batch_id = only_batch(server)["id"]
    server.inject("GET", f"/batches/{batch_id}", "500", times=2)
    result = run("wait", batch_id, "--interval", "0")
    assert result.exit_code == 0, result.stderr
    assert [r.status for r in server.requests if r.path == f"/batches/{batch_id}"][:3] == [500, 500, 200]


# ------------------------------------------------------------------- faults: crash recovery

def test_lost_create_answer_is_found_without_a_duplicate(run, server, batch_file, home):
    server.inject("POST", "/batches", "drop_after_commit")
    result = submit_ok(run, batch_file)
    batch = only_batch(server)
    assert "answer to the create was lost" in result.stdout and batch["id"] in result.stdout
    assert server.count("POST", "/batches") == 1  # looked up, not created again
    (entry,) = entries(home)
    assert entry.state == "created" and entry.batch_id == batch["id"]


def test_lost_answer_and_failed_lookup_are_recovered_by_the_next_submit(run, server, batch_file, home):
    server.inject("POST", "/batches", "drop_after_commit")
    server.inject("GET", "/batches", "500", times=3)  # the lookup fails too (3 attempts)
    first = run("submit", batch_file, "--yes")
    assert first.exit_code == 2 and no_traceback(first)
    assert "may exist" in first.stderr and "run the same command again" in first.stderr
    assert len(server.batches) == 1
    (entry,) = entries(home)
    assert entry.state == "uploaded" and entry.batch_id is None

    second = run("submit", batch_file, "--yes")
    assert second.exit_code == 0, second.stderr
    batch = only_batch(server)
    assert f"recovered: {batch['id']}" in second.stdout and "no new batch" in second.stdout
    assert server.count("POST", "/batches") == 1 and server.count("POST", "/files") == 1
    (entry,) = entries(home)
    assert entry.state == "created" and entry.batch_id == batch["id"]

    third = run("submit", batch_file, "--yes")
    assert third.exit_code == 1 and batch["id"] in third.stderr


def test_create_failing_after_upload_is_finished_by_the_next_submit(run, server, batch_file, home):
    server.inject("POST", "/batches", "500", times=3)
    first = run("submit", batch_file, "--yes")
    assert first.exit_code == 2 and "HTTP 500" in first.stderr and no_traceback(first)
    assert server.batches == {} and len(server.files) == 1
    (entry,) = entries(home)
    assert entry.state == "uploaded"

    second = run("submit", batch_file, "--yes")
    assert second.exit_code == 0, second.stderr
    assert "reusing input file" in second.stderr
    assert server.count("POST", "/files") == 1  # the upload is reused
    assert only_batch(server)["input_file_id"] == entry.input_file_id


def test_an_interrupted_forced_resubmit_creates_nothing_without_force(run, server, batch_file, home):
    submit_ok(run, batch_file)
    (first,) = server.batches
    # A --force resubmit dies after its upload, before any batch exists ...
    server.inject("POST", "/batches", "500", times=3)
    assert run("submit", batch_file, "--yes", "--force").exit_code == 2
    # ... and a plain submit only looks for that batch: none, so it refuses.
    plain = run("submit", batch_file, "--yes")
    assert plain.exit_code == 1 and first in plain.stderr and "--force" in plain.stderr
    assert list(server.batches) == [first]
    assert [e.state for e in entries(home)] == ["failed", "created"]

    # A --force resubmit whose batch was made but not recorded is recovered.
    server.inject("POST", "/batches", "drop_after_commit")
    server.inject("GET", "/batches", "500", times=3)
    assert run("submit", batch_file, "--yes", "--force").exit_code == 2
    second = [b for b in server.batches if b != first]
    assert len(second) == 1
    plain = run("submit", batch_file, "--yes")
    assert plain.exit_code == 0 and f"recovered: {second[0]}" in plain.stdout
    assert len(server.batches) == 2


def test_connection_dropped_before_the_create_is_retried(run, server, batch_file):
    server.inject("POST", "/batches", "drop_before_commit")
    submit_ok(run, batch_file)
    assert server.count("POST", "/batches") == 2 and len(server.batches) == 1


def test_a_live_submission_elsewhere_is_not_taken_over(run, server, batch_file, home):
    import sqlite3

    server.inject("POST", "/batches", "500", times=3)
    assert run("submit", batch_file, "--yes").exit_code == 2
    with sqlite3.connect(home / "ledger.sqlite3") as db:  # as if another live process owned it
        db.execute("UPDATE submissions SET pid=?", (os.getppid(),))
    result = run("submit", batch_file, "--yes")
    assert result.exit_code == 2 and f"process {os.getppid()} is submitting" in result.stderr
    assert server.batches == {}


class _Signalling(FakeDashScope):
    """Sets ``created`` once a create was carried out and its answer withheld."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.created = threading.Event()

    def _log(self, method, path, status):
        super()._log(method, path, status)
        if (method, path, status) == ("POST", "/batches", None):
            self.created.set()


def test_process_killed_after_the_create_is_recovered(run, api, batch_file, home):
    server = api(_Signalling)
    server.inject("POST", "/batches", "hang_after_commit", seconds=120)
    proc = subprocess.Popen([sys.executable, "-m", "batchplan", "submit", str(batch_file), "--yes"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert server.created.wait(120), "the create never reached the server"
    finally:
        proc.kill()
        proc.wait()
    batch = only_batch(server)
    (entry,) = entries(home)
    assert entry.state == "uploaded" and entry.input_file_id == batch["input_file_id"]

    result = run("submit", batch_file, "--yes")
    assert result.exit_code == 0, result.stderr
    assert f"recovered: {batch['id']}" in result.stdout
    assert len(server.batches) == 1 and server.count("POST", "/batches") == 1
    assert entries(home)[0].batch_id == batch["id"]


# ------------------------------------------------------------------- faults: timeouts

def test_a_timeout_is_one_line(run, server, batch_file):
    submit_ok(run, batch_file)
    batch_id = only_batch(server)["id"]
    server.inject("GET", f"/batches/{batch_id}", "hang", seconds=60)
    result = run("status", batch_id, "--request-timeout", "0.3", "--max-retries", "0")
    assert result.exit_code == 2
    assert "timed out" in result.stderr and no_traceback(result)
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_create_that_times_out_is_looked_up_then_retried(run, server, batch_file):
    server.inject("POST", "/batches", "hang", seconds=60)
    result = run("submit", batch_file, "--yes", "--request-timeout", "0.5")
    assert result.exit_code == 0, result.stderr
    assert server.count("POST", "/batches") == 2 and len(server.batches) == 1
    assert server.count("GET", "/batches") >= 1  # looked for it before trying again


# ------------------------------------------------------------------- the service's verdicts

def test_validation_failure_on_the_service_shows_its_lines(run, server, batch_file, tmp_path):
    submit_ok(run, batch_file)
    batch_id = only_batch(server)["id"]
    message = "The provided url '/v1/chat/completion' is not supported by the Batch API."
    server.force_validation_failure(batch_id, "url_not_found", message, line=2)

    status = run("status", batch_id)
    assert status.exit_code == 0
    assert f"{batch_id}: failed" in status.stdout
    assert f"line 2: url_not_found: {message}" in status.stdout

    waited = run("wait", batch_id, "--interval", "0")
    assert waited.exit_code == 1 and f"line 2: url_not_found: {message}" in waited.stdout

    got = run("download", batch_id, "--out", tmp_path / "out")
    assert got.exit_code == 1
    assert f"line 2: url_not_found: {message}" in got.stderr and "no output or error file" in got.stderr
    assert not (tmp_path / "out").exists()


def test_cancel(run, server, batch_file, tmp_path):
    submit_ok(run, batch_file)
    batch_id = only_batch(server)["id"]
    assert "in_progress" in run("status", batch_id).stdout
    result = run("cancel", batch_id)
    assert result.exit_code == 0, result.stderr
    assert f"{batch_id}: cancelling" in result.stdout
    assert server.count("POST", f"/batches/{batch_id}/cancel") == 1
    waited = run("wait", batch_id, "--interval", "0")
    assert waited.exit_code == 1 and f"{batch_id}: cancelled" in waited.stdout
    again = run("cancel", batch_id)  # the service refuses a finished batch
    assert again.exit_code == 2 and "HTTP 400" in again.stderr and no_traceback(again)
    got = run("download", batch_id, "--out", tmp_path)
    assert got.exit_code == 0 and (tmp_path / f"{batch_id}.errors.jsonl").exists()


def test_wait_gives_up_at_its_timeout(run, server, batch_file):
    submit_ok(run, batch_file)
    batch_id = only_batch(server)["id"]
    result = run("wait", batch_id, "--interval", "0", "--timeout", "0")
    assert result.exit_code == 3
    assert "still in_progress" in result.stderr and "keeps running" in result.stderr


def test_download_never_overwrites_without_force(run, server, batch_file, tmp_path):
    submit_ok(run, batch_file)
    batch_id = only_batch(server)["id"]
    early = run("download", batch_id, "--out", tmp_path)
    assert early.exit_code == 1 and "still" in early.stderr and "batchplan wait" in early.stderr
    assert run("wait", batch_id, "--interval", "0").exit_code == 0

    target = tmp_path / f"{batch_id}.output.jsonl"
    target.write_text("mine\n")
    refused = run("download", batch_id, "--out", tmp_path)
    assert refused.exit_code == 2 and "already exists" in refused.stderr and "--force" in refused.stderr
    assert target.read_text() == "mine\n"
    assert server.count("GET", "/files/") == 0

    forced = run("download", batch_id, "--out", tmp_path, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert target.read_bytes() == server.files[server.batches[batch_id]["output_file_id"]]["bytes"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
