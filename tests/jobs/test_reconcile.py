"""batchplan reconcile and compare --calibrate.

The output fixture holds the two real Batch output lines (copied verbatim from
the recorded service, see fixtures/reconcile/README.md) plus lines built in the
same shape, in shuffled order; nothing outside the repo is read.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from decimal import Decimal

import pytest
from click.testing import CliRunner

from batchplan.catalog.catalog import default_catalog
from batchplan.cli.main import cli
from batchplan.jobs.calibrate import CalibrationError, calibrate
from batchplan.jobs.reconcile import (
    Reconciler,
    document,
    reconcile,
    write_retry_file,
)
from batchplan.jobs.results import ERRORS, ReconcileError, classify, read_results
from batchplan.planning.aggregate import PlannedRequest
from batchplan.planning.output import OutputAssumption

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "reconcile"
INPUT = FIXTURES / "input.jsonl"
OUTPUT = FIXTURES / "output.jsonl"
ERRORS_FILE = FIXTURES / "errors.jsonl"
REAL = FIXTURES / "real_output_lines.jsonl"

M = Decimal(1_000_000)
HALF = Decimal("0.5")
# qwen-flash intl, <=256K tier: input 0.05, output 0.4 per 1M tokens.
FLASH_IN, FLASH_OUT = Decimal("0.05"), Decimal("0.4")
# Actual usage of the succeeded requests in output.jsonl: custom_id -> (prompt, completion).
ACTUAL = {"1": (26, 49), "2": (36, 136), "3": (13, 20), "4": (15, 8)}
ESTIMATED_PROMPT = {"1": 26, "2": 20, "3": 13, "4": 15}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def flash_batch_cost(prompt: int, completion: int) -> Decimal:
    return (prompt * FLASH_IN + completion * FLASH_OUT) / M * HALF


@pytest.fixture(scope="module")
def rec():
    return reconcile(str(INPUT), str(OUTPUT), str(ERRORS_FILE), region="intl")


# -- the fixture itself ----------------------------------------------------------

def test_output_fixture_holds_the_real_lines_verbatim():
    real = REAL.read_text(encoding="utf-8").splitlines()
    output = OUTPUT.read_text(encoding="utf-8").splitlines()
    assert len(real) == 2 and all(line in output for line in real)
    # Shuffled: output order is not input order.
    assert [json.loads(line)["custom_id"] for line in output] == ["4", "5", "2", "3", "1"]


# -- matching, counts, cost ---------------------------------------------------------

def test_counts(rec):
    total = rec.total()
    assert (total.requests, total.succeeded, total.failed, total.missing, total.unexpected) == (7, 4, 2, 1, 0)
    assert list(rec.models) == ["qwen-flash"]
    assert rec.exit_code == 1


def test_matching_by_custom_id_does_not_depend_on_order(rec, tmp_path):
    lines = OUTPUT.read_bytes().splitlines(keepends=True)
    reversed_output = tmp_path / "reversed.jsonl"
    reversed_output.write_bytes(b"".join(reversed(lines)))
    again = reconcile(str(INPUT), str(reversed_output), str(ERRORS_FILE), region="intl")
    a, b = document(rec), document(again)
    for doc in (a, b):
        doc.pop("output")
        for failure in doc["failed"]:
            failure.pop("result_line")  # where the line sits in its own file
    assert a == b
    # And each request got its own usage: the only prompt mismatch is custom_id 2 (line 2).
    assert [(m.custom_id, m.line, m.estimated, m.actual) for m in rec.mismatches] == [("2", 2, 20, 36)]


def test_actual_batch_cost_is_exact(rec):
    expected = sum(flash_batch_cost(p, c) for p, c in ACTUAL.values())
    assert expected == Decimal("0.00004485")
    total = rec.total()
    assert total.actual_batch_cost == expected
    assert isinstance(total.actual_batch_cost, Decimal)
    assert total.actual_prompt_tokens == 90 and total.actual_output_tokens == 213


def test_estimates_of_the_succeeded_requests(rec):
    total = rec.total()
    assert total.estimated_prompt_tokens == sum(ESTIMATED_PROMPT.values()) == 74
    # Worst case: max_tokens 200 each.
    assert total.estimated_output_tokens == 800
    assert total.estimated_batch_cost == flash_batch_cost(74, 800)
    assert total.planned_batch_cost == flash_batch_cost(74 + 14 + 14 + 11, 7 * 200)
    assert total.cost_error == (Decimal("0.00004485") - flash_batch_cost(74, 800)) / flash_batch_cost(74, 800)
    assert rec.output.is_upper_bound


def test_exact_match_rate_and_mean_absolute_error(rec):
    total = rec.total()
    assert (total.exact_matches, total.compared) == (3, 4)
    assert total.exact_match_rate == Decimal("0.75")
    assert total.mean_absolute_error == Decimal(16) / 4


def test_failed_requests_are_listed_and_not_billed(rec):
    assert [(f.custom_id, f.line, f.code, f.message, f.source) for f in rec.failures] == [
        ("5", 5, "data_inspection_failed", "Input data may contain inappropriate content.", "output"),
        ("6", 6, "InternalError", "An internal error has occured, please try again later.", "errors"),
    ]
    assert rec.missing == [("7", 7)]
    assert rec.retry_lines == {5, 6, 7}


# -- result line shapes ------------------------------------------------------------------

@pytest.mark.parametrize("doc, code, message", [
    ({"custom_id": "a", "response": None, "error": {"code": "c1", "message": "m1"}}, "c1", "m1"),
    ({"custom_id": "a", "error_code": "c2", "error_message": "m2"}, "c2", "m2"),
    ({"custom_id": "a", "error": {"error_code": "c3", "error_message": "m3"}}, "c3", "m3"),
    ({"custom_id": "a", "response": {"status_code": 429, "body": {"error": {"code": "Throttling", "message": "slow down"}}}, "error": None},
     "Throttling", "slow down"),
    ({"custom_id": "a", "response": {"status_code": 500, "body": {}}, "error": None}, "http_500", "status code 500"),
])
def test_failed_line_shapes(doc, code, message):
    result = classify(doc, 3, ERRORS)
    assert (result.ok, result.code, result.message, result.line, result.source) == (False, code, message, 3, ERRORS)


def test_real_output_line_is_a_success():
    first = next(read_results(str(REAL)))
    assert (first.ok, first.custom_id, first.prompt_tokens, first.completion_tokens, first.model) == (True, "1", 26, 49, "qwen-flash")


def test_embedding_usage_without_completion_tokens():
    doc = {"custom_id": "e1", "response": {"status_code": 200, "body": {"model": "text-embedding-v4",
           "usage": {"prompt_tokens": 1000, "total_tokens": 1000}, "data": []}}, "error": None}
    result = classify(doc, 1)
    assert (result.ok, result.prompt_tokens, result.completion_tokens) == (True, 1000, 0)
    core = Reconciler(default_catalog(), "intl")
    assert core.actual_batch_cost("text-embedding-v4", 1000, 0, False) == Decimal(1000) * Decimal("0.07") / M * HALF


# -- pricing rules on the actual usage -------------------------------------------------------

def planned(cid, model="qwen-flash", prompt=10, output=100, thinking=False, line=1):
    return PlannedRequest(line, cid, model, "<=256K", prompt, output, None, Decimal("0.001"), thinking=thinking)


def success(cid, prompt, completion, model="qwen-flash"):
    return classify({"custom_id": cid, "response": {"status_code": 200, "body": {"model": model,
                     "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}}, "error": None}, 1)


def test_tier_is_chosen_by_the_actual_prompt_tokens():
    core = Reconciler(default_catalog(), "intl")
    core.add_planned(planned("x", prompt=10))
    core.add_result(success("x", 300_000, 1000))  # past 256K: the 0.25 / 2 tier, whole request
    rec = core.finish()
    assert rec.total().actual_batch_cost == (300_000 * Decimal("0.25") + 1000 * Decimal(2)) / M * HALF


def test_thinking_requests_are_priced_at_the_thinking_output_price():
    core = Reconciler(default_catalog(), "intl")
    core.add_planned(planned("t", model="qwen-plus", thinking=True))
    core.add_result(success("t", 100, 1000, model="qwen-plus"))
    assert core.finish().total().actual_batch_cost == (100 * Decimal("0.4") + 1000 * Decimal(4)) / M * HALF


def test_unknown_price_is_none_never_zero():
    core = Reconciler(default_catalog(), "intl")
    core.add_planned(planned("u", model="no-such-model"))
    core.add_result(success("u", 100, 10, model="no-such-model"))
    total = core.finish().total()
    assert total.actual_batch_cost is None and total.succeeded == 1


def test_unexpected_custom_id_is_counted():
    core = Reconciler(default_catalog(), "intl")
    core.add_planned(planned("a"))
    core.add_result(success("a", 10, 5))
    core.add_result(success("zz", 10, 5))
    rec = core.finish()
    assert rec.unexpected == ["zz"] and rec.total().unexpected == 1 and rec.exit_code == 0


# -- retry file -------------------------------------------------------------------------------

def test_retry_file_holds_the_original_lines(tmp_path):
    retry = tmp_path / "retry.jsonl"
    result = run("reconcile", INPUT, OUTPUT, "--errors", ERRORS_FILE, "--retry", retry)
    assert result.exit_code == 1
    original = INPUT.read_bytes().splitlines(keepends=True)
    assert retry.read_bytes() == original[4] + original[5] + original[6]
    assert f"3 request(s) written to {retry}" in result.stdout


def test_retry_keeps_crlf_and_an_unterminated_last_line(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"a": 1}\r\n\n{"b": 2}\r\n{"c":3}  ')
    target = tmp_path / "out.jsonl"
    assert write_retry_file(str(source), {1, 4}, str(target)) == 2
    assert target.read_bytes() == b'{"a": 1}\r\n{"c":3}  '


def test_retry_file_is_not_overwritten_without_force(tmp_path):
    retry = tmp_path / "retry.jsonl"
    retry.write_bytes(b"mine\n")
    result = run("reconcile", INPUT, OUTPUT, "--errors", ERRORS_FILE, "--retry", retry)
    assert result.exit_code == 2
    assert retry.read_bytes() == b"mine\n"
    assert "already exists; pass --force" in result.stderr
    forced = run("reconcile", INPUT, OUTPUT, "--errors", ERRORS_FILE, "--retry", retry, "--force")
    assert forced.exit_code == 1
    assert retry.read_bytes().count(b"\n") == 3


def test_without_retry_a_hint_is_printed():
    result = run("reconcile", INPUT, OUTPUT, "--errors", ERRORS_FILE)
    assert result.exit_code == 1
    assert "pass --retry PATH" in result.stdout


# -- CLI output ------------------------------------------------------------------------------------

def test_table_output():
    result = run("reconcile", INPUT, OUTPUT, "--errors", ERRORS_FILE)
    out = result.stdout
    assert "75.0%" in out
    assert "0.000045" in out  # actual batch cost 0.00004485, rounded for display
    lines = out.splitlines()
    assert f"{INPUT}:5: failed (custom_id 5): data_inspection_failed: Input data may contain inappropriate content." in lines
    assert any(l.startswith(f"{INPUT}:6: failed (custom_id 6): InternalError") for l in lines)
    assert f"{INPUT}:7: missing (custom_id 7): in neither the output nor the error file" in lines
    assert f"{INPUT}:2: prompt tokens differ (custom_id 2): estimated 20, actual 36 (+16)" in lines
    assert "upper bound" in out


def test_json_document(tmp_path):
    retry = tmp_path / "r.jsonl"
    result = run("reconcile", INPUT, OUTPUT, "--errors", ERRORS_FILE, "--json", "--retry", retry)
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["schema"] == "batchplan.reconcile/1"
    assert (doc["region"], doc["currency"], doc["batch_price_factor"]) == ("intl", "USD", "0.5")
    total = doc["total"]
    assert {k: total[k] for k in ("requests", "succeeded", "failed", "missing", "unexpected")} == {
        "requests": 7, "succeeded": 4, "failed": 2, "missing": 1, "unexpected": 0}
    assert total["prompt_tokens"] == {"estimated": 74, "actual": 90, "exact_matches": 3, "exact_match_rate": 0.75,
                                      "mean_absolute_error": 4.0, "error": pytest.approx(16 / 74, abs=1e-6)}
    assert total["output_tokens"]["estimated"] == 800 and total["output_tokens"]["actual"] == 213
    assert Decimal(total["batch_cost"]["actual"]) == Decimal("0.00004485")
    assert Decimal(total["batch_cost"]["estimated"]) == flash_batch_cost(74, 800)
    assert doc["output_assumption"]["upper_bound"] is True
    assert [m["model"] for m in doc["models"]] == ["qwen-flash"]
    assert [(f["custom_id"], f["line"], f["code"]) for f in doc["failed"]] == [("5", 5, "data_inspection_failed"), ("6", 6, "InternalError")]
    assert doc["missing"] == [{"custom_id": "7", "line": 7}]
    assert doc["prompt_token_differences"] == [{"custom_id": "2", "line": 2, "model": "qwen-flash", "estimated": 20, "actual": 36, "difference": 16}]
    assert doc["retry"] == {"path": str(retry), "requests": 3}
    assert doc["exit_code"] == 1


def test_output_tokens_option_states_the_estimate():
    doc = json.loads(run("reconcile", INPUT, OUTPUT, "--errors", ERRORS_FILE, "--json", "--output-tokens", "60").stdout)
    assert doc["output_assumption"]["mode"] == "per_request"
    assert doc["total"]["output_tokens"]["estimated"] == 240
    assert doc["total"]["output_tokens"]["over_estimate"] == 1  # custom_id 2 wrote 136


def test_all_succeeded_exits_zero(tmp_path):
    lines = INPUT.read_bytes().splitlines(keepends=True)
    small = tmp_path / "in.jsonl"
    small.write_bytes(b"".join(lines[:4]))
    retry = tmp_path / "retry.jsonl"
    result = run("reconcile", small, OUTPUT, "--retry", retry)
    # custom_id 5 failed in the output but is not in this input: unexpected, not failed.
    assert result.exit_code == 0
    assert not retry.exists()
    assert "Nothing to retry" in result.stdout
    assert "not in the input: 5" in result.stdout


def test_bad_json_line_in_output_is_a_one_line_error(tmp_path):
    bad = tmp_path / "out.jsonl"
    bad.write_bytes(OUTPUT.read_bytes().splitlines(keepends=True)[0] + b'{"custom_id": "5", oops\n')
    result = run("reconcile", INPUT, bad)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"batchplan: error: {bad}:2: not valid JSON")
    assert "Traceback" not in result.stderr


def test_missing_files_exit_2(tmp_path):
    result = run("reconcile", INPUT, tmp_path / "nope.jsonl")
    assert result.exit_code == 2 and "nope.jsonl: no such file" in result.stderr
    result = run("reconcile", tmp_path / "nope.jsonl", OUTPUT)
    assert result.exit_code == 2 and "nope.jsonl: no such file" in result.stderr


def test_read_results_raises_one_line(tmp_path):
    bad = tmp_path / "e.jsonl"
    bad.write_text('{"custom_id": "1"}\n\n[1, 2]\n')
    with pytest.raises(ReconcileError, match=r"e\.jsonl:3: not a JSON object \(found an array\)$"):
        list(read_results(str(bad)))


# -- calibration ---------------------------------------------------------------------------------------

def test_calibration_stats():
    # Successful qwen-flash completions in output.jsonl: 8, 20, 49, 136 (custom_id 5 failed).
    stats = calibrate(str(OUTPUT), default_catalog()).stats
    assert stats == {"qwen-flash": {"requests": 4, "mean": 54, "p50": 20, "p95": 136, "max": 136}}  # 213 / 4 = 53.25, up
    assert calibrate(str(REAL), default_catalog()).per_model == {"qwen-flash": 93}  # (49 + 136) / 2 = 92.5, up


def test_calibration_errors(tmp_path):
    with pytest.raises(CalibrationError, match=r"nope\.jsonl: no such file"):
        calibrate(str(tmp_path / "nope.jsonl"), default_catalog())
    with pytest.raises(CalibrationError, match="no successful lines"):
        calibrate(str(ERRORS_FILE), default_catalog())
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(REAL.read_bytes() + b"{not json\n")
    with pytest.raises(CalibrationError, match=r"bad\.jsonl:3: not valid JSON"):
        calibrate(str(bad), default_catalog())


def test_compare_calibrate_uses_the_mean_per_model():
    result = run("compare", INPUT, "--calibrate", OUTPUT, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["output_assumption"]["mode"] == "calibrated"
    rows = doc["rows"]
    assert [(r["model"], r["requests"], r["output_tokens"]) for r in rows] == [("qwen-flash", 7, 7 * 54)]


def test_compare_calibrate_table_states_mean_and_p95():
    result = run("compare", INPUT, "--calibrate", OUTPUT)
    assert result.exit_code == 0
    line = next(l for l in result.stdout.splitlines() if l.startswith("Output tokens:"))
    assert "mean completion tokens per model" in line and "p95 qwen-flash 136" in line and "qwen-flash 54" in line


def test_compare_calibrate_bad_file_exit_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    shutil.copy(ERRORS_FILE, bad)
    result = run("compare", INPUT, "--calibrate", bad)
    assert result.exit_code == 2
    assert "no successful lines" in result.stderr and "Traceback" not in result.stderr


def test_default_output_assumption_is_the_worst_case(rec):
    assert rec.output == OutputAssumption()
