"""batchplan pilot, then compare --calibrate PILOT.jsonl, through the CLI
against the loopback fake; and the budget gate of compare (exit 4)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import line
from tests.fakes.chat_completions import ChatCompletions
from tests.fakes.dashscope_server import FakeDashScope

API_KEY = "sk-pilot-cli-3b9e"
FAST = ("--rpm", "600000", "--tpm", "1000000000")  # the pacer barely waits on loopback


@pytest.fixture(scope="module")
def fake():
    with FakeDashScope(api_key=API_KEY) as server:
        ChatCompletions(median=150, sigma=0.7).attach(server)
        yield server


@pytest.fixture
def env(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("DASHSCOPE_API_KEY", API_KEY)
    monkeypatch.setenv("DASHSCOPE_BASE_URL", fake.base_url)
    monkeypatch.setenv("BATCHPLAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def job(write_batch):
    return write_batch([line(f"req-{i}", max_tokens=2000, messages=[{"role": "user", "content": f"Question {i}: " + "why " * (i % 13)}])
                        for i in range(400)])


def test_pilot_then_compare_gives_an_interval_beside_the_bound(run, env, job, tmp_path):
    out = tmp_path / "pilot.jsonl"
    refused = run("pilot", job, "--out", out, "--requests", "25", *FAST)
    assert refused.exit_code == 2 and "pass --yes" in refused.stderr and not out.exists()
    sent = run("pilot", job, "--out", out, "--requests", "25", "--yes", "--seed", "3", *FAST)
    assert sent.exit_code == 0, sent.stderr
    assert "worst-case real-time cost" in sent.stderr and "25 of 25 pilot request(s) answered" in sent.stdout
    assert len(out.read_text().splitlines()) == 25
    again = run("pilot", job, "--out", out, "--requests", "25", "--yes", *FAST)
    assert again.exit_code == 2 and "already exists" in again.stderr

    compared = run("compare", job, "--calibrate", out, "--json")
    assert "prompt tokens billed differ" in compared.stderr  # the fake's stand-in count is not batchplan's
    doc = json.loads(compared.stdout)
    est = doc["output_estimate"]
    total = est["total"]
    assert total["output_tokens"]["low"] <= total["output_tokens"]["estimate"] <= total["output_tokens"]["high"]
    assert est["sample_requests"] == 25 and total["sample_requests"] == 25 and est["method"] in ("mean", "ratio", "regression")
    for key in ("realtime_cost", "batch_cost"):
        b = total[key]
        assert isinstance(b["estimate"], str) and float(b["low"]) <= float(b["estimate"]) <= float(b["high"])
    assert float(total["batch_cost"]["high"]) < float(doc["total"]["batch_cost"])  # far below the bound
    assert est["models"]["qwen-plus"]["output_tokens"] == total["output_tokens"]
    assert est["prompt_check"][0]["model"] == "qwen-plus"
    # the rows stay the upper bound
    assert doc["output_assumption"]["upper_bound"] is True

    text = run("compare", job, "--calibrate", out)
    assert text.exit_code == 0
    assert "Expected from the pilot" in text.stdout and "real-time expected (95%)" in text.stdout and "batch bound" in text.stdout
    html = tmp_path / "r.html"
    assert run("compare", job, "--calibrate", out, "--html", html).exit_code == 0
    assert 'id="estimate-table"' in html.read_text()


def test_budget_gate_exits_4_and_says_by_how_much(run, env, job, tmp_path):
    over = run("compare", job, "--max-cost", "0.01")
    assert over.exit_code == 4 and "over 0.01 USD by" in over.stderr and "worst-case batch cost" in over.stderr
    within = run("compare", job, "--max-cost", "1000")
    assert within.exit_code == 0 and "within budget" in within.stderr
    realtime = run("compare", job, "--max-cost", "0.01", "--realtime")
    assert realtime.exit_code == 4 and "worst-case real-time cost" in realtime.stderr
    assert run("compare", job, "--max-cost", "1", "--gate", "high").exit_code == 2  # needs a pilot
    assert run("compare", job, "--gate", "expected").exit_code == 2  # needs --max-cost
    expected = run("compare", job, "--output-tokens", "100", "--max-cost", "0.0001", "--gate", "expected")
    assert expected.exit_code == 4 and "at the assumed output" in expected.stderr

    out = tmp_path / "pilot.jsonl"
    assert run("pilot", job, "--out", out, "--requests", "20", "--yes", *FAST).exit_code == 0
    doc = json.loads(run("compare", job, "--calibrate", out, "--json").stdout)
    high = doc["output_estimate"]["total"]["batch_cost"]["high"]
    bound = doc["total"]["batch_cost"]
    between = f"{(float(high) + float(bound)) / 2:.6f}"
    assert run("compare", job, "--calibrate", out, "--max-cost", between, "--gate", "high").exit_code == 0
    assert run("compare", job, "--calibrate", out, "--max-cost", between).exit_code == 4  # the bound is over


def test_a_pilot_reads_standard_input_and_draws_as_from_the_file(run, env, job, tmp_path):
    from_file = tmp_path / "file.jsonl"
    from_pipe = tmp_path / "pipe.jsonl"
    assert run("pilot", job, "--out", from_file, "--requests", "10", "--yes", "--seed", "5", *FAST).exit_code == 0
    piped = run("pilot", "-", "--out", from_pipe, "--requests", "10", "--yes", "--seed", "5", *FAST,
                input=open(job, "rb").read())
    assert piped.exit_code == 0, piped.stderr
    assert "Next: batchplan compare - --calibrate" in piped.stdout
    a = [json.loads(x) for x in from_file.read_text().splitlines()]
    b = [json.loads(x) for x in from_pipe.read_text().splitlines()]
    assert sorted(x["custom_id"] for x in a) == sorted(x["custom_id"] for x in b)
    assert {x["pilot"]["file"] for x in b} == {"-"}
    assert {x["pilot"]["file"] for x in a} == {str(job)}


def test_library_errors_name_the_flag_at_fault(run, env, job, tmp_path):
    too_many = run("pilot", job, "--out", tmp_path / "p.jsonl", "--requests", "399", "--yes", *FAST)
    assert too_many.exit_code == 2 and too_many.stderr.startswith("batchplan: error: --requests: a pilot of 399 requests")
    over = run("pilot", job, "--out", tmp_path / "p.jsonl", "--requests", "10", "--max-cost", "0.0000001", "--yes", *FAST)
    assert over.exit_code == 2 and "nothing sent (--max-cost)" in over.stderr and not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize("width", [80, 120])
def test_the_estimate_table_fits_the_terminal_too(run, env, job, tmp_path, width):
    out = tmp_path / "pilot.jsonl"
    assert run("pilot", job, "--out", out, "--requests", "12", "--yes", *FAST).exit_code == 0
    text = run("compare", job, "--calibrate", out, env={"COLUMNS": str(width)}).stdout
    assert "Expected from the pilot" in text
    wide = [line for line in text.splitlines() if len(line) > width]
    assert wide == []
    wide_open = run("compare", job, "--calibrate", out, env={"COLUMNS": "250"}).stdout
    assert "real-time bound" in wide_open and "batch expected (95%)" in wide_open  # every column when there is room
