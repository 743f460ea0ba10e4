"""batchplan pilot end to end against the loopback fake (real HTTP, real
openai client, streaming with usage): the draw, the guard, a 429 storm,
bounded 5xx retries, Ctrl-C, the output lines, and reading them back as
compare --calibrate does, with the prompt-count check."""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import pytest

from batchplan.catalog.catalog import default_catalog
from batchplan.errors import GuardError
from batchplan.jobs import calibrate as cal
from batchplan.jobs.ledger import Ledger
from batchplan.jobs.pilot import ChatClient, PilotError, PilotInterrupted, run_pilot, useful_limit
from batchplan.jobs.results import classify
from batchplan.planning import estimate as est
from batchplan.planning.planner import Planner, count_prompt_tokens, plan_files
from tests.fakes.chat_completions import ChatCompletions
from tests.fakes.dashscope_server import FakeDashScope

KEY = "sk-pilot-test"
PLANTED = 2  # the fake bills qwen3.5-plus this many prompt tokens more than batchplan counts


class FakeTime:
    """clock and sleep for the pacer and the backoff: sleeping advances the clock, nothing waits."""

    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


def billed_prompt_tokens(body) -> int:
    tokens = count_prompt_tokens(body)
    return tokens + PLANTED if body["model"] == "qwen3.5-plus" else tokens


@pytest.fixture(scope="module")
def server():
    with FakeDashScope(api_key=KEY) as fake:
        ChatCompletions(median=200, sigma=0.8, prompt_tokens_fn=billed_prompt_tokens).attach(fake)
        yield fake


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    path = tmp_path_factory.mktemp("job") / "job.jsonl"
    words = ["translate", "summarise", "explain", "list", "rewrite", "classify"]
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(600):
            model = "qwen-plus" if i % 3 else ("qwen-flash" if i % 2 else "qwen3.5-plus")
            body = {"model": model, "max_tokens": 1500, "temperature": 0.7,
                    "messages": [{"role": "user", "content": f"{words[i % 6]} item {i}: " + "lorem ipsum " * (i % 17)}]}
            if model == "qwen3.5-plus":
                body["enable_thinking"] = True
            handle.write(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n")
    return str(path)


def client(server) -> ChatClient:
    return ChatClient(KEY, server.base_url)


def pilot(server, job, out, **options):
    t = options.pop("time", None) or FakeTime()
    options.setdefault("confirm", lambda text: True)
    return run_pilot([job], str(out), client=client(server), sleep=t.sleep, clock=t.clock, workers=1, **options)


def lines(path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def chat_posts(server) -> int:
    return server.count("POST", "/chat/completions")


def test_pilot_records_batch_output_lines_from_a_seeded_stratified_draw(server, job, tmp_path):
    served_before = len(server.chat.served)
    with Ledger(tmp_path / "ledger") as ledger:
        result = pilot(server, job, tmp_path / "p.jsonl", requests=30, seed=7, ledger=ledger, concurrency=3)
        entry = ledger.get(result.entry.token)
    assert entry.status == "completed" and entry.endpoint == "/v1/chat/completions" and entry.metadata["kind"] == "pilot"
    got = lines(tmp_path / "p.jsonl")
    assert len(got) == 30 and result.ok == 30
    ids = {g["custom_id"] for g in got}
    assert len(ids) == 30
    # every stratum (model x thinking x tier) is in it, in proportion to its lines, at least 2
    models = [g["pilot"]["stratum"]["model"] for g in got]
    assert models.count("qwen-plus") == 20 and models.count("qwen-flash") == 5 and models.count("qwen3.5-plus") == 5
    for g in got:
        r = classify(g, 1)
        assert r.ok and r.completion_tokens is not None and r.prompt_tokens is not None
        assert g["response"]["body"]["object"] == "chat.completion"
    # bodies unchanged but for the stream fields; thinking requests streamed their reasoning
    served = server.chat.served[served_before:]
    for body, usage in served:
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        assert body["max_tokens"] == 1500 and body["temperature"] == 0.7
    thinking = [g for g in got if g["pilot"]["stratum"]["thinking"]]
    assert thinking and all(g["response"]["body"]["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0 for g in thinking)
    assert all(g["response"]["body"]["choices"][0]["message"].get("reasoning_content") for g in thinking)
    # the same seed draws the same requests; another seed, others
    again = pilot(server, job, tmp_path / "q.jsonl", requests=30, seed=7)
    assert {s.candidate.custom_id for s in again.sent} == ids
    other = pilot(server, job, tmp_path / "r.jsonl", requests=30, seed=8)
    assert {s.candidate.custom_id for s in other.sent} != ids


def test_guard_refuses_over_the_budget_and_without_confirmation(server, job, tmp_path):
    before = chat_posts(server)
    with pytest.raises(GuardError, match="over the budget 0.0001 USD by"):
        pilot(server, job, tmp_path / "p.jsonl", requests=20, max_cost=Decimal("0.0001"))
    with pytest.raises(GuardError, match="not confirmed"):
        pilot(server, job, tmp_path / "p.jsonl", requests=20, confirm=lambda text: False)
    assert chat_posts(server) == before
    assert not (tmp_path / "p.jsonl").exists()
    with pytest.raises(PilotError, match="larger than is useful"):
        pilot(server, job, tmp_path / "p.jsonl", requests=500)
    assert useful_limit(600) == 60 and useful_limit(100_000) == 1000 and useful_limit(50) == 20


def test_a_429_storm_is_survived(server, job, tmp_path):
    t = FakeTime()
    before = server.count("POST", "/chat/completions", status=429)
    server.inject("POST", "/chat/completions", "429", times=25)
    result = pilot(server, job, tmp_path / "p.jsonl", requests=12, seed=3, concurrency=4, time=t)
    assert server.count("POST", "/chat/completions", status=429) - before == 25
    assert result.ok == 12 and result.throttled == 25
    assert len(lines(tmp_path / "p.jsonl")) == 12
    backoffs = [s for s in t.slept if s >= 0.5]
    assert len(backoffs) >= 25 and max(backoffs) <= 30


def test_5xx_is_retried_a_bounded_number_of_times(server, job, tmp_path):
    server.inject("POST", "/chat/completions", "500", times=4)
    result = pilot(server, job, tmp_path / "p.jsonl", requests=20, seed=4, concurrency=1)
    got = lines(tmp_path / "p.jsonl")
    assert len(got) == 20
    failed = [g for g in got if g["error"] is not None]
    assert len(failed) == 1 and failed[0]["pilot"]["attempts"] == 4 and failed[0]["response"]["status_code"] == 500
    assert result.ok == 19


def test_ctrl_c_keeps_the_answers_so_far(server, job, tmp_path):
    seen = []

    def interrupt_after_three(sent):
        seen.append(sent)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with Ledger(tmp_path / "ledger") as ledger:
        with pytest.raises(PilotInterrupted, match="3 answer"):
            pilot(server, job, tmp_path / "p.jsonl", requests=20, seed=5, concurrency=1, on_result=interrupt_after_three,
                  ledger=ledger)
        assert ledger.latest().status == "interrupted"
    got = lines(tmp_path / "p.jsonl")
    assert [g["custom_id"] for g in got] == [s.candidate.custom_id for s in seen]
    assert all(classify(g, 1).ok for g in got)
    # what was kept is a pilot compare can read
    assert len(cal.read_pilot(str(tmp_path / "p.jsonl")).sampled) == 3


def test_compare_reads_the_pilot_and_flags_the_planted_prompt_mismatch(server, job, tmp_path):
    out = tmp_path / "p.jsonl"
    pilot(server, job, out, requests=60, seed=11, concurrency=4)
    assert cal.is_pilot(str(out)) and not cal.is_pilot(job)
    sample = cal.read_pilot(str(out))
    catalog = default_catalog()
    population = est.Population(sample.design, catalog, "intl", {s.custom_id for s in sample.sampled})
    result = plan_files([job], planner=Planner(catalog, "intl"), workers=1, on_request=population.add)
    estimate = cal.pilot_estimate(sample, population, result, catalog)
    assert set(estimate.models) == {"qwen-plus", "qwen-flash", "qwen3.5-plus"} and estimate.total is not None
    checks = {c.model: c for c in estimate.checks}
    assert checks["qwen-plus"].agrees and checks["qwen-flash"].agrees
    planted = checks["qwen3.5-plus"]
    assert not planted.agrees and planted.exact == 0 and planted.mean_difference == PLANTED
    assert planted.approximate == bool(catalog.model("qwen3.5-plus").count_note)  # the catalog says which are
    # the expected output is far below the worst case, and the interval holds the truth the fake knows
    truth = sum(server.chat.completion_tokens(json.loads(line)["body"]) for line in open(job, encoding="utf-8"))
    total = estimate.total.output_tokens
    assert total.low <= truth <= total.high
    assert estimate.total.batch_cost.high < result.plan.total().batch_cost


def test_target_tops_up_from_the_first_round_within_the_useful_limit(server, job, tmp_path):
    notes = []
    result = pilot(server, job, tmp_path / "p.jsonl", target=0.05, seed=9, concurrency=4, notify=notes.append)
    assert len(result.guard) >= 2  # the first round and a top-up, each guarded
    assert len(result.sent) == useful_limit(600) == 60
    assert "capped at 60" in result.target and any("needs about" in n for n in notes)
    assert len({s.candidate.custom_id for s in result.sent}) == 60  # a top-up never sends a request twice
    loose = pilot(server, job, tmp_path / "q.jsonl", target=0.9, seed=9, notify=notes.append)
    assert len(loose.sent) == 30 and any(n.startswith("reached") for n in notes)  # the first round was enough


def test_embeddings_are_not_piloted_and_count_at_their_exact_cost(server, tmp_path):
    path = tmp_path / "mixed.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(300):
            if i % 4 == 0:
                doc = {"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
                       "body": {"model": "text-embedding-v4", "input": f"text number {i}"}}
            else:
                doc = {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "qwen-plus", "max_tokens": 800, "messages": [{"role": "user", "content": f"hi {i}"}]}}
            handle.write(json.dumps(doc) + "\n")
    out = tmp_path / "p.jsonl"
    result = pilot(server, str(path), out, requests=20, seed=1)
    assert all(s.candidate.custom_id.startswith("c") for s in result.sent)
    sample = cal.read_pilot(str(out))
    catalog = default_catalog()
    population = est.Population(sample.design, catalog, "intl", {s.custom_id for s in sample.sampled})
    plan = plan_files([str(path)], planner=Planner(catalog, "intl"), workers=1, on_request=population.add)
    estimate = cal.pilot_estimate(sample, population, plan, catalog)
    embeddings = next(row for (model, _, _), row in plan.plan.rows.items() if model == "text-embedding-v4")
    chat = estimate.models["qwen-plus"]
    assert estimate.total.realtime_cost.estimate == chat.realtime_cost.estimate + embeddings.realtime_cost
    assert estimate.total.lines == 300


def test_an_error_event_inside_a_stream_is_backed_off_and_retried(server, job, tmp_path):
    server.chat.break_streams = 2
    result = pilot(server, job, tmp_path / "p.jsonl", requests=10, seed=12, concurrency=1)
    assert server.chat.break_streams == 0
    assert result.ok == 10 and result.throttled == 2


def test_the_budget_holds_for_the_whole_pilot_not_each_round(server, job, tmp_path):
    catalog = default_catalog()
    first = pilot(server, job, tmp_path / "a.jsonl", target=0.05, seed=9)
    whole = first.guard[-1]
    assert whole.startswith("top-up of") and whole.endswith("in all")
    # a budget the first round fits but the whole pilot does not: the top-up is refused, the first round kept
    from batchplan.jobs.pilot import candidates, draw, first_counts, worst_cost

    _, rows = candidates([job], catalog, "intl", 1)
    d = draw(rows, 9, 30)
    budget = worst_cost(d.take(first_counts(d, 30))) * Decimal("1.01")
    with pytest.raises(GuardError, match="over the budget"):
        pilot(server, job, tmp_path / "b.jsonl", target=0.05, seed=9, max_cost=budget)
    assert len(lines(tmp_path / "b.jsonl")) == 30


def test_done_when_a_pilot_under_one_percent_of_the_job_covers_its_real_total(tmp_path):
    # A job the estimator was not tuned on: 12,000 requests, answers log-normal
    # with sigma 1.0 (CV 1.3) around 250 tokens, 2,000 max_tokens; one pilot of 50.
    path = tmp_path / "big.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(12_000):
            body = {"model": "qwen-plus", "max_tokens": 2000,
                    "messages": [{"role": "system", "content": "You answer support tickets."},
                                 {"role": "user", "content": f"Ticket {i}: " + "the app crashes when " * (1 + i % 29)}]}
            handle.write(json.dumps({"custom_id": f"t{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n")
    with FakeDashScope(api_key=KEY) as fake:
        chat = ChatCompletions(median=250, sigma=1.0, seed=2026, prompt_tokens_fn=count_prompt_tokens).attach(fake)
        out = tmp_path / "p.jsonl"
        t = FakeTime()
        run_pilot([str(path)], str(out), client=ChatClient(KEY, fake.base_url), requests=50, seed=2026,
                  confirm=lambda text: True, sleep=t.sleep, clock=t.clock, workers=1)
        catalog = default_catalog()
        calibration = cal.PilotCalibration(str(out), catalog, "intl")
        result = plan_files([str(path)], planner=Planner(catalog, "intl"), workers=1, on_request=calibration.add)
        estimate = calibration.estimate(result)
        with open(path, encoding="utf-8") as handle:
            truth = sum(chat.completion_tokens(json.loads(line)["body"]) for line in handle)
    total = estimate.total
    assert total.output_tokens.low <= truth <= total.output_tokens.high
    price = catalog.model("qwen-plus").price("intl").tiers[0]
    job_batch = (result.plan.total().input_tokens * price.input + truth * price.output) / 1_000_000 / 2
    assert total.batch_cost.low <= job_batch <= total.batch_cost.high
    pilot_cost = sum((Decimal(u["prompt_tokens"]) * price.input + Decimal(u["completion_tokens"]) * price.output) / 1_000_000
                     for u in (line["response"]["body"]["usage"] for line in lines(out)))
    assert pilot_cost < job_batch / 100  # real-time, as billed: under 1% of the job's batch cost
