"""compare --calibrate keyed by the model each request named: output files
name dated snapshots (qwen-plus-2025-07-28) where requests said qwen-plus."""

from __future__ import annotations

import json
import pathlib

import pytest

from batchplan.catalog.catalog import default_catalog
from batchplan.jobs.calibrate import CATALOG, JOINED, calibrate, model_key
from tests.conftest import line

REAL = pathlib.Path(__file__).parent.parent / "fixtures" / "reconcile" / "real_output_lines.jsonl"
SNAPSHOT = "qwen-plus-2025-07-28"


def output_line(custom_id: str, model: str, completion_tokens: int) -> str:
    """A successful Batch output line: the first real recorded line with its
    custom_id, model and usage replaced."""
    doc = json.loads(REAL.read_text("utf-8").splitlines()[0])
    doc["custom_id"] = custom_id
    body = doc["response"]["body"]
    body["model"] = model
    body["usage"] = {"completion_tokens": completion_tokens, "prompt_tokens": 10, "total_tokens": 10 + completion_tokens}
    return json.dumps(doc, ensure_ascii=False)


@pytest.fixture
def run_files(write_batch):
    """An earlier run: 3 qwen-plus requests, answered by the snapshot with
    100, 200 and 301 completion tokens (mean 201 rounded up from 200.33)."""
    old_input = write_batch([line(f"r{i}", max_tokens=5000) for i in range(3)], name="old.jsonl")
    output = write_batch([output_line(f"r{i}", SNAPSHOT, n) for i, n in enumerate((100, 200, 301))], name="old.output.jsonl")
    return old_input, output


def plan(run, *args):
    result = run("compare", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_same_input_joins_by_custom_id_and_the_calibrated_figure_applies(run, run_files):
    old_input, output = run_files
    doc = plan(run, old_input, "--calibrate", output)
    (row,) = doc["rows"]
    assert (row["model"], row["requests"], row["output_tokens"]) == ("qwen-plus", 3, 3 * 201)  # not 3 x 5000
    calibration = doc["output_assumption"]["calibration"]
    assert calibration["mapping"] == JOINED and calibration["inputs"] == [str(old_input)]
    assert calibration["joined_lines"] == 3 and calibration["renamed"] == {SNAPSHOT: "qwen-plus"}
    assert "joined by custom_id" in doc["output_assumption"]["description"]


def test_a_new_input_maps_snapshots_to_their_base_through_the_catalog(run, run_files, write_batch):
    _, output = run_files
    new = write_batch([line("n1", max_tokens=5000), line("n2", model="qwen-plus-latest", max_tokens=5000)], name="new.jsonl")
    doc = plan(run, new, "--calibrate", output)
    assert [(r["model"], r["output_tokens"]) for r in doc["rows"]] == [("qwen-plus", 201), ("qwen-plus-latest", 201)]
    calibration = doc["output_assumption"]["calibration"]
    assert calibration["mapping"] == CATALOG and calibration["mapped_lines"] == 3
    assert "no custom_id of it is in" in calibration["note"]
    table = run("compare", new, "--calibrate", output).stdout
    assert f"through the catalog (no custom_id of it is in {new}); {SNAPSHOT} -> qwen-plus" in table


def test_calibrate_input_keys_by_a_model_name_the_catalog_does_not_know(run, write_batch):
    # The run asked for a name the catalog does not know; the service answered with a snapshot.
    old = write_batch([line("a", model="my-deployment"), line("b", model="my-deployment")], name="old.jsonl")
    output = write_batch([output_line("a", SNAPSHOT, 40), output_line("b", SNAPSHOT, 60)], name="out.jsonl")
    new = write_batch([line("x", model="my-deployment")], name="new.jsonl")
    joined = plan(run, new, "--calibrate", output, "--calibrate-input", old)
    assert [(r["model"], r["output_tokens"]) for r in joined["rows"]] == [("my-deployment", 50)]
    assert joined["output_assumption"]["calibration"]["models"]["my-deployment"]["requests"] == 2
    # Without the run's input, the figure goes to qwen-plus and this request is not calibrated.
    result = run("compare", new, "--calibrate", output, "--json")
    assert json.loads(result.stdout)["rows"][0]["output_tokens"] is None


def test_planned_files_that_only_share_custom_ids_are_not_joined(run, run_files, write_batch):
    _, output = run_files
    # Same custom_ids, but qwen-flash requests: another run's input.
    other = write_batch([line(f"r{i}", model="qwen-flash", max_tokens=7) for i in range(3)], name="other.jsonl")
    doc = plan(run, other, "--calibrate", output)
    calibration = doc["output_assumption"]["calibration"]
    assert calibration["mapping"] == CATALOG and "not its input" in calibration["note"]
    assert doc["rows"][0]["output_tokens"] == 3 * 7  # qwen-flash is not calibrated: its max_tokens


def test_calibration_stats_key_snapshots_by_their_base(run_files):
    _, output = run_files
    assert calibrate(str(output), default_catalog()).stats == {"qwen-plus": {"requests": 3, "mean": 201, "p50": 200, "p95": 301, "max": 301}}
    found = calibrate(str(output), default_catalog())
    assert found.per_model == {"qwen-plus": 201} and found.mapping == CATALOG


def test_model_key():
    catalog = default_catalog()
    assert model_key(catalog, "qwen-plus-latest") == "qwen-plus"  # an alias
    assert model_key(catalog, "qwen-max-2025-01-25") == "qwen-max"  # a dated snapshot
    # A name the catalog does not know keeps its base, the date suffix dropped (an assumption).
    assert model_key(catalog, "qwen9-ultra-2030-01-01") == "qwen9-ultra"
    assert model_key(catalog, "my-deployment") == "my-deployment"


def test_calibrate_input_without_calibrate_is_a_usage_error(run, run_files):
    old_input, _ = run_files
    result = run("compare", old_input, "--calibrate-input", old_input)
    assert result.exit_code == 2


def test_unreadable_calibrate_input_is_one_line_exit_2(run, run_files, tmp_path):
    old_input, output = run_files
    result = run("compare", old_input, "--calibrate", output, "--calibrate-input", tmp_path / "nope.jsonl")
    assert result.exit_code == 2 and result.stderr.strip() == f"batchplan: error: {tmp_path / 'nope.jsonl'}: no such file"
