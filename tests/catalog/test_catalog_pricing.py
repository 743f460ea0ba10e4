"""The catalog is data with sources; prices are exact Decimals; tiers bill whole requests."""

import json
from decimal import Decimal

import pytest

from batchplan.catalog.catalog import CatalogError, default_catalog, load_catalog
from batchplan.planning.output import OutputAssumption, estimate_output_tokens
from batchplan.planning.pricing import price_request

HALF = Decimal("0.5")
REQUIRED_MODELS = ["qwen-max", "qwen-plus", "qwen-turbo", "qwen-flash", "qwen3-max", "qwen3.5-plus", "qwen3.5-flash",
                   "qwq-plus", "qwen-long", "qwen-vl-max", "qwen-vl-plus", "text-embedding-v4", "batch-test-model"]


@pytest.fixture(scope="module")
def catalog():
    return default_catalog()


def test_catalog_covers_the_models_with_sources_and_dates(catalog):
    sources = catalog.raw["sources"]
    for name in REQUIRED_MODELS:
        model = catalog.model(name)
        assert model is not None, name
        assert model.prices, name
        for region, price in model.prices.items():
            assert price.source in sources and price.as_of, (name, region)
        assert catalog.raw["models"][name]["limits"]["source"] in sources
    assert catalog.model("qwen-long").price("cn") is not None
    assert catalog.model("qwen-long").price("intl") is None  # mainland only


def test_regions_and_currencies(catalog):
    assert catalog.currency("intl") == "USD" and catalog.currency("cn") == "CNY"
    assert catalog.regions["intl"].base_url == "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"


def test_aliases_and_snapshots_resolve(catalog):
    assert catalog.model("qwen-plus-latest").name == "qwen-plus"
    assert catalog.model("qwen-max-2025-01-25").name == "qwen-max"
    assert catalog.model("qwen-nonexistent") is None


def _price(catalog, model, input_tokens, output_tokens, thinking=False, region="intl"):
    return price_request(catalog.model(model), model, region, input_tokens, output_tokens, thinking, HALF)


def test_cost_is_exact_and_batch_is_exactly_half(catalog):
    price = _price(catalog, "qwen-plus", 22, 100)
    assert price.realtime_cost == Decimal("0.0001288")  # (22 x 0.4 + 100 x 1.2) / 1M
    assert price.batch_cost == Decimal("0.0000644")
    assert price.batch_cost * 2 == price.realtime_cost


def test_tier_boundaries_bill_the_whole_request_at_its_tier(catalog):
    at = _price(catalog, "qwen-plus", 262_144, 1000)
    over = _price(catalog, "qwen-plus", 262_145, 1000)
    assert at.tier == "<=256K" and over.tier == "<=1M"
    assert at.realtime_cost == (262_144 * Decimal("0.4") + 1000 * Decimal("1.2")) / 1_000_000
    assert over.realtime_cost == (262_145 * Decimal("1.2") + 1000 * Decimal("3.6")) / 1_000_000  # not graduated
    qwen3_max = [_price(catalog, "qwen3-max", n, 0).tier for n in (32_768, 32_769, 131_072, 131_073)]
    assert qwen3_max == ["<=32K", "<=128K", "<=128K", "<=252K"]
    past = _price(catalog, "qwen3-max", 258_049, 0)
    assert past.realtime_cost is None and "largest price tier" in past.unpriced_reason


def test_cn_tiers_and_currency(catalog):
    price = _price(catalog, "qwen-plus", 131_073, 0, region="cn")
    assert price.tier == "<=256K" and price.realtime_cost == 131_073 * Decimal("2.4") / 1_000_000


def test_thinking_price(catalog):
    plain = _price(catalog, "qwen-plus", 0, 1_000_000)
    thinking = _price(catalog, "qwen-plus", 0, 1_000_000, thinking=True)
    assert plain.realtime_cost == Decimal("1.2") and thinking.realtime_cost == Decimal("4")
    assert thinking.batch_cost == Decimal("2")
    # A model without a separate thinking price bills thinking at its output price.
    assert _price(catalog, "qwen3-max", 0, 1_000_000, thinking=True).realtime_cost == Decimal("6")


def test_unpriced_is_unknown_never_zero(catalog):
    price = _price(catalog, "qwen-mystery", 10, 10)
    assert price.realtime_cost is None and price.batch_cost is None
    assert "not in the price catalog" in price.unpriced_reason
    no_region = _price(catalog, "qwen-long", 10, 10, region="intl")
    assert no_region.realtime_cost is None and "no intl price" in no_region.unpriced_reason


def test_free_test_model_costs_zero_not_unknown(catalog):
    assert _price(catalog, "batch-test-model", 20, 6).batch_cost == Decimal(0)


def test_embeddings_have_no_output(catalog):
    model = catalog.model("text-embedding-v4")
    assert estimate_output_tokens({"model": "text-embedding-v4"}, model, 10, False, OutputAssumption(), embedding=True) == 0
    assert _price(catalog, "text-embedding-v4", 1_000_000, 0).realtime_cost == Decimal("0.07")


def test_worst_case_output(catalog):
    plus = catalog.model("qwen-plus")
    worst = OutputAssumption()
    assert estimate_output_tokens({"model": "qwen-plus", "max_tokens": 300}, plus, 5, False, worst) == 300
    assert estimate_output_tokens({"model": "qwen-plus"}, plus, 5, False, worst) == 32_768
    assert estimate_output_tokens({"model": "qwen-plus", "max_tokens": 300, "thinking_budget": 700}, plus, 5, True, worst) == 1000
    assert estimate_output_tokens({"model": "qwen-plus", "max_tokens": 300}, plus, 5, True, worst) == 300 + 81_920
    assert estimate_output_tokens({"model": "x"}, None, 5, False, worst) is None


def test_expected_output(catalog):
    plus = catalog.model("qwen-plus")
    assert estimate_output_tokens({"model": "qwen-plus", "max_tokens": 9}, plus, 5, False, OutputAssumption("per_request", tokens=200)) == 200
    assert estimate_output_tokens({"model": "qwen-plus"}, plus, 10, False, OutputAssumption("ratio", ratio=Decimal("0.25"))) == 3


def test_user_catalog_merges_over_the_shipped_one(tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"models": {
        "qwen-plus": {"prices": {"intl": {"source": "contract", "as_of": "2026-11", "tiers": [
            {"max_input_tokens": None, "input": "0.1", "output": "0.2"}]}}},
        "my-finetune": {"kind": "chat", "template": "qwen3", "limits": {"max_output": 100},
                        "prices": {"intl": {"source": "contract", "as_of": "2026-11", "tiers": [{"max_input_tokens": None, "input": "1", "output": "1"}]}}},
    }}))
    catalog = load_catalog(mine)
    assert catalog.model("qwen-plus").price("intl").tiers[0].input == Decimal("0.1")
    assert catalog.model("qwen-plus").price("cn").tiers[0].input == Decimal("0.8")  # untouched region kept
    assert catalog.model("qwen-plus").limits.max_output == 32_768  # untouched fields kept
    assert catalog.model("my-finetune").price("intl").tiers[0].output == Decimal("1")


@pytest.mark.parametrize("content, reason", [
    ("{", "not valid JSON"),
    ("[]", "JSON object"),
    (json.dumps({"models": {"x": {"prices": {"intl": {"tiers": [{"input": "abc", "output": "1"}]}}}}}),
     'models.x.prices.intl.tiers[0].input: expected a price of zero or more as a decimal string, like "0.4", found "abc"'),
    (json.dumps({"models": {"x": {"prices": {"mars": {"tiers": [{"input": "1", "output": "1"}]}}}}}), "unknown region"),
    (json.dumps({"models": 5}), "models: expected an object of models by name, found a number"),
    (json.dumps({"models": {"qwen-plus": {"prices": 5}}}), "models.qwen-plus.prices: expected an object of tiers by region (intl, cn), found a number"),
])
def test_bad_user_catalog_is_a_one_line_error(tmp_path, content, reason):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(CatalogError) as err:
        load_catalog(bad)
    assert reason in str(err.value) and "\n" not in str(err.value) and str(bad) in str(err.value)
