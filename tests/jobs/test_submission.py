"""The submission's decisions, as data: the budget guard and what to do
with content the ledger has seen (submission.py). The CLI around them is
driven end to end in test_lifecycle.py."""

from __future__ import annotations

from decimal import Decimal

from batchplan.jobs.guard import BUSY, DUPLICATE, History, batch_cost_text, check_budget, decide, read_history
from batchplan.jobs.ledger import CREATED, INTENT, UPLOADED, Entry, Ledger
from batchplan.planning.aggregate import Plan, Row
from batchplan.planning.output import OutputAssumption
from batchplan.planning.planner import BatchPlan

HERE = "http://127.0.0.1:8000/compatible-mode/v1"
THERE = "https://dashscope.aliyuncs.com/compatible-mode/v1"


def batch_plan(*rows, region="intl", currency="USD"):
    """A plan of (model, batch cost) rows; a cost of None is an unpriced model."""
    plan = Plan(rows={(model, "-", False): Row(requests=1, batch_cost=cost) for model, cost in rows})
    return BatchPlan(plan=plan, files={}, region=region, currency=currency, output=OutputAssumption(),
                     batch_price_factor=Decimal("0.5"))


# -- the budget guard ---------------------------------------------------------------

def test_under_budget_passes_and_says_so():
    verdict = check_budget(batch_plan(("qwen-plus", Decimal("0.25")), ("qwen-max", Decimal("0.5"))), Decimal("1"))
    assert verdict.ok
    assert verdict.describe("--max-cost") == "within budget: worst-case batch cost 0.750000 USD <= --max-cost 1"


def test_a_cost_equal_to_the_budget_passes():
    verdict = check_budget(batch_plan(("qwen-plus", Decimal("0.75"))), Decimal("0.750"))
    assert verdict.ok
    assert verdict.describe("--max-cost") == "within budget: worst-case batch cost 0.750000 USD <= --max-cost 0.750"


def test_over_budget_is_refused_with_the_cost_and_a_hint():
    verdict = check_budget(batch_plan(("qwen-plus", Decimal("0.750001"))), Decimal("0.75"))
    assert not verdict.ok
    assert verdict.describe("--max-cost") == ("the worst-case batch cost 0.750001 USD is over --max-cost 0.75; not submitted "
                               "(batchplan compare --output-tokens N shows an expected cost)")


def test_over_a_zero_budget_is_refused():
    assert not check_budget(batch_plan(("qwen-plus", Decimal("0.000001"))), Decimal(0)).ok
    assert check_budget(batch_plan(("qwen-plus", Decimal(0))), Decimal(0)).ok


def test_an_unknown_cost_under_any_budget_is_refused_naming_the_unpriced_models():
    result = batch_plan(("zeta-chat", None), ("qwen-plus", Decimal("0.1")), ("acme-chat", None), region="cn",
                        currency="CNY")
    verdict = check_budget(result, Decimal("1000000"))
    assert not verdict.ok
    assert verdict.describe("--max-cost") == ("the batch cost is unknown (no cn price for acme-chat, zeta-chat), so --max-cost "
                               "1000000 cannot be checked; not submitted")


def test_without_a_budget_nothing_is_refused_and_unknown_shows_as_unknown():
    result = batch_plan(("acme-chat", None))
    verdict = check_budget(result, None)
    assert verdict.ok and verdict.message is None
    assert batch_cost_text(result) == "unknown"
    assert batch_cost_text(batch_plan(("qwen-plus", Decimal("12.5")), currency="CNY")) == "12.5000 CNY"


# -- content submitted before --------------------------------------------------------

def entry(state=CREATED, base_url=HERE, **fields):
    values = dict(token="t-" + state, state=state, sha256="ab" * 32, path="/data/batch.jsonl", region="intl",
                  base_url=base_url, endpoint="/v1/chat/completions", window="24h", metadata=None, estimate=None,
                  test=False, input_file_id=None, batch_id=None, status=None, error=None, pid=4242, host="here",
                  started=1_700_000_000.0, updated=1_700_000_000.0)
    values.update(fields)
    return Entry(**values)


EARLIER = entry(batch_id="batch_earlier")
DUPLICATE_MESSAGE = ("batch.jsonl: this content was already submitted as batch_earlier at 2023-11-14T22:13:20Z "
                     f"(intl, {HERE}); pass --force to submit it again")


def test_fresh_content_goes_ahead():
    decision = decide(History(earlier=None), "batch.jsonl", force=False)
    assert decision.refusal is None and decision.resume is None and decision.duplicate is None
    assert decision.notes == () and decision.create


def test_content_submitted_before_is_refused_naming_the_earlier_batch():
    elsewhere = entry(INTENT, base_url=THERE)
    decision = decide(History(earlier=EARLIER, elsewhere=(elsewhere,)), "batch.jsonl", force=False)
    assert decision.refusal is not None
    assert decision.refusal.kind == DUPLICATE
    assert decision.refusal.message == DUPLICATE_MESSAGE
    assert decision.notes == ()  # refused before anything else is said
    assert not decision.create


def test_force_submits_content_again():
    decision = decide(History(earlier=EARLIER), "batch.jsonl", force=True)
    assert decision.refusal is None and decision.duplicate is None and decision.create


def test_an_interrupted_submission_is_resumed_oldest_first():
    older = entry(UPLOADED, token="older", input_file_id="file-1", started=1_600_000_000.0)
    newer = entry(INTENT, token="newer")
    decision = decide(History(earlier=None, pending=(older, newer)), "batch.jsonl", force=False)
    assert decision.resume is older
    assert decision.refusal is None and decision.create


def test_a_duplicate_with_an_interrupted_run_only_looks_that_run_up():
    pending = entry(UPLOADED, token="p", input_file_id="file-1")
    decision = decide(History(earlier=EARLIER, pending=(pending,)), "batch.jsonl", force=False)
    assert decision.resume is pending and decision.refusal is None
    assert decision.duplicate == DUPLICATE_MESSAGE
    assert not decision.create  # it may find the run's batch, but makes none


def test_a_submission_pending_elsewhere_is_noted():
    there = entry(INTENT, base_url=THERE, started=1_700_000_060.0)
    decision = decide(History(earlier=None, elsewhere=(there,)), "batch.jsonl", force=False)
    assert decision.notes == (f"an interrupted submission of this content to {THERE} (2023-11-14T22:14:20Z) is "
                              f"pending; submit with --base-url {THERE} to recover it",)
    assert decision.refusal is None and decision.resume is None and decision.create


def test_a_submission_another_live_process_owns_is_not_taken_over():
    pending = entry(INTENT, pid=31337)
    there = entry(INTENT, base_url=THERE)
    decision = decide(History(earlier=None, pending=(pending,), elsewhere=(there,), busy=True), "batch.jsonl",
                      force=False)
    assert decision.refusal is not None and decision.refusal.kind == BUSY
    assert decision.refusal.message == ("batch.jsonl: process 31337 is submitting this content right now; "
                                        "let it finish, then check with batchplan status")
    assert len(decision.notes) == 1  # said before stopping


def test_read_history_splits_pending_by_base_url(tmp_path):
    digest = "cd" * 32
    with Ledger(tmp_path) as ledger:
        made = ledger.begin(sha256=digest, path="a.jsonl", region="intl", base_url=HERE,
                            endpoint="/v1/chat/completions", window="24h")
        ledger.mark_created(made.token, "batch_1")
        here = ledger.begin(sha256=digest, path="a.jsonl", region="intl", base_url=HERE,
                            endpoint="/v1/chat/completions", window="24h")
        there = ledger.begin(sha256=digest, path="a.jsonl", region="cn", base_url=THERE,
                             endpoint="/v1/chat/completions", window="24h")
        ledger.begin(sha256="ef" * 32, path="b.jsonl", region="intl", base_url=HERE,
                     endpoint="/v1/chat/completions", window="24h")
        history = read_history(ledger, digest, HERE)
    assert history.earlier.batch_id == "batch_1"
    assert [e.token for e in history.pending] == [here.token]
    assert [e.token for e in history.elsewhere] == [there.token]
    assert history.busy is False  # written by this very process

