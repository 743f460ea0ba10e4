"""`batchplan run`: a whole job against FakeDashScope (a real HTTP server on
127.0.0.1) through the real ``openai`` SDK.

The fake advances each batch one step per retrieve and the tests poll with
``--poll 0``, so nothing sleeps. Kills are exact: ``$BATCHPLAN_TEST_KILL_AT``
makes the CLI SIGKILL itself at a named step (jobs.run.checkpoint).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from decimal import Decimal

import pytest

from batchplan.jobs.job_store import JobStore
from batchplan.planning.output import OutputAssumption
from batchplan.planning.planner import plan_file
from tests.conftest import line
from tests.fakes.dashscope_server import TERMINAL_STATUSES, FakeDashScope

API_KEY = "sk-run-4d2c8e1f9a7b3c50e6"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class Counting(FakeDashScope):
    """Remembers, at each create, how many batches were unfinished."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unfinished_at_create: list[int] = []

    def _create_batch(self, body):
        self.unfinished_at_create.append(sum(b["status"] not in TERMINAL_STATUSES for b in self.batches.values()))
        return super()._create_batch(body)


@pytest.fixture
def api(monkeypatch, tmp_path):
    started = []

    def start(server_class=Counting, **kwargs):
        kwargs.setdefault("api_key", API_KEY)
        server = server_class(**kwargs).start()
        started.append(server)
        monkeypatch.setenv("DASHSCOPE_API_KEY", API_KEY)
        monkeypatch.setenv("DASHSCOPE_BASE_URL", server.base_url)
        monkeypatch.setenv("BATCHPLAN_HOME", str(tmp_path / "home"))
        for name in PROXY_VARS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.delenv("BATCHPLAN_TEST_KILL_AT", raising=False)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def nine(write_batch):
    """Nine valid requests: three parts at --max-lines 3."""
    return write_batch([line(f"req-{i}", max_tokens=20, messages=[{"role": "user", "content": f"Question {i}?"}])
                        for i in range(9)])


def run_job(run, out, *files, lines=3, extra=()):
    return run("run", *files, "--out", out, "--yes", "--poll", "0", "--max-lines", str(lines), *extra)


def ids(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(raw)["custom_id"] for raw in handle if raw.strip()]


def outcome(out):
    return ids(out / "output.jsonl"), ids(out / "errors.jsonl")


def assert_each_once(out, expected):
    ok, failed = outcome(out)
    assert sorted(ok + failed) == sorted(expected)  # each request in exactly one file, once
    assert len(set(ok)) == len(ok) and len(set(failed)) == len(failed)
    order = {cid: i for i, cid in enumerate(expected)}
    assert ok == sorted(ok, key=order.get)  # input order


def errors(out):
    with open(out / "errors.jsonl", encoding="utf-8") as handle:
        return {doc["custom_id"]: doc for doc in map(json.loads, handle)}


def report(out):
    with open(out / "report.json", encoding="utf-8") as handle:
        return json.load(handle)


EXPECTED = [f"req-{i}" for i in range(9)]


# ------------------------------------------------------------------- end to end

def test_a_three_part_job_end_to_end(run, api, nine, tmp_path):
    server = api()
    out = tmp_path / "job"
    result = run_job(run, out, nine, extra=("--parallel", "2"))
    assert result.exit_code == 0, result.stderr
    assert len(server.batches) == 3 and server.count("POST", "/batches") == 3
    assert max(server.unfinished_at_create) <= 1  # at most 2 unfinished, counting the one being created
    assert_each_once(out, EXPECTED)
    ok, failed = outcome(out)
    assert ok == EXPECTED and failed == []
    # Lines are the Batch API's own output lines, byte for byte.
    first = json.loads((out / "output.jsonl").read_text().splitlines()[0])
    assert first["response"]["status_code"] == 200 and first["error"] is None
    # Each part is a file of three lines, byte for byte from the input.
    parts = [b for b in server.batches.values()]
    assert all(b["request_counts"]["total"] == 3 for b in parts)
    assert all((b["metadata"] or {}).get("batchplan_part") for b in parts)
    # Remote files are gone once the results are on disk.
    assert server.files == {}
    doc = report(out)
    assert doc["schema"] == "batchplan.job/1" and doc["exit_code"] == 0
    assert doc["requests"]["succeeded"] == 9 and doc["requests"]["total"] == 9
    total = doc["reconcile"]["total"]
    assert total["succeeded"] == 9 and Decimal(total["batch_cost"]["actual"]) > 0
    assert Decimal(doc["cost"]["actual"]) == Decimal(total["batch_cost"]["actual"])
    assert Decimal(doc["cost"]["actual"]) <= Decimal(doc["cost"]["worst_case"])
    assert "TOTAL" in result.stdout and "batch cost actual" in result.stdout
    assert (out / "report.html").exists()
    assert "\r" not in result.stderr and "req/s" not in result.stderr  # no live display without a terminal

    status = run("job", "status", out)
    assert status.exit_code == 0, status.stderr
    assert "9 succeeded" in status.stdout and status.stdout.count("collected") == 3

    again = run_job(run, out, nine)  # a finished job: nothing new
    assert again.exit_code == 0 and len(server.batches) == 3


def test_keep_remote_keeps_the_service_files(run, api, nine, tmp_path):
    server = api()
    result = run_job(run, tmp_path / "job", nine, extra=("--keep-remote",))
    assert result.exit_code == 0, result.stderr
    assert len(server.files) == 6  # three inputs, three outputs


def test_files_are_merged_in_input_order_across_files(run, api, write_batch, tmp_path):
    api()
    a = write_batch([line(f"a-{i}", max_tokens=5) for i in range(4)], name="a.jsonl")
    b = write_batch([line(f"b-{i}", max_tokens=5, model="qwen-turbo") for i in range(3)], name="b.jsonl")
    out = tmp_path / "job"
    result = run_job(run, out, a, b, lines=2)
    assert result.exit_code == 0, result.stderr
    assert ids(out / "output.jsonl") == [f"a-{i}" for i in range(4)] + [f"b-{i}" for i in range(3)]
    assert {m["model"] for m in report(out)["reconcile"]["models"]} == {"qwen-plus", "qwen-turbo"}


# ------------------------------------------------------------------- guard and input

def test_bad_lines_are_reported_and_never_sent(run, api, write_batch, tmp_path):
    server = api()
    path = write_batch([line("ok-1"), "not json", line("ok-2"), line("ok-1")])
    out = tmp_path / "job"
    result = run_job(run, out, path)
    assert result.exit_code == 0, result.stderr
    assert f"{path}:2: not valid JSON" in result.stderr
    assert f"{path}:4: custom_id 'ok-1' is already used on line 1" in result.stderr
    sent = [request["custom_id"] for batch_id in server.batches for request in server._runs[batch_id].lines]
    assert sent == ["ok-1", "ok-2"]
    assert ids(out / "output.jsonl") == ["ok-1", "ok-2"]


def test_a_custom_id_another_file_used_first_is_a_bad_line(run, api, write_batch, tmp_path):
    api()
    a = write_batch([line("x-1"), line("x-2")], name="a.jsonl")
    b = write_batch([line("x-2"), line("y-1")], name="b.jsonl")
    c = write_batch([line("x-1"), line("x-2")], name="c.jsonl")  # nothing of it is left to send
    out = tmp_path / "job"
    result = run_job(run, out, a, b, c)
    assert result.exit_code == 0, result.stderr
    assert f"{b}:1: custom_id 'x-2' is already used on {a}:2" in result.stderr
    assert f"{c}:1: custom_id 'x-1' is already used on {a}:1" in result.stderr
    assert ids(out / "output.jsonl") == ["x-1", "x-2", "y-1"]
    assert report(out)["requests"]["invalid_lines"] == 3


def test_an_account_error_on_create_stops_the_job(run, api, nine, tmp_path):
    server = api()
    server.inject("POST", "/batches", "400", code="Arrearage",
                  message="Access denied, plesase make sure your account is in good standing.")
    out = tmp_path / "job"
    result = run_job(run, out, nine)
    assert result.exit_code == 3, result.stderr
    assert "the account cannot run batches" in result.stderr and "good standing" in result.stderr
    assert server.batches == {}
    again = run_job(run, out, nine)  # topped up: the same command goes on
    assert again.exit_code == 0, again.stderr
    assert len(server.batches) == 3


def test_over_the_budget_is_refused_before_anything_is_sent(run, api, nine, tmp_path):
    server = api()
    result = run_job(run, tmp_path / "job", nine, extra=("--max-cost", "0.00001"))
    assert result.exit_code == 2
    assert "over the budget" in result.stderr and "Traceback" not in result.stderr
    assert server.requests == []


def test_without_a_terminal_it_needs_yes(run, api, nine, tmp_path):
    server = api()
    result = run("run", nine, "--out", tmp_path / "job", "--poll", "0")
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert server.requests == []


def test_changed_input_under_the_same_dir_is_refused(run, api, nine, tmp_path):
    server = api()
    out = tmp_path / "job"
    assert run_job(run, out, nine).exit_code == 0
    nine.write_text(nine.read_text().replace("Question 1?", "Question one?"))
    result = run_job(run, out, nine)
    assert result.exit_code == 2 and "holds another job" in result.stderr
    assert len(server.batches) == 3


def test_standard_input_is_saved_in_the_job_and_found_again_on_a_rerun(run, api, nine, tmp_path):
    server = api()
    out = tmp_path / "job"
    data = nine.read_bytes()
    result = run("run", "-", "--out", out, "--yes", "--poll", "0", "--max-lines", "3", input=data)
    assert result.exit_code == 0, result.stderr
    saved = list((out / "input").iterdir())
    assert len(saved) == 1 and saved[0].read_bytes() == data and saved[0].name.startswith("stdin-")
    assert ids(out / "output.jsonl") == EXPECTED and len(server.batches) == 3
    # The same bytes piped again: the same job, nothing created twice.
    again = run("run", "-", "--out", out, "--yes", "--poll", "0", "--max-lines", "3", input=data)
    assert again.exit_code == 0, again.stderr
    assert len(server.batches) == 3 and list((out / "input").iterdir()) == saved
    # Other bytes: another job, refused, and the folder left as it was.
    other = run("run", "-", "--out", out, "--yes", "--poll", "0", "--max-lines", "3", input=data.replace(b"Question 1?", b"Q1?"))
    assert other.exit_code == 2 and "holds another job" in other.stderr
    assert list((out / "input").iterdir()) == saved and len(server.batches) == 3
    # Nothing piped: one line, and nothing left behind.
    empty = run("run", "-", "--out", tmp_path / "empty", "--yes", "--poll", "0", input=b"")
    assert empty.exit_code == 2 and "standard input is empty" in empty.stderr
    assert list((tmp_path / "empty" / "input").iterdir()) == []


def test_the_budget_reservation_refuses_a_part(run, api, nine, tmp_path):
    # The service bills far more prompt tokens than the plan counted, so the
    # first part's actual cost passes its reservation and the next part's
    # worst case no longer fits the budget.
    server = api(prompt_tokens_fn=lambda body: 3000)
    worst = plan_file(str(nine), output=OutputAssumption()).plan.total().batch_cost
    out = tmp_path / "job"
    result = run_job(run, out, nine, extra=("--parallel", "1", "--max-cost", str(worst)))
    assert result.exit_code == 3, result.stderr
    assert "would take the committed cost" in result.stderr and "not created" in result.stderr
    assert len(server.batches) == 1
    doc = report(out)
    first, second = doc["parts"][:2]
    assert Decimal(first["reserved"]) <= worst  # created within the budget
    assert Decimal(first["actual"]) > Decimal(first["reserved"])  # billed past its worst case
    assert Decimal(first["actual"]) + Decimal(second["reserved"]) > worst and second["batch_id"] is None
    ok, failed = outcome(out)
    assert ok == EXPECTED[:3] and failed == []
    assert doc["requests"]["not_run"] == 6

    more = run_job(run, out, nine, extra=("--max-cost", "10"))  # a larger budget resumes it
    assert more.exit_code == 0, more.stderr
    assert len(server.batches) == 3
    assert_each_once(out, EXPECTED)


# ------------------------------------------------------------------- faults

def test_a_throttled_create_and_a_dropped_create_answer(run, api, nine, tmp_path):
    server = api()
    server.inject("POST", "/batches", "429")
    server.inject("POST", "/batches", "drop_after_commit")
    out = tmp_path / "job"
    result = run_job(run, out, nine)
    assert result.exit_code == 0, result.stderr
    assert len(server.batches) == 3  # the dropped answer's batch was found, not made again
    assert server.count("POST", "/batches", 429) == 1
    assert_each_once(out, EXPECTED)


def test_an_expired_part_that_returned_half_its_lines(run, api, write_batch, tmp_path):
    server = api(expire_batches={1: 0.5})
    path = write_batch([line(f"req-{i}", max_tokens=10) for i in range(8)])
    out = tmp_path / "job"
    result = run_job(run, out, path, lines=4)
    assert result.exit_code == 0, result.stderr
    first = next(iter(server.batches.values()))
    assert first["status"] == "expired" and first["request_counts"]["completed"] == 2
    assert len(server.batches) == 3  # two parts, and one retry part for the two left undone
    retry = list(server.batches.values())[2]
    assert retry["request_counts"]["total"] == 2
    assert_each_once(out, [f"req-{i}" for i in range(8)])
    parts = report(out)["parts"]
    assert parts[0]["status"] == "expired" and parts[0]["succeeded"] == 2 and parts[0]["retried"] == 2


def test_a_retryable_and_a_non_retryable_line_error(run, api, nine, tmp_path):
    server = api(fail_custom_ids={
        "req-1": {"status_code": 500, "code": "InternalError", "message": "inference internal error", "times": 1},
        "req-4": {"status_code": 400, "code": "InvalidParameter", "message": "Range of input length should be [1, 8192]"},
    })
    out = tmp_path / "job"
    result = run_job(run, out, nine)
    assert result.exit_code == 1, result.stderr
    ok, failed = outcome(out)
    assert failed == ["req-4"] and "req-1" in ok
    assert_each_once(out, EXPECTED)
    assert len(server.batches) == 4  # three parts and one retry part holding req-1 only
    assert list(server.batches.values())[3]["request_counts"]["total"] == 1
    err = errors(out)["req-4"]
    assert err["error"]["code"] == "InvalidParameter" and err["attempts"] == 1 and err["retryable"] is False
    assert err["line"] == 5 and err["file"] == str(nine)


class FirstFailsValidation(Counting):
    def _create_batch(self, body):
        response = super()._create_batch(body)
        if len(self.batches) == 1:
            batch_id = next(iter(self.batches))
            self.force_validation_failure(batch_id, "url_not_found", "The provided url is not supported.")
        return response


def test_a_part_the_service_refuses_at_validation(run, api, nine, tmp_path):
    server = api(FirstFailsValidation)
    out = tmp_path / "job"
    result = run_job(run, out, nine)
    assert result.exit_code == 1, result.stderr
    assert next(iter(server.batches.values()))["status"] == "failed"
    assert len(server.batches) == 3  # a validation failure is not retried
    ok, failed = outcome(out)
    assert failed == EXPECTED[:3] and ok == EXPECTED[3:]
    assert {e["error"]["code"] for e in errors(out).values()} == {"url_not_found"}
    assert report(out)["parts"][0]["actual"] == "0"  # nothing ran, nothing billed


def test_out_of_retries_stops_unfinished_and_a_rerun_tries_again(run, api, nine, tmp_path):
    api(fail_custom_ids={"req-2": {"status_code": 503, "code": "ModelUnavailable", "message": "busy", "times": 3}})
    out = tmp_path / "job"
    result = run_job(run, out, nine, extra=("--retries", "1"))
    assert result.exit_code == 3, result.stderr
    assert "out of retries" in result.stderr
    assert errors(out)["req-2"]["retryable"] is True
    assert_each_once(out, EXPECTED)
    again = run_job(run, out, nine, extra=("--retries", "1"))
    assert again.exit_code == 0, again.stderr
    assert ids(out / "errors.jsonl") == [] and ids(out / "output.jsonl") == EXPECTED


def test_an_account_error_stops_the_job(run, api, nine, tmp_path):
    server = api(fail_custom_ids={"req-0": {"status_code": 400, "code": "Arrearage",
                                            "message": "Access denied, plesase make sure your account is in good standing."}})
    out = tmp_path / "job"
    result = run_job(run, out, nine, extra=("--parallel", "1"))
    assert result.exit_code == 3, result.stderr
    assert "account" in result.stderr and "Arrearage" in result.stderr
    assert len(server.batches) == 1  # nothing more was created


def test_time_limit_then_cancel_then_resume(run, api, nine, tmp_path):
    server = api()
    out = tmp_path / "job"
    result = run_job(run, out, nine, extra=("--time-limit", "0"))
    assert result.exit_code == 3, result.stderr
    assert "time limit" in result.stderr
    running = [b for b in server.batches.values() if b["status"] not in TERMINAL_STATUSES]
    assert running
    cancelled = run("job", "cancel", out)
    assert cancelled.exit_code == 0, cancelled.stderr
    assert all(b["status"] in ("cancelling", "cancelled") for b in running)
    again = run_job(run, out, nine)
    assert again.exit_code == 0, again.stderr
    assert_each_once(out, EXPECTED)


# ------------------------------------------------------------------- crashes

def _cli(out, path, step, server):
    env = dict(os.environ, BATCHPLAN_TEST_KILL_AT=step)
    return subprocess.run([sys.executable, "-m", "batchplan", "run", str(path), "--out", str(out), "--yes",
                           "--poll", "0", "--max-lines", "3", "--parallel", "1", "-q"],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)


@pytest.mark.parametrize("step", ["after_upload_intent", "after_create", "after_download", "after_collect",
                                  "during_merge"])
def test_sigkill_at_any_step_then_resume(run, api, nine, tmp_path, step):
    server = api()
    out = tmp_path / "job"
    killed = _cli(out, nine, step, server)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if step == "during_merge":
        assert not (out / "output.jsonl").exists()  # never half a file
        assert len(server.batches) == 3
    resumed = run_job(run, out, nine)
    assert resumed.exit_code == 0, resumed.stderr
    assert len(server.batches) == 3 and server.count("POST", "/batches") == 3  # one batch per part
    assert_each_once(out, EXPECTED)
    assert ids(out / "output.jsonl") == EXPECTED
    assert server.files == {}  # every remote file deleted once safe, also those of the killed run


def test_ctrl_c_detaches_and_says_how_to_resume(run, api, nine, tmp_path):
    server = api()
    out = tmp_path / "job"
    env = dict(os.environ, BATCHPLAN_TEST_KILL_AT="after_create", BATCHPLAN_TEST_KILL_AT_SIGNAL="INT")
    stopped = subprocess.run([sys.executable, "-m", "batchplan", "run", str(nine), "--out", str(out), "--yes",
                              "--poll", "0", "--max-lines", "3", "--parallel", "1"],
                             env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert stopped.returncode == 3, stopped.stderr
    assert "interrupted" in stopped.stderr and "run the same command again" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    (batch,) = server.batches.values()
    assert batch["status"] not in TERMINAL_STATUSES  # it keeps running
    resumed = run_job(run, out, nine)
    assert resumed.exit_code == 0, resumed.stderr
    assert len(server.batches) == 3
    assert_each_once(out, EXPECTED)


# ------------------------------------------------------------------- secrets

def test_the_api_key_is_never_printed_or_stored(run, api, nine, tmp_path):
    server = api(fail_custom_ids={"req-3"})
    server.inject("POST", "/batches", "500")
    out = tmp_path / "job"
    result = run_job(run, out, nine)
    assert result.exit_code == 1
    assert API_KEY not in result.stdout + result.stderr
    for folder, _, names in os.walk(out):
        for name in names:
            with open(os.path.join(folder, name), "rb") as handle:
                assert API_KEY.encode() not in handle.read(), name
    with JobStore(out, create=False) as store:
        assert API_KEY not in json.dumps([dict(r) for r in store.query("SELECT * FROM meta")])


# ------------------------------------------------------------------- on a terminal

def _run_on_a_terminal(out, path, answer):
    """`batchplan run` with stdin and stderr on a pseudo-terminal; ``answer`` typed at the prompt."""
    import pty
    import threading

    controller, terminal = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal 120 wide
    seen = bytearray()

    def read():
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:
                return
            if not data:
                return
            seen.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "batchplan", "run", str(path), "--out", str(out),
                                 "--poll", "0", "--max-lines", "3"],
                                stdin=terminal, stderr=terminal, stdout=subprocess.PIPE)
        os.write(controller, answer.encode() + b"\n")  # buffered by the terminal until read
        stdout, _ = proc.communicate(timeout=120)
    finally:
        os.close(terminal)
        reader.join(10)
        os.close(controller)
    return proc.returncode, stdout.decode(), seen.decode(errors="replace")


def test_on_a_terminal_it_asks_then_draws_one_live_display(api, nine, tmp_path):
    server = api()
    code, out, screen = _run_on_a_terminal(tmp_path / "no", nine, "n")
    assert code == 2 and "Run 9 requests, worst-case batch cost" in screen and "not confirmed" in screen
    assert server.requests == []
    code, out, screen = _run_on_a_terminal(tmp_path / "job", nine, "y")
    assert code == 0, screen
    assert "requests:" in screen and "parts:" in screen and "committed" in screen  # the tqdm line
    assert "TOTAL" in out and len(server.batches) == 3
