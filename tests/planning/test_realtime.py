"""Real-time or batch: each price rule with hand-computed Decimal figures.

A test model bills 1 USD per 1M input tokens and 2 per 1M output tokens, so
every figure below can be worked out by hand. A fake counter counts one token
per character (and one per special token), so prompt lengths are exact:

    system "x"*n, user "u"*k  ->  n + k + 29 prompt tokens; the system turn
    (the shared prefix) ends at n + 10 tokens.
"""

import copy
import json
from collections import Counter
from decimal import Decimal

import pytest

from batchplan.catalog.catalog import default_catalog
from batchplan.planning import cache
from batchplan.planning.aggregate import Plan, Row
from batchplan.planning.cache import IMPLICIT, ModelStats, Prefix, cache_tokens
from batchplan.planning.planner import Planner, plan_files
from batchplan.planning.reading import Line
from batchplan.planning.realtime import RateLimit, RealtimeOptions, break_even, decide, duration_seconds, rate_limit
from batchplan.planning.templates import render
from tests.conftest import SAMPLES, line

M = Decimal(1_000_000)


class CharCounter:
    """One token per character, one per special token."""

    def count_text(self, text):
        return len(text)

    def prompt_tokens(self, body, url="/v1/chat/completions", template="qwen3"):
        return sum(1 if p is None else len(p) for p in render(body, template))


def test_catalog(**changes):
    base = default_catalog().raw
    cc = copy.deepcopy(base["context_cache"])
    cc["implicit_models"] = ["m-test"]
    cc["explicit_models"] = ["m-test"]
    rl = copy.deepcopy(base["rate_limits"])
    rl["models"] = {"m-test": {"rpm": 60, "tpm": 6000}}
    overlay = {
        "models": {"m-test": {"kind": "chat", "template": "qwen3", "aliases": ["m-test-latest"], "limits": {},
                              "prices": {"intl": {"tiers": [{"max_input_tokens": None, "input": "1", "output": "2"}]}}}},
        "context_cache": cc,
        "rate_limits": rl,
        **changes,
    }
    return default_catalog().merged(overlay)


test_catalog.__test__ = False  # a helper, not a test


def request(i, n, k=10, model="m-test", explicit=False, max_tokens=10):
    system = "x" * n
    content = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}] if explicit else system
    # Users differ (by their first letter) but have the same length k.
    user = chr(ord("a") + i) + "u" * (k - 1)
    return line(str(i), model=model, messages=[{"role": "system", "content": content}, {"role": "user", "content": user}],
                max_tokens=max_tokens)


def plan_of(lines, options=RealtimeOptions(), catalog=None, region="intl"):
    catalog = catalog or test_catalog()
    planner = Planner(catalog, region, counter=CharCounter(), realtime_stats=options.collects)
    plan = planner.plan_lines(Line(i + 1, text.encode()) for i, text in enumerate(lines))
    return plan, decide(plan, catalog, region, "USD", Decimal("0.5"), options)


def only(decision):
    (m,) = decision.models
    return m


# -- the context cache --------------------------------------------------------

def test_implicit_best_bills_hits_at_20_percent():
    # 4 requests of 290 + 10 + 29 = 329 tokens; the 300-token system turn is
    # shared: the first use creates it, 3 repeats hit: 900 hit tokens.
    plan, d = plan_of([request(i, 290) for i in range(4)], RealtimeOptions(cache="best"))
    m = only(d)
    assert m.input_tokens == 1316 and m.output_tokens == 40
    assert m.hit_tokens == 900
    assert m.hit_share == Decimal(900) / Decimal(1316)
    assert m.list_cost == Decimal("0.001396")  # (1316 x 1 + 40 x 2) / 1M
    assert m.list_cost == plan.total().realtime_cost
    # (1316 - 900) x 1 + 900 x 0.2 = 596 input; output 80 at full price.
    assert m.realtime_cost == Decimal(596 + 80) / M
    assert m.batch_cost == Decimal("0.000698")
    assert m.cheaper == "real-time" and m.difference == Decimal("0.000022")
    assert "real-time is cheaper by 0.000022 USD" in m.verdict and "cache=best (hit share 68%)" in m.verdict


def test_implicit_expected_counts_whole_256_token_blocks():
    _, d = plan_of([request(i, 290) for i in range(4)], RealtimeOptions(cache="expected"))
    m = only(d)
    assert m.hit_tokens == 768  # 300 -> 256 per repeat, 3 repeats
    # (1316 - 768) + 768 x 0.2 = 701.6 input, + 80 output
    assert m.realtime_cost == (Decimal("701.6") + 80) / M
    assert m.cheaper == "batch" and m.difference == Decimal("0.0007816") - Decimal("0.000698")


def test_implicit_minimum_is_256_tokens():
    # System turn of 246 + 10 = 256 tokens: cached. Of 255: not.
    _, at = plan_of([request(i, 246) for i in range(3)], RealtimeOptions(cache="best"))
    _, below = plan_of([request(i, 245) for i in range(3)], RealtimeOptions(cache="best"))
    assert only(at).hit_tokens == 512
    assert only(below).hit_tokens == 0
    assert only(below).realtime_cost == only(below).list_cost


def test_explicit_creation_at_125_and_hits_at_10_percent():
    # 3 requests, a 1,100-token marked system turn: created once, hit twice.
    _, d = plan_of([request(i, 1090, explicit=True) for i in range(3)], RealtimeOptions(cache="best"))
    m = only(d)
    assert m.cache_modes == ("implicit", "explicit")
    assert m.input_tokens == 3387 and m.created_tokens == 1100 and m.hit_tokens == 2200
    # 87 x 1 + 1100 x 1.25 + 2200 x 0.1 = 1682 input, + 30 x 2 output
    assert m.realtime_cost == Decimal(1682 + 60) / M
    assert m.batch_cost == Decimal("0.0017235")
    # Explicit hits are guaranteed: expected counts them the same.
    _, e = plan_of([request(i, 1090, explicit=True) for i in range(3)], RealtimeOptions(cache="expected"))
    assert only(e).realtime_cost == m.realtime_cost


def test_explicit_minimum_is_1024_tokens_and_excludes_implicit():
    _, at = plan_of([request(i, 1014, explicit=True) for i in range(2)], RealtimeOptions(cache="best"))
    assert only(at).created_tokens == 1024 and only(at).hit_tokens == 1024
    # 1,023 tokens: no explicit cache, and a marked request gets no implicit one either.
    _, below = plan_of([request(i, 1013, explicit=True) for i in range(2)], RealtimeOptions(cache="best"))
    assert only(below).created_tokens == 0 and only(below).hit_tokens == 0
    assert only(below).realtime_cost == only(below).list_cost


@pytest.mark.parametrize("model", ["m-test-2025-01-01", "m-test-latest"])
def test_snapshot_and_latest_models_get_no_cache(model):
    _, d = plan_of([request(i, 290, model=model) for i in range(4)], RealtimeOptions(cache="best"))
    m = only(d)
    assert m.list_cost == Decimal("0.001396")  # priced as the base model
    assert m.hit_tokens == 0 and m.realtime_cost == m.list_cost
    assert m.cache_note == "no cache: snapshot or -latest model" and "snapshot or -latest" in m.verdict
    # and they take the snapshot rate limits (60 RPM / 100,000 TPM)
    assert (m.rate_limit.rpm, m.rate_limit.tpm) == (60, 100_000)


def test_cache_none_keeps_the_list_figures():
    plan, d = plan_of([request(i, 290) for i in range(4)])
    m = only(d)
    assert plan.realtime is None  # nothing collected on the hot path
    assert m.hit_tokens == 0 and m.realtime_cost == m.list_cost == plan.total().realtime_cost
    assert m.batch_cost == plan.total().batch_cost
    assert m.cheaper == "batch" and m.difference == Decimal("0.000698") and m.difference_share == Decimal("0.5")


def test_a_miss_is_counted_against_the_dearest_tier():
    s = ModelStats(prefixes={b"k": Prefix(300, 0, IMPLICIT, Counter({"<=32K": 2, ">32K": 1}))})
    got = cache_tokens(s, "best", 256, ["<=32K", ">32K"])
    assert got["<=32K"][IMPLICIT].hit == 600 and got[">32K"][IMPLICIT].hit == 0


def test_nested_prefixes_hit_their_own_increment():
    # Prefix A (300) used by 3 requests, its extension A+B (700) by 2 of them.
    s = ModelStats(prefixes={
        b"a": Prefix(300, 0, IMPLICIT, Counter({"flat": 3})),
        b"ab": Prefix(700, 300, IMPLICIT, Counter({"flat": 2})),
    })
    assert cache_tokens(s, "best", 256, ["flat"])["flat"][IMPLICIT].hit == 300 * 2 + 400 * 1
    # expected: 256 x 2 + (512 - 256) x 1
    assert cache_tokens(s, "expected", 256, ["flat"])["flat"][IMPLICIT].hit == 512 + 256


# -- break-even ---------------------------------------------------------------

def test_break_even_from_catalog_factors():
    assert break_even(Decimal("0.5"), Decimal("0.2")) == Decimal("0.625")
    assert break_even(Decimal("0.5"), Decimal("0.1")) == Decimal("0.5") / Decimal("0.9")
    assert break_even(Decimal("0.5"), Decimal("1")) is None
    _, d = plan_of([request(0, 290)])
    assert d.break_even_hit_share == Decimal("0.625")
    # At that share, real-time input costs what batch input does: 1 - 0.8 h = 0.5.
    h = d.break_even_hit_share
    assert 1 - (1 - d.implicit_hit_factor) * h == d.batch_factor
    # A catalog with the Apr 2025 factor (40%) moves it: 0.5 / 0.6.
    cc = copy.deepcopy(default_catalog().raw["context_cache"])
    cc["implicit"]["hit_factor"] = "0.4"
    _, old = plan_of([request(0, 290)], catalog=test_catalog(context_cache=cc))
    assert old.break_even_hit_share == Decimal("0.5") / Decimal("0.6")


# -- free quota ---------------------------------------------------------------

def test_free_quota_comes_off_real_time_only_cheapest_tokens_first():
    lines = [request(i, 290) for i in range(4)]  # 1,316 input at 1/1M, 40 output at 2/1M
    _, none = plan_of(lines)
    _, q100 = plan_of(lines, RealtimeOptions(free_quota=True, free_quota_tokens=100))
    m = only(q100)
    assert m.free_tokens == 100 and m.free_quota_saving == Decimal(100) / M  # input tokens first
    assert m.realtime_cost == Decimal("0.001296")
    assert m.batch_cost == only(none).batch_cost == Decimal("0.000698")
    # All input and 20 of the 40 output tokens: 0.001316 + 0.00004 off.
    _, q1336 = plan_of(lines, RealtimeOptions(free_quota=True, free_quota_tokens=1336))
    assert only(q1336).realtime_cost == Decimal("0.00004")
    # The catalog's 1,000,000 tokens cover the whole job: real-time is free.
    _, full = plan_of(lines, RealtimeOptions(free_quota=True))
    assert only(full).free_tokens == 1356 and only(full).realtime_cost == 0
    assert only(full).cheaper == "real-time" and only(full).batch_cost == Decimal("0.000698")
    assert "free quota 1,356 tokens" in only(full).verdict


def test_free_quota_after_cache_uses_the_cached_input_price():
    lines = [request(i, 290) for i in range(4)]
    _, d = plan_of(lines, RealtimeOptions(cache="best", free_quota=True, free_quota_tokens=100))
    m = only(d)
    # Input after cache costs 596/1M for 1,316 tokens, cheaper per token than output.
    assert m.free_quota_saving == Decimal("0.000596") * 100 / 1316
    assert m.realtime_cost == Decimal("0.000676") - m.free_quota_saving


def test_free_quota_only_in_its_regions():
    fq = copy.deepcopy(default_catalog().raw["free_quota"])
    del fq["regions"]["intl"]
    _, d = plan_of([request(0, 290)], RealtimeOptions(free_quota=True), catalog=test_catalog(free_quota=fq))
    assert only(d).free_tokens == 0 and only(d).realtime_cost == only(d).list_cost
    assert "no free quota applies in region intl" in d.notes


# -- duration -----------------------------------------------------------------

def test_duration_rpm_bound_and_tpm_bound():
    # 600 requests at 600 RPM = 10 a second: 60 s; tokens far below the limit.
    assert duration_seconds(600, 6000, RateLimit(600, 1_000_000)) == (60, "RPM")
    # 12 requests of 100,000 tokens at 1,000,000 TPM = 16,667 tokens a second: 72 s.
    assert duration_seconds(12, 1_200_000, RateLimit(600, 1_000_000)) == (72, "TPM")
    # A small job takes whole seconds, never zero.
    assert duration_seconds(1, 10, RateLimit(600, 1_000_000)) == (1, "RPM")


def test_duration_of_a_plan_at_catalog_and_overridden_limits():
    lines = [request(i, 290) for i in range(4)]  # 1,316 + 40 = 1,356 tokens
    _, d = plan_of(lines)
    m = only(d)
    # 60 RPM: 4 s; 6,000 TPM = 100 tokens a second: 13.56 -> 14 s. TPM-bound.
    assert (m.duration_seconds, m.duration_bound) == (14, "TPM")
    assert m.inside_window is True and "inside the 24h batch window" in m.verdict
    _, fast = plan_of(lines, RealtimeOptions(tpm=1_000_000))
    assert (only(fast).duration_seconds, only(fast).duration_bound) == (4, "RPM")
    assert only(fast).rate_limit.source == "--rpm/--tpm"


def test_duration_outside_the_window_and_unknown_limits():
    catalog = test_catalog()
    rows = {("m-test", "flat", False): Row(100_000, 1_000_000, 100_000, Decimal("1.2"), Decimal("0.6"))}
    d = decide(Plan(rows=rows), catalog, "intl", "USD", Decimal("0.5"))
    m = only(d)
    assert m.duration_seconds == 100_000 and m.inside_window is False  # 100,000 requests at 1 a second
    assert "outside the 24h batch window" in m.verdict
    d14 = decide(Plan(rows=rows), catalog, "intl", "USD", Decimal("0.5"), RealtimeOptions(window_hours=336))
    assert only(d14).inside_window is True
    # A model with no limits in the catalog: unknown, never zero.
    rows = {("qwen3-max", "<=32K", False): Row(1, 10, 10, Decimal("0.1"), Decimal("0.05"))}
    d = decide(Plan(rows=rows), catalog, "intl", "USD", Decimal("0.5"))
    assert only(d).duration_seconds is None and only(d).inside_window is None
    assert d.total.duration_seconds is None and "duration unknown" in d.total.verdict


def test_flash_limits_are_marked_unconfirmed():
    limit = rate_limit(default_catalog(), "qwen-flash")
    assert (limit.rpm, limit.tpm, limit.unconfirmed) == (15_000, 10_000_000, True)
    assert rate_limit(default_catalog(), "qwen-plus") == RateLimit(600, 1_000_000, False, "catalog")


def test_unknown_price_gives_an_unknown_verdict():
    rows = {("mystery", "-", False): Row(1, 10, 10, None, None)}
    d = decide(Plan(rows=rows), default_catalog(), "intl", "USD", Decimal("0.5"))
    assert only(d).cheaper is None and only(d).realtime_cost is None and "cost unknown" in only(d).verdict
    assert d.total.realtime_cost is None and d.total.cheaper is None


# -- merging: chunks, workers ---------------------------------------------------

def test_chunked_plans_merge_to_the_same_decision():
    lines = [request(i % 5, 290 + 500 * (i % 3), explicit=i % 4 == 0) for i in range(30)]
    catalog = test_catalog()
    options = RealtimeOptions(cache="expected", free_quota=True, free_quota_tokens=500)
    planner = Planner(catalog, "intl", counter=CharCounter(), realtime_stats=True)
    numbered = [Line(i + 1, t.encode()) for i, t in enumerate(lines)]
    whole = planner.plan_lines(numbered)
    chunks = [planner.plan_lines(numbered[a:b]) for a, b in ((0, 7), (7, 19), (19, 30))]
    forward = chunks[0].merge(chunks[1]).merge(chunks[2])
    backward = chunks[2].merge(chunks[1].merge(chunks[0]))
    want = decide(whole, catalog, "intl", "USD", Decimal("0.5"), options)
    assert want.total.hit_tokens > 0 and want.total.created_tokens > 0
    for merged in (forward, backward):
        assert decide(merged, catalog, "intl", "USD", Decimal("0.5"), options) == want
        assert merged.realtime.models["m-test"].prefixes == whole.realtime.models["m-test"].prefixes


def test_worker_processes_give_the_same_result(tmp_path):
    path = tmp_path / "big.jsonl"
    source = (SAMPLES / "chat_shared_system.jsonl").read_text("utf-8")
    path.write_text(source * 40, encoding="utf-8")
    options = RealtimeOptions(cache="expected")
    one = plan_files([str(path)], workers=1, realtime=options)
    two = plan_files([str(path)], workers=2, parallel_min_bytes=0, realtime=options)
    assert one.realtime.total.hit_tokens > 0
    assert two.realtime == one.realtime


def test_prefix_table_is_bounded_the_same_whatever_the_chunking(monkeypatch):
    monkeypatch.setattr(cache, "MAX_PREFIXES", 8)
    lines = [request(i, 290 + i) for i in range(20)]  # 20 distinct prefixes
    planner = Planner(test_catalog(), "intl", counter=CharCounter(), realtime_stats=True)
    numbered = [Line(i + 1, t.encode()) for i, t in enumerate(lines)]
    whole = planner.plan_lines(numbered).realtime.models["m-test"]
    assert len(whole.prefixes) <= 16  # trimmed while planning, at twice the bound
    whole = whole.normalized()
    parts = planner.plan_lines(numbered[:9]).merge(planner.plan_lines(numbered[9:])).realtime.models["m-test"].normalized()
    small = planner.plan_lines(numbered[:3]).merge(planner.plan_lines(numbered[3:])).realtime.models["m-test"].normalized()
    assert whole.truncated and len(whole.prefixes) == 8
    assert parts.prefixes == whole.prefixes == small.prefixes and parts.truncated and small.truncated


def test_many_unique_questions_keep_the_shared_prefix(monkeypatch):
    """The last turn of a request is not a prefix: 50 requests with their own
    questions behind one shared 300-token system turn hold one prefix, not 51,
    so a small table is not truncated and every repeat of the system turn hits."""
    monkeypatch.setattr(cache, "MAX_PREFIXES", 8)
    plan, d = plan_of([request(i, 290) for i in range(50)], RealtimeOptions(cache="best"))
    stats = plan.realtime.models["m-test"]
    assert len(stats.prefixes) == 1 and not stats.truncated
    assert only(d).hit_tokens == 300 * 49


# -- the CLI and the JSON document ----------------------------------------------

def test_compare_prints_a_verdict_and_json_has_the_realtime_block(run):
    out = run("compare", SAMPLES / "chat_shared_system.jsonl", "--cache", "expected").stdout
    assert "Real-time or batch (cache=expected" in out
    assert "qwen-plus: batch is cheaper by" in out and "cache=expected (hit share" in out
    assert "Break-even: batch is cheaper on input while the implicit cache hit share is under 62.5%" in out
    doc = json.loads(run("compare", SAMPLES / "chat_shared_system.jsonl", "--cache", "best", "--free-quota", "1000", "--json").stdout)
    rt = doc["realtime"]
    assert doc["schema"] == "batchplan.plan/1"
    assert rt["cache"] == "best" and rt["free_quota"] is True and rt["free_quota_tokens_per_model"] == 1000
    assert rt["break_even_hit_share"] == "0.625"
    (m,) = rt["models"]
    assert m["model"] == "qwen-plus" and m["free_quota_tokens"] == 1000
    assert Decimal(m["realtime_cost"]) == Decimal(m["realtime_list_cost"]) - Decimal(m["cache_saving"]) - Decimal(m["free_quota_saving"])
    assert m["batch_cost"] == doc["total"]["batch_cost"]  # batch untouched
    assert m["rate_limit"] == {"rpm": 600, "tpm": 1000000, "unconfirmed": False, "source": "catalog"}
    assert rt["verdict"] == rt["total"]["verdict"] and rt["verdict"].startswith("TOTAL: ")


def test_compare_rejects_bad_realtime_options(run):
    sample = SAMPLES / "chat_shared_system.jsonl"
    bad = run("compare", sample, "--free-quota", "lots")
    assert bad.exit_code == 2 and "is not a number of tokens" in bad.output
    bad = run("compare", sample, "--window", "2h")
    assert bad.exit_code == 2 and "outside the allowed" in bad.output
    bad = run("compare", sample, "--cache", "sometimes")
    assert bad.exit_code == 2
