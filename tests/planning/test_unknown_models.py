"""A model the catalog does not know gets no made-up facts (issue 13, item 9):
the snapshot rate limits apply only to a snapshot or -latest name whose base
the catalog knows, so an unknown name that merely ends like a snapshot has
unknown limits and an unknown real-time duration."""

import json

import pytest

from batchplan.catalog.catalog import default_catalog
from batchplan.planning.realtime import rate_limit
from tests.conftest import line


@pytest.mark.parametrize("name", ["gpt-3.5-turbo-0125", "some-model-2025-01-25", "mystery-latest"])
def test_an_unknown_name_that_looks_like_a_snapshot_has_no_rate_limits(name):
    assert default_catalog().model(name) is None
    assert rate_limit(default_catalog(), name) is None


@pytest.mark.parametrize("name", ["qwen-max-2025-01-25", "qwen-plus-latest", "qwen-turbo-0624"])
def test_a_snapshot_of_a_known_model_takes_the_snapshot_limits(name):
    limit = rate_limit(default_catalog(), name)
    assert (limit.rpm, limit.tpm) == (60, 100_000) and "snapshot" in limit.source


def test_compare_gives_an_unknown_duration_for_an_unknown_snapshot_like_model(run, write_batch):
    path = write_batch([line("1", model="gpt-3.5-turbo-0125", max_tokens=10)])
    document = json.loads(run("compare", "--json", path).stdout)
    [row] = document["realtime"]["models"]
    assert row["rate_limit"] is None and row["duration_seconds"] is None
    assert "real-time duration unknown" in row["verdict"]
