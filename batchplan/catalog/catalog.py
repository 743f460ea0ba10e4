"""The price catalog: prices, limits and model facts, read from data.

The facts live in ``data/catalog.json`` (shipped in the package), each with a
source and a date. A user's own catalog (``--prices FILE``) in the same schema
is merged over it, model by model and region by region.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from batchplan.errors import CatalogError

DEFAULT_REGION = "intl"

# Dated snapshots such as qwen-max-2025-01-25 bill as their base model
# (assumption: their list prices match the base model's).
_SNAPSHOT = re.compile(r"^(?P<base>.+?)-(\d{4}-\d{2}-\d{2}|\d{4})$")


# The counting families a model's ``template`` may name (planning.templates.FAMILIES
# has one entry each; docs/counting.md has the table).
TEMPLATES = ("qwen2.5", "qwen3", "qwen3-tags", "qwen3-hybrid", "qwen3-vl", "qwen3.5", "qwen-mt")
_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2})$")


def snapshot_base(name: str) -> str | None:
    """The base of a dated snapshot name (qwen-max-2025-01-25 -> qwen-max), else None."""
    snap = _SNAPSHOT.match(name)
    return snap.group("base") if snap else None


@dataclass(frozen=True)
class Tier:
    """One input-length price tier. The whole request bills at its tier."""

    index: int
    max_input_tokens: int | None  # None: no upper bound (a flat price)
    input: Decimal  # per 1M tokens
    output: Decimal | None  # per 1M tokens; None for embeddings
    thinking_output: Decimal | None  # per 1M tokens, where it differs

    def output_price(self, thinking: bool) -> Decimal | None:
        if thinking and self.thinking_output is not None:
            return self.thinking_output
        return self.output


@dataclass(frozen=True)
class RegionPrice:
    currency: str
    tiers: tuple[Tier, ...]
    source: str
    as_of: str

    def tier_for(self, input_tokens: int) -> Tier | None:
        """The tier that bills a request of this many input tokens, or None when
        the request is longer than every tier."""
        for tier in self.tiers:
            if tier.max_input_tokens is None or input_tokens <= tier.max_input_tokens:
                return tier
        return None

    def tier_label(self, tier: Tier) -> str:
        """'flat', '<=256K' (up to 256K input tokens), or '>256K'."""
        return self._labels[tier.index]

    @cached_property
    def _labels(self) -> tuple[str, ...]:
        # Made once: every planned request asks for its tier's label.
        return tuple(self._make_label(tier) for tier in self.tiers)

    def _make_label(self, tier: Tier) -> str:
        if len(self.tiers) == 1 and tier.max_input_tokens is None:
            return "flat"  # one bounded tier keeps its bound: longer requests are unpriced
        if tier.max_input_tokens is not None:
            return f"<={_k(tier.max_input_tokens)}"
        return f">{_k(self.tiers[tier.index - 1].max_input_tokens)}"


def _k(tokens: int | None) -> str:
    if tokens is None:
        return "inf"
    if tokens == 0:
        return "0"
    if tokens % 1024 == 0:
        return f"{tokens // 1024}K"
    if tokens % 1_000_000 == 0:
        return f"{tokens // 1_000_000}M"
    return str(tokens)


@dataclass(frozen=True)
class Limits:
    context_window: int | None = None
    max_input: int | None = None
    max_input_thinking: int | None = None
    max_output: int | None = None
    max_output_thinking: int | None = None
    max_reasoning: int | None = None
    batch_max_input: int | None = None

    def input_limit(self, thinking: bool, batch: bool = False) -> int | None:
        limit = self.max_input_thinking if thinking and self.max_input_thinking else self.max_input
        if batch and self.batch_max_input is not None:
            limit = min(limit, self.batch_max_input) if limit else self.batch_max_input
        return limit

    def output_limit(self, thinking: bool) -> int | None:
        if thinking and self.max_output_thinking is not None:
            return self.max_output_thinking
        return self.max_output


@dataclass(frozen=True)
class Model:
    name: str
    kind: str  # chat | embedding | test
    template: str | None  # counting family, one of TEMPLATES
    thinks_by_default: bool
    limits: Limits
    prices: dict[str, RegionPrice]  # region -> price
    vision: Any = None  # catalog.vision.VisionRule for models that take images, else None
    count_note: str | None = None  # why its prompt tokens are only approximate here (catalog data)
    # (before, template): dated snapshots before this date are counted by that family
    older_template: tuple[str, str] | None = None

    def template_for(self, name: str) -> str | None:
        """The counting family of ``name``, a name of this model (a dated
        snapshot before ``older_template``'s date has its own)."""
        if self.older_template is not None:
            dated = _DATED.search(name)
            if dated and dated.group(1) < self.older_template[0]:
                return self.older_template[1]
        return self.template

    def price(self, region: str) -> RegionPrice | None:
        return self.prices.get(region)


@dataclass(frozen=True)
class Region:
    name: str
    currency: str
    base_url: str
    batch_models: frozenset[str]


@dataclass(frozen=True)
class BatchLimits:
    max_requests: int
    max_file_bytes: int
    max_line_bytes: int
    test_model: str
    test_url: str
    test_max_requests: int
    test_max_file_bytes: int
    urls: tuple[str, ...]
    batch_price_factor: Decimal
    # The newest Batch API page's smaller line limit: lines above it are warned
    # about (lines above max_line_bytes are refused). None: no such warning.
    warn_line_bytes: int | None = None
    max_custom_id_chars: int | None = None
    line_sources: tuple[str, str] = ("", "")  # where warn_line_bytes and max_line_bytes come from


class Catalog:
    """Models, regions and Batch API limits, looked up by the names users write."""

    def __init__(self, raw: dict[str, Any]):
        self.raw = raw
        try:
            self.regions = {
                key: Region(
                    name=r.get("name", key),
                    currency=r["currency"],
                    base_url=r["base_url"],
                    batch_models=frozenset(r.get("batch_models", ())),
                )
                for key, r in raw["regions"].items()
            }
            bl = raw["batch_limits"]
            self.batch_limits = BatchLimits(
                max_requests=int(bl["max_requests"]),
                max_file_bytes=int(bl["max_file_bytes"]),
                max_line_bytes=int(bl["max_line_bytes"]),
                test_model=bl["test_model"],
                test_url=bl["test_url"],
                test_max_requests=int(bl["test_max_requests"]),
                test_max_file_bytes=int(bl["test_max_file_bytes"]),
                urls=tuple(bl["urls"]),
                batch_price_factor=Decimal(str(bl["batch_price_factor"])),
                warn_line_bytes=int(bl["warn_line_bytes"]) if bl.get("warn_line_bytes") is not None else None,
                max_custom_id_chars=int(bl["max_custom_id_chars"]) if bl.get("max_custom_id_chars") is not None else None,
                line_sources=(str((bl.get("line_sources") or {}).get("warn_line_bytes", "")),
                              str((bl.get("line_sources") or {}).get("max_line_bytes", ""))),
            )
            self.models: dict[str, Model] = {}
            self._aliases: dict[str, str] = {}
            for name, m in raw["models"].items():
                self.models[name] = _model(name, m, self.regions)
                for alias in m.get("aliases", ()):
                    self._aliases[alias] = name
        except (AttributeError, KeyError, TypeError, ValueError, InvalidOperation) as exc:
            # A ValueError says which model and field in words; anything else is shown as it is.
            raise CatalogError(f"catalog does not follow the schema: {exc if type(exc) is ValueError else repr(exc)}") from None
        self._cache: dict[str, Model | None] = {}

    def model(self, name: str) -> Model | None:
        """The catalog entry billing ``name``: exact name, alias, or the base of
        a dated snapshot. None for a model the catalog does not know."""
        try:
            return self._cache[name]
        except KeyError:
            pass
        found = self.models.get(name) or self.models.get(self._aliases.get(name, ""))
        if found is None:
            snap = _SNAPSHOT.match(name)
            if snap:
                base = snap.group("base")
                found = self.models.get(base) or self.models.get(self._aliases.get(base, ""))
        self._cache[name] = found
        return found

    def template_for(self, name: str) -> str:
        """Which chat template renders ``tools`` for this model."""
        model = self.model(name)
        if model is not None and model.template:
            return model.template_for(name)
        # Families by name, for models the catalog does not list.
        if name.startswith(("qwen3.5", "qwen3.6", "qwen3.7", "qwen3.8")):
            return "qwen3.5"
        if name.startswith("qwen3-vl"):
            return "qwen3-vl"
        if name.startswith("qwen-mt"):
            return "qwen-mt"
        if name.startswith(("qwen2.5", "qwen-max", "qwq", "qwen-vl", "qvq")):
            return "qwen2.5"
        return "qwen3"

    def currency(self, region: str) -> str:
        return self.regions[region].currency

    def merged(self, overlay: dict[str, Any]) -> "Catalog":
        """This catalog with a user's catalog merged over it."""
        return Catalog(_merge(self.raw, overlay))


def _model(name: str, m: dict[str, Any], regions: dict[str, Region]) -> Model:
    lim = m.get("limits") or {}
    limits = Limits(**{f: lim.get(f) for f in Limits.__dataclass_fields__})
    prices = {}
    for region, p in (m.get("prices") or {}).items():
        if region not in regions:
            raise ValueError(f"model {name}: unknown region {region!r}")
        tiers = []
        for i, t in enumerate(p["tiers"]):
            tiers.append(
                Tier(
                    index=i,
                    max_input_tokens=t.get("max_input_tokens"),
                    input=_money(t["input"]),
                    output=_money(t.get("output")),
                    thinking_output=_money(t.get("thinking_output")),
                )
            )
        bounds = [t.max_input_tokens for t in tiers]
        if not tiers or any(b is None for b in bounds[:-1]) or bounds[:-1] != sorted(bounds[:-1]):
            raise ValueError(f"model {name} ({region}): tiers must be ordered, only the last unbounded")
        prices[region] = RegionPrice(
            currency=regions[region].currency,
            tiers=tuple(tiers),
            source=p.get("source", ""),
            as_of=p.get("as_of", ""),
        )
    template = m.get("template")
    if template is not None and template not in TEMPLATES:
        raise ValueError(f"model {name}: template {template!r} is not one of {', '.join(TEMPLATES)}")
    older = m.get("older_snapshots")
    older_template = None
    if older is not None:
        if not isinstance(older, dict) or older.get("template") not in TEMPLATES or not (
                isinstance(older.get("before"), str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", older["before"])):
            raise ValueError(f"model {name}: older_snapshots must be {{\"before\": DATE, \"template\": one of {', '.join(TEMPLATES)}}}")
        older_template = (older["before"], older["template"])
    return Model(
        name=name,
        kind=m.get("kind", "chat"),
        template=template,
        older_template=older_template,
        thinks_by_default=bool(m.get("thinks_by_default", False)),
        limits=limits,
        prices=prices,
        vision=_vision(name, m.get("vision")),
        count_note=m.get("count_note"),
    )


def _vision(name: str, v: Any):
    """The model's image rule (catalog ``vision``), or None."""
    if v is None:
        return None
    from batchplan.catalog.vision import VisionRule

    if not isinstance(v, dict):
        raise ValueError(f"model {name}: vision must be an object")
    older = v.get("older_snapshots") or {}
    if not isinstance(older, dict):
        raise ValueError(f"model {name}: vision.older_snapshots must be an object")
    values = {key: v.get(key) for key in ("patch", "min_tokens", "max_tokens", "max_tokens_high_resolution")}
    values["older_snapshots.patch"] = older.get("patch")
    for key, value in values.items():
        if value is not None and (type(value) is not int or value < 1):
            raise ValueError(f"model {name}: vision.{key} must be a positive integer")
    before = older.get("before")
    if before is not None and not (isinstance(before, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", before)):
        raise ValueError(f"model {name}: vision.older_snapshots.before must be a date like 2025-08-13")
    newer = v.get("newer_snapshots") or {}
    if not isinstance(newer, dict):
        raise ValueError(f"model {name}: vision.newer_snapshots must be an object")
    since, newer_patch = newer.get("since"), newer.get("patch")
    if since is not None and not (isinstance(since, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", since)):
        raise ValueError(f"model {name}: vision.newer_snapshots.since must be a date like 2025-08-13")
    if newer_patch is not None and (type(newer_patch) is not int or newer_patch < 1):
        raise ValueError(f"model {name}: vision.newer_snapshots.patch must be a positive integer")
    return VisionRule(
        patch=v.get("patch", 28),
        min_tokens=v.get("min_tokens", 4),
        max_tokens=v.get("max_tokens", 1280),
        max_tokens_high_resolution=v.get("max_tokens_high_resolution", 16384),
        older_before=older.get("before"),
        older_patch=older.get("patch"),
        newer_since=since,
        newer_patch=newer_patch,
    )


def _money(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, float):
        # Floats carry binary noise; the schema asks for strings.
        value = repr(value)
    amount = Decimal(str(value))
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"price {value!r} is not a non-negative amount")
    return amount


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overlay.items():
        if key in ("models", "regions", "sources") and isinstance(value, dict):
            merged = dict(base.get(key, {}))
            for name, entry in value.items():
                if key == "models" and name in merged and isinstance(entry, dict):
                    entry = {**merged[name], **entry, "prices": {**merged[name].get("prices", {}), **entry.get("prices", {})}}
                merged[name] = entry
            out[key] = merged
        elif key == "batch_limits" and isinstance(value, dict):
            out[key] = {**base.get(key, {}), **value}
        else:
            out[key] = value
    return out


_DEFAULT: Catalog | None = None


def default_catalog() -> Catalog:
    """The catalog shipped with batchplan."""
    global _DEFAULT
    if _DEFAULT is None:
        text = resources.files("batchplan.catalog").joinpath("data/catalog.json").read_text("utf-8")
        _DEFAULT = Catalog(json.loads(text))
    return _DEFAULT


def load_catalog(prices_file: str | Path | None = None) -> Catalog:
    """The shipped catalog, with ``prices_file`` merged over it when given."""
    catalog = default_catalog()
    if prices_file is None:
        return catalog
    path = Path(prices_file)
    try:
        overlay = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CatalogError(f"{path}: is a directory") from None
    except PermissionError:
        raise CatalogError(f"{path}: permission denied") from None
    except UnicodeDecodeError:
        raise CatalogError(f"{path}: not UTF-8") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CatalogError(f"{path}: not valid JSON ({exc})") from None
    from batchplan.catalog.schema import check

    check(overlay, str(path))  # the field at fault and what it expects (catalog.schema.json)
    try:
        return catalog.merged(overlay)
    except CatalogError as exc:
        raise CatalogError(f"{path}: {exc}") from None
    except (AttributeError, TypeError, ValueError) as exc:  # a section of the wrong shape
        raise CatalogError(f"{path}: catalog does not follow the schema: {exc!r}") from None
