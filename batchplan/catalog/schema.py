"""The catalog's schema, as a file an editor can use, checked with jsonschema.

``data/catalog.schema.json`` (JSON Schema 2020-12) types every field the code
reads; unknown fields are allowed, so a newer catalog still loads. A price
file breaking it gets one line naming the file, the field and what was
expected::

    prices.json: models.qwen-plus.prices: expected an object of tiers by region (intl, cn), found a number

The words come from each schema node's ``x-expected``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from batchplan.errors import CatalogError

SCHEMA_FILE = "data/catalog.schema.json"


@lru_cache(maxsize=1)
def schema_text() -> str:
    return resources.files("batchplan.catalog").joinpath(SCHEMA_FILE).read_text("utf-8")


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_text()))


def check(raw: Any, name: str) -> None:
    """CatalogError ``NAME: FIELD: reason`` when ``raw`` (a parsed catalog or
    price file) breaks the schema; the first problem, and how many more."""
    from jsonschema.exceptions import best_match

    errors = list(_validator().iter_errors(raw))
    if not errors:
        return
    first = best_match(errors)
    where = field_path(first.absolute_path)
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    raise CatalogError(f"{name}: {where + ': ' if where else ''}{message(first)}{more}")


def field_path(path) -> str:
    """``models.qwen-plus.prices.intl.tiers[0].input``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def message(error) -> str:
    while error.parent is not None and "x-expected" not in error.schema:
        error = error.parent  # a branch of anyOf: say what the field as a whole expects
    expected = error.schema.get("x-expected") if isinstance(error.schema, dict) else None
    if error.validator == "required":
        missing = error.message.split("'")[1] if error.message.count("'") >= 2 else error.message
        return f"missing {missing!r}" + (f" ({expected})" if expected else "")
    if expected:
        # A wrong type says what was found; a wrong value (a pattern, a minimum) shows it.
        return f"expected {expected}, found {describe(error.instance, show_value=error.validator != 'type')}"
    return error.message


def describe(value: Any, show_value: bool = False) -> str:
    """A JSON value in words: ``a number``, ``an object``, ``"abc"``, ``-1``."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if show_value:
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 40 else text[:37] + "..."
    return "a string" if isinstance(value, str) else "a number"
