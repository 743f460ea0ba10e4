"""`batchplan validate` and batch_rules.check_file: every Batch API file rule (facts §1)."""

import json
from dataclasses import FrozenInstanceError

import pytest

from batchplan.catalog.catalog import default_catalog
from batchplan.jobs import rules as batch_rules
from batchplan.jobs.rules import FileCheck, Violation, check_file
from batchplan.planning.planner import BatchPlan
from batchplan.planning.reading import InputError
from tests.conftest import FIXTURES, line

MIXED = FIXTURES / "validate" / "mixed.jsonl"


def lowered(**batch_limits):
    return default_catalog().merged({"batch_limits": batch_limits})


def rules(check: FileCheck) -> set[str]:
    return {v.rule for v in check.violations}


def only(check: FileCheck, rule: str) -> list[Violation]:
    return [v for v in check.violations if v.rule == rule]


def write_prices(tmp_path, overlay) -> str:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(overlay), "utf-8")
    return str(path)


# -- a valid file -----------------------------------------------------------

def test_valid_file_has_no_violations(write_batch):
    path = write_batch([line(str(i), max_tokens=100) for i in range(1, 6)])
    check = check_file(path)
    assert check.ok
    assert check.violations == [] and check.violation_counts == {}
    assert (check.requests, check.bytes) == (5, path.stat().st_size)
    assert (check.model, check.url, check.thinking) == ("qwen-plus", "/v1/chat/completions", False)
    assert check.region == "intl" and check.path == str(path)


def test_the_plan_of_the_same_pass_is_a_compare_plan(write_batch):
    from batchplan.planning.planner import plan_file
    from batchplan.reports.text import table

    path = write_batch([line("a"), line("b", messages=[{"role": "user", "content": "A longer question than the first one"}]), "{bad"])
    check = check_file(path)
    assert isinstance(check.plan, BatchPlan)
    compare = plan_file(str(path))
    assert check.plan.plan.requests == compare.plan.requests == 2
    assert check.plan.plan.invalid == compare.plan.invalid == 1
    assert check.plan.plan.total().batch_cost == compare.plan.total().batch_cost
    assert check.plan.plan.total().input_tokens == compare.plan.total().input_tokens
    assert list(check.plan.files) == [str(path)]
    assert "qwen-plus" in table(check.plan)


def test_violation_is_frozen():
    v = Violation(3, "duplicate_custom_id", "x")
    with pytest.raises(FrozenInstanceError):
        v.line = 4


def test_bom_and_crlf_validate(write_batch, tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (line("1") + "\r\n" + line("2") + "\r\n").encode())
    check = check_file(path)
    assert check.ok, check.violations
    assert check.requests == 2


# -- file limits ------------------------------------------------------------

def test_too_many_requests(write_batch):
    path = write_batch([line(str(i)) for i in range(4)])
    assert check_file(path, catalog=lowered(max_requests=4)).ok
    check = check_file(path, catalog=lowered(max_requests=3))
    [v] = only(check, "too_many_requests")
    assert v.line is None and "4 requests" in v.message and "3" in v.message


def test_file_too_large(write_batch):
    path = write_batch([line("1"), line("2")])
    size = path.stat().st_size
    assert check_file(path, catalog=lowered(max_file_bytes=size)).ok
    check = check_file(path, catalog=lowered(max_file_bytes=size - 1))
    [v] = only(check, "file_too_large")
    assert v.line is None and f"{size:,} bytes" in v.message


def test_line_too_large(write_batch):
    short, long = line("1"), line("2", messages=[{"role": "user", "content": "x" * 500}])
    path = write_batch([short, long, short.replace('"1"', '"3"')])
    check = check_file(path, catalog=lowered(max_line_bytes=len(long) - 1))
    [v] = only(check, "line_too_large")
    assert v.line == 2 and f"{len(long):,} bytes" in v.message
    assert check_file(path, catalog=lowered(max_line_bytes=len(long))).ok


def test_no_requests(write_batch):
    check = check_file(write_batch(["", "   "]))
    assert [(v.line, v.rule) for v in check.violations] == [(None, "no_requests")]


# -- same model, thinking mode and url on every line ------------------------

def test_mixed_models_names_the_first_line_that_differs(write_batch):
    path = write_batch([line("1"), line("2"), line("3", model="qwen-flash"), line("4")])
    check = check_file(path)
    [v] = only(check, "mixed_models")
    assert v.line == 3
    assert "qwen-flash" in v.message and "qwen-plus on line 1" in v.message and "qwen-plus x3" in v.message
    assert check.model is None


def test_mixed_thinking(write_batch):
    path = write_batch([line("1", enable_thinking=False), line("2", enable_thinking=True)])
    check = check_file(path)
    assert rules(check) == {"mixed_thinking"}
    assert only(check, "mixed_thinking")[0].line == 2
    assert check.thinking is None and check.model == "qwen-plus"


def test_thinking_by_default_counts_as_thinking(write_batch):
    # qwen3.5-flash thinks unless told not to: an unset flag and true are one mode.
    same = write_batch([line("1", model="qwen3.5-flash"), line("2", model="qwen3.5-flash", enable_thinking=True)])
    assert "mixed_thinking" not in rules(check_file(same))
    mixed = write_batch([line("1", model="qwen3.5-flash"), line("2", model="qwen3.5-flash", enable_thinking=False)], name="m.jsonl")
    assert "mixed_thinking" in rules(check_file(mixed))


def test_mixed_urls(write_batch):
    path = write_batch([line("1"), line("2", url="/v1/embeddings", input="text")])
    check = check_file(path)
    assert rules(check) == {"mixed_urls"}
    v = only(check, "mixed_urls")[0]
    assert v.line == 2 and "/v1/embeddings" in v.message and "/v1/chat/completions on line 1" in v.message


def test_url_not_allowed_by_the_catalog(write_batch):
    path = write_batch([line("1", url="/v1/embeddings", model="text-embedding-v4", input="t")])
    check = check_file(path, catalog=lowered(urls=["/v1/chat/completions"]), region="cn")
    assert rules(check) == {"url_not_allowed"}


# -- custom_id, method, url, body -------------------------------------------

def test_duplicate_custom_id_names_both_lines(write_batch):
    path = write_batch([line("a"), line("b"), line("a"), line("c"), line("b")])
    check = check_file(path)
    dups = only(check, "duplicate_custom_id")
    assert [(v.line, v.message) for v in dups] == [
        (3, "custom_id 'a' is already used on line 1"),
        (5, "custom_id 'b' is already used on line 2"),
    ]


@pytest.mark.parametrize(
    "raw, reason",
    [
        ('{"custom_id": "", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "qwen-plus", "messages": [{"role": "user", "content": "x"}]}}', "custom_id is empty"),
        ('{"custom_id": 7, "method": "POST", "url": "/v1/chat/completions", "body": {"model": "qwen-plus", "messages": [{"role": "user", "content": "x"}]}}', "custom_id must be a string"),
        ('{"method": "POST", "url": "/v1/chat/completions", "body": {"model": "qwen-plus", "messages": [{"role": "user", "content": "x"}]}}', "missing custom_id"),
        ('{"custom_id": "x", "method": "GET", "url": "/v1/chat/completions", "body": {"model": "qwen-plus", "messages": [{"role": "user", "content": "x"}]}}', "method must be POST"),
        ('{"custom_id": "x", "method": "POST", "url": "/v1/chat/completion", "body": {"model": "qwen-plus", "messages": [{"role": "user", "content": "x"}]}}', "unknown url"),
        ('{"custom_id": "x", "method": "POST"', "not valid JSON"),
    ],
)
def test_invalid_lines_are_violations(write_batch, raw, reason):
    path = write_batch([line("1"), raw])
    check = check_file(path)
    [v] = only(check, "invalid_line")
    assert v.line == 2 and reason in v.message
    assert check.plan.plan.invalid == 1


# -- batch-test-model -------------------------------------------------------

def test_test_model_only_on_the_test_url(write_batch):
    good = write_batch([line("1", model="batch-test-model", url="/v1/chat/ds-test")])
    assert check_file(good).ok
    wrong_url = write_batch([line("1", model="batch-test-model")], name="w.jsonl")
    [v] = only(check_file(wrong_url), "test_model_url")
    assert v.line == 1 and "must use url /v1/chat/ds-test" in v.message
    wrong_model = write_batch([line("1", url="/v1/chat/ds-test")], name="m.jsonl")
    [v] = only(check_file(wrong_model), "test_model_url")
    assert "takes only batch-test-model, not qwen-plus" in v.message


def test_test_file_limits(write_batch):
    lines = [line(str(i), model="batch-test-model", url="/v1/chat/ds-test") for i in range(3)]
    path = write_batch(lines)
    assert check_file(path, catalog=lowered(test_max_requests=3)).ok
    check = check_file(path, catalog=lowered(test_max_requests=2))
    [v] = only(check, "test_file_too_large")
    assert v.line is None and "at most 2 lines" in v.message
    size = path.stat().st_size
    check = check_file(path, catalog=lowered(test_max_file_bytes=size - 1))
    [v] = only(check, "test_file_too_large")
    assert f"{size:,}" in v.message


def test_test_limits_do_not_apply_to_other_models(write_batch):
    path = write_batch([line(str(i)) for i in range(3)])
    assert check_file(path, catalog=lowered(test_max_requests=2, test_max_file_bytes=10)).ok


# -- token limits -----------------------------------------------------------

def test_over_max_input(write_batch):
    catalog = default_catalog().merged({"models": {"qwen-max": {"limits": {"max_input": 12, "max_output": 8192}}}})
    short = line("1", model="qwen-max", messages=[{"role": "user", "content": "Hi"}])  # 3 + 5 + 1 tokens
    long = line("2", model="qwen-max", messages=[{"role": "user", "content": "one two three four five six seven eight"}])
    check = check_file(write_batch([short, long]), catalog=catalog)
    [v] = only(check, "over_max_input")
    assert v.line == 2 and "at most 12" in v.message and "in batch" not in v.message


def test_batch_caps_input_below_the_real_time_limit(write_batch):
    # qwen3.5-* take at most 256K tokens per request in batch; lowered here
    # so a short prompt crosses it.
    catalog = default_catalog().merged({"models": {"qwen3.5-flash": {"limits": {"max_input": 100_000, "batch_max_input": 10, "max_output": 65536}}}})
    path = write_batch([line("1", model="qwen3.5-flash", enable_thinking=False,
                             messages=[{"role": "user", "content": "one two three four five six seven eight"}])])
    [v] = only(check_file(path, catalog=catalog), "over_max_input")
    assert "at most 10" in v.message and "in batch" in v.message


def test_shipped_batch_cap_is_256k():
    limits = default_catalog().model("qwen3.5-plus").limits
    assert limits.input_limit(False, batch=True) == 262_144


def test_over_max_output(write_batch):
    path = write_batch([line("1", max_tokens=32_768), line("2", max_tokens=32_769)])
    check = check_file(path)
    [v] = only(check, "over_max_output")
    assert v.line == 2 and "32,769" in v.message and "32,768" in v.message


def test_over_max_output_uses_the_thinking_cap(write_batch):
    # qwen3-max: 65,536 output, 32,768 when thinking.
    path = write_batch([line("1", model="qwen3-max", enable_thinking=True, max_tokens=40_000)])
    [v] = only(check_file(path), "over_max_output")
    assert "32,768" in v.message and "thinking" in v.message
    path = write_batch([line("1", model="qwen3-max", enable_thinking=False, max_tokens=40_000)], name="n.jsonl")
    assert check_file(path).ok


# -- models offered for batch ------------------------------------------------

def test_model_not_offered_in_region(write_batch):
    path = write_batch([line("1", model="qwen3.5-plus", enable_thinking=False), line("2", model="qwen3.5-plus", enable_thinking=False)])
    [v] = only(check_file(path, region="intl"), "model_not_offered")
    assert v.line == 1 and "qwen3.5-plus" in v.message and "intl" in v.message and "offered in cn" in v.message
    assert "2 line(s)" in v.message
    assert check_file(path, region="cn").ok


@pytest.mark.parametrize("name", ["qwen-turbo-latest", "qwen-max-2025-01-25"])
def test_aliases_and_snapshots_resolve_to_an_offered_model(write_batch, name):
    path = write_batch([line("1", model=name)])
    check = check_file(path)
    assert "model_not_offered" not in rules(check) and "unknown_model" not in rules(check)


def test_unknown_model(write_batch):
    path = write_batch([line("1", model="qwen-imaginary"), line("2", model="qwen-imaginary")])
    check = check_file(path)
    [v] = only(check, "unknown_model")
    assert v.line == 1 and "qwen-imaginary" in v.message
    assert "model_not_offered" not in rules(check)


# -- bounded memory -----------------------------------------------------------

def test_violations_are_bounded_per_rule_and_counts_exact(write_batch):
    n = batch_rules.KEEP_PER_RULE + 50
    path = write_batch([line("same") for _ in range(n + 1)])
    check = check_file(path)
    assert check.violation_counts == {"duplicate_custom_id": n}
    assert len(check.violations) == batch_rules.KEEP_PER_RULE
    assert check.violations[0].line == 2
    assert not check.ok


def test_unreadable_file_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        check_file(tmp_path / "missing.jsonl")


# -- the command ----------------------------------------------------------------

def test_cli_valid_exits_0(write_batch, run):
    path = write_batch([line("1"), line("2")])
    result = run("validate", path)
    assert result.exit_code == 0
    assert result.output.strip() == f"{path}: valid: 2 requests, {path.stat().st_size:,} bytes, model qwen-plus, non-thinking, /v1/chat/completions, region intl"


def test_cli_invalid_exits_1_and_prints_file_line_rule(write_batch, run):
    path = write_batch([line("1"), line("1"), line("2", model="qwen-flash")])
    result = run("validate", path)
    assert result.exit_code == 1
    out = result.output.splitlines()
    assert out[0] == f"{path}:2: duplicate_custom_id: custom_id '1' is already used on line 1"
    assert out[1].startswith(f"{path}:3: mixed_models: ")
    assert out[-1].startswith(f"{path}: invalid: 2 violation(s)")


def test_cli_file_level_violation_has_no_line(write_batch, run, tmp_path):
    path = write_batch([line("1"), line("2")])
    prices = write_prices(tmp_path, {"batch_limits": {"max_requests": 1}})
    result = run("validate", path, "--prices", prices)
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith(f"{path}: too_many_requests: 2 requests")


def test_cli_caps_text_output(write_batch, run):
    from batchplan.cli.files import SHOW_VIOLATIONS

    path = write_batch([line("same") for _ in range(SHOW_VIOLATIONS + 11)])
    result = run("validate", path, "--quiet")
    lines = result.output.splitlines()
    assert result.exit_code == 1
    assert len(lines) == SHOW_VIOLATIONS + 1
    assert lines[-1] == "... and 10 more"


def test_cli_region(write_batch, run):
    path = write_batch([line("1", model="qwen-long")])
    assert run("validate", path, "--region", "intl").exit_code == 1
    assert run("validate", path, "--region", "cn").exit_code == 0


@pytest.mark.parametrize("args", [["missing.jsonl"], ["--region", "eu", "x.jsonl"], []])
def test_cli_usage_and_unreadable_exit_2(run, tmp_path, args):
    result = run("validate", *[str(tmp_path / a) if a.endswith(".jsonl") else a for a in args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_cli_missing_file_message(run, tmp_path):
    result = run("validate", tmp_path / "missing.jsonl")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"batchplan: error: {tmp_path / 'missing.jsonl'}: no such file"


def test_cli_bad_prices_file_exits_2(write_batch, run, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", "utf-8")
    result = run("validate", write_batch([line("1")]), "--prices", bad)
    assert result.exit_code == 2 and "not valid JSON" in result.stderr


def test_cli_json_document(write_batch, run):
    path = write_batch([line("1"), line("1"), "nope"])
    result = run("validate", path, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert list(doc) == ["schema", "path", "region", "ok", "requests", "bytes", "model", "url", "thinking",
                         "violations", "violation_counts", "warnings", "warning_counts"]
    assert doc["schema"] == "batchplan.validate/1"
    assert (doc["path"], doc["region"], doc["ok"], doc["requests"]) == (str(path), "intl", False, 3)
    assert doc["bytes"] == path.stat().st_size
    assert (doc["model"], doc["url"], doc["thinking"]) == ("qwen-plus", "/v1/chat/completions", False)
    assert doc["violations"] == [
        {"line": 2, "rule": "duplicate_custom_id", "message": "custom_id '1' is already used on line 1"},
        {"line": 3, "rule": "invalid_line", "message": doc["violations"][1]["message"]},
    ]
    assert "not valid JSON" in doc["violations"][1]["message"]
    assert doc["violation_counts"] == {"duplicate_custom_id": 1, "invalid_line": 1}


def test_cli_json_valid(write_batch, run):
    result = run("validate", write_batch([line("1")]), "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 0 and doc["ok"] is True and doc["violations"] == [] and doc["violation_counts"] == {}


def test_cli_mixed_fixture(run):
    result = run("validate", MIXED, "--region", "cn", "--json")
    doc = json.loads(result.stdout)
    assert doc["violation_counts"] == {"mixed_models": 1, "mixed_thinking": 1, "mixed_urls": 1}
    assert doc["model"] is None and doc["requests"] == 12


def test_help_lists_every_rule_and_the_exit_codes(run):
    text = run("validate", "--help").output
    for rule in batch_rules.RULES:
        assert rule in text
    assert "Exit codes" in text and "batchplan.validate/1" in text
