"""The catalog schema: a file an editor can use, checked with jsonschema, with messages naming the field."""

import json
from importlib import resources

import pytest
from jsonschema import Draft202012Validator

from batchplan.catalog.catalog import CatalogError, load_catalog
from batchplan.catalog.schema import SCHEMA_FILE, check


def shipped(name):
    return json.loads(resources.files("batchplan.catalog").joinpath(name).read_text("utf-8"))


def test_the_schema_ships_in_the_package_and_is_a_valid_schema():
    schema = shipped(SCHEMA_FILE)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")


def test_the_shipped_catalog_follows_its_schema():
    catalog = shipped("data/catalog.json")
    assert list(Draft202012Validator(shipped(SCHEMA_FILE)).iter_errors(catalog)) == []


def test_the_issue_example_message(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prices.json").write_text(json.dumps({"models": {"qwen-plus": {"prices": 5}}}))
    result = run("prices", "--prices", "prices.json")
    assert result.exit_code == 2
    assert result.stderr == ("batchplan: error: prices.json: models.qwen-plus.prices: "
                             "expected an object of tiers by region (intl, cn), found a number\n")


@pytest.mark.parametrize("overlay, message", [
    ({"models": {"m": {"prices": {"intl": {"tiers": [{"input": "1", "output": -2}]}}}}},
     'models.m.prices.intl.tiers[0].output: expected a price of zero or more as a decimal string, like "0.4", or null, found -2'),
    ({"models": {"m": {"prices": {"intl": {"source": "x"}}}}},
     "models.m.prices.intl: missing 'tiers' (a region's price: an object with tiers)"),
    ({"models": {"m": {"thinks_by_default": "yes"}}}, "models.m.thinks_by_default: expected true or false, found a string"),
    ({"models": {"m": {"limits": {"max_output": 1.5}}}}, "models.m.limits.max_output: expected a whole number of tokens or null"),
    ({"regions": {"eu": {"currency": "EUR"}}}, "regions.eu: missing 'base_url'"),
    ({"batch_limits": {"batch_price_factor": "half"}}, "batch_limits.batch_price_factor: expected a factor of zero or more"),
    ({"models": {"m": {"vision": {"older_snapshots": {"before": "last year"}}}}},
     'models.m.vision.older_snapshots.before: expected a date like 2025-08-13, found "last year"'),
])
def test_a_broken_price_file_names_the_field_and_what_was_expected(overlay, message):
    with pytest.raises(CatalogError) as err:
        check(overlay, "mine.json")
    assert str(err.value).startswith(f"mine.json: {message}")


def test_new_fields_and_models_are_allowed(tmp_path):
    # A newer catalog (more models, fields this version does not read) still loads.
    mine = tmp_path / "p.json"
    mine.write_text(json.dumps({"models": {"qwen9-max": {
        "kind": "chat", "vocabulary": "qwen9", "limits": {"max_output": 100, "cache_window": 5},
        "prices": {"intl": {"tiers": [{"max_input_tokens": None, "input": 1, "output": "2", "cached_input": "0.1"}]}}}}}))
    assert load_catalog(mine).model("qwen9-max").price("intl").tiers[0].input == 1
