"""The pilot's prompt-count check as the report words it: loud when counts differ, and a labelled
correction with its interval for a model the catalog marks approximate."""

from __future__ import annotations

from types import SimpleNamespace

from batchplan.planning import estimate as E
from batchplan.planning.aggregate import Row
from batchplan.reports.estimate import check_lines


def test_a_mismatch_is_loud_and_an_approximate_model_gets_a_labelled_correction():
    checks = (E.count_check("qwen-plus", [(10, 10), (20, 20)]),
              E.count_check("qwen3.7-plus", [(100, 110), (200, 218), (300, 331)], approximate=True),
              E.count_check("qwen-flash", [(100, 102), (50, 52)]))
    estimate = E.OutputEstimate("p.jsonl", {}, None, {}, checks)
    result = SimpleNamespace(plan=SimpleNamespace(rows={("qwen3.7-plus", "flat", False): Row(requests=3, input_tokens=600)}))
    lines = check_lines(estimate, result)
    assert lines[0].startswith("Prompt tokens: qwen-plus: 2/2")
    assert lines[1].startswith("WARNING: prompt tokens billed differ") and "qwen3.7-plus: 0/3" in lines[1]
    assert lines[2].startswith("  Correction (measured, qwen3.7-plus is marked approximate): prompt tokens x 1.0983")
    assert "instead of 600 counted" in lines[2] and "95%" in lines[2]
    assert lines[3].startswith("WARNING") and "qwen-flash" in lines[3]
    assert len(lines) == 4  # qwen-flash is counted exactly by the catalog: no correction offered
