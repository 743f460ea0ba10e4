"""The Batch API's rules over a whole file ([BATCH] in the catalog's sources), checked in one pass.

``parse_line`` (validate.py) checks what one line can get wrong on its own.
This module adds what only the file as a whole can break: request and size
limits, one model / one thinking mode / one url per file, unique custom_id,
the test model's own url and limits, per-request token limits in batch, and
whether the region offers the model for batch at all.

The same pass plans the file (tokens and cost), so ``batchplan submit`` can
show the cost without reading the file twice. Memory stays flat: at most
``KEEP_PER_RULE`` violations are kept per rule, with exact counts beside them.
The custom_id index holds one entry per request; the Batch API caps a file at
50,000 requests, so that index is small for any file that could pass.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from batchplan.catalog.catalog import DEFAULT_REGION, Catalog, default_catalog
from batchplan.errors import InputError
from batchplan.planning.aggregate import Plan, PlannedRequest
from batchplan.planning.output import OutputAssumption
from batchplan.planning.reading import input_size, open_input, read_blocks
from batchplan.planning.validate import LineError, parse_line

if TYPE_CHECKING:
    from batchplan.planning.planner import BatchPlan, Planner

# Violations kept per rule; counts stay exact beyond it.
KEEP_PER_RULE = 1000
# Values named in one mixed_* message, so it stays one readable line.
SHOW_VALUES = 6

TOO_MANY_REQUESTS = "too_many_requests"
FILE_TOO_LARGE = "file_too_large"
LINE_TOO_LARGE = "line_too_large"
NO_REQUESTS = "no_requests"
INVALID_LINE = "invalid_line"
DUPLICATE_CUSTOM_ID = "duplicate_custom_id"
MIXED_MODELS = "mixed_models"
MIXED_THINKING = "mixed_thinking"
MIXED_URLS = "mixed_urls"
URL_NOT_ALLOWED = "url_not_allowed"
TEST_MODEL_URL = "test_model_url"
TEST_FILE_TOO_LARGE = "test_file_too_large"
OVER_MAX_INPUT = "over_max_input"
OVER_MAX_OUTPUT = "over_max_output"
MODEL_NOT_OFFERED = "model_not_offered"
UNKNOWN_MODEL = "unknown_model"
LINE_OVER_NEWEST_LIMIT = "line_over_newest_limit"  # a warning, not a violation
MEDIA_URL_NOT_PUBLIC = "media_url_not_public"  # a warning, not a violation

RULES = {
    TOO_MANY_REQUESTS: "more requests than a batch file may hold (50,000)",
    FILE_TOO_LARGE: "the file is larger than a batch file may be (500 MB)",
    LINE_TOO_LARGE: "a line is larger than a batch line may be (6 MB; the newest page says 1 MB)",
    NO_REQUESTS: "the file holds no requests",
    INVALID_LINE: "a line is not a valid request (JSON, custom_id, method POST, url, body)",
    DUPLICATE_CUSTOM_ID: "a custom_id already used on an earlier line",
    MIXED_MODELS: "lines use different models; a batch file takes one",
    MIXED_THINKING: "lines mix thinking and non-thinking; a batch file takes one mode",
    MIXED_URLS: "lines use different urls; a batch file takes one",
    URL_NOT_ALLOWED: "a url the catalog does not allow for batch",
    TEST_MODEL_URL: "batch-test-model off /v1/chat/ds-test, or another model on it",
    TEST_FILE_TOO_LARGE: "a batch-test-model file over 100 lines or 1 MB",
    OVER_MAX_INPUT: "prompt tokens over the model's max input (in batch)",
    OVER_MAX_OUTPUT: "max_tokens over the model's max output",
    MODEL_NOT_OFFERED: "the region does not offer the model for batch",
    UNKNOWN_MODEL: "a model neither the catalog nor the region knows",
}


@dataclass(frozen=True)
class Violation:
    line: int | None  # None for file-level rules
    rule: str  # short id, one of RULES
    message: str  # one line, names the reason


@dataclass
class FileCheck:
    path: str
    region: str
    requests: int  # non-blank lines, valid or not: what the Batch API counts
    bytes: int  # size of the file as stored
    model: str | None  # the single model when uniform, else None
    url: str | None
    thinking: bool | None
    violations: list[Violation]  # sorted by line, file-level first; at most KEEP_PER_RULE per rule
    plan: "BatchPlan"  # the compare plan of the same pass
    violation_counts: dict[str, int] = field(default_factory=dict)  # exact, per rule
    # Not violations: what the documented rules allow but the service may not
    # take (a line over the newest page's 1 MB), at most KEEP_PER_RULE per kind.
    warnings: list[Violation] = field(default_factory=list)
    warning_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


class _Collector:
    """Violations, bounded per rule, with exact counts."""

    def __init__(self) -> None:
        self.kept: list[Violation] = []
        self.counts: Counter = Counter()

    def add(self, line: int | None, rule: str, message: str) -> None:
        self.counts[rule] += 1
        if self.counts[rule] <= KEEP_PER_RULE:
            self.kept.append(Violation(line, rule, message))


@dataclass
class _Seen:
    """One value of a field that must be the same on every line."""

    first_line: int
    count: int = 0


def _note(values: dict, key, line: int) -> None:
    seen = values.get(key)
    if seen is None:
        seen = values[key] = _Seen(line)
    seen.count += 1


def check_file(
    path,
    *,
    catalog: Catalog | None = None,
    region: str = DEFAULT_REGION,
    output: OutputAssumption | None = None,
    planner: "Planner | None" = None,
    on_progress: Callable[[int], None] | None = None,
) -> FileCheck:
    """Check one batch file against the Batch API's rules and plan its cost.

    One streaming pass. ``planner`` (when given) supplies the catalog, region
    and output assumption. ``on_progress`` receives bytes as they are read.
    Raises ``reading.InputError`` for a file that cannot be read, and
    ValueError for a region the catalog does not know.
    """
    from batchplan.planning.planner import Planner, _default_counter

    if planner is None:
        # The shared counter: loading the vocabulary once per process is enough.
        planner = Planner(catalog or default_catalog(), region, output, counter=_default_counter())
    catalog, region = planner.catalog, planner.region
    limits = catalog.batch_limits
    name = os.fspath(path)
    found = _Collector()
    warned = _Collector()  # what the service may refuse or never complete, but the documented rules allow
    plan = Plan()
    custom_ids: dict[str, int] = {}
    models: dict[str, _Seen] = {}
    urls: dict[str, _Seen] = {}
    thinking_modes: dict[bool, _Seen] = {}
    lines = 0
    with open_input(name) as handle:
        for block in read_blocks(handle, name=name):
            for line in block.lines():
                lines += 1
                size_note = _line_size(limits, len(line.raw))
                if size_note is not None:
                    rule, message = size_note
                    (found if rule == LINE_TOO_LARGE else warned).add(line.number, rule, message)
                parsed = parse_line(line)
                if isinstance(parsed, LineError):
                    found.add(line.number, INVALID_LINE, parsed.reason)
                    plan.add(PlannedRequest(parsed.line, parsed.custom_id, None, None, None, None, None, None, parsed.reason, file=name))
                    continue
                first = custom_ids.setdefault(parsed.custom_id, line.number)
                if first != line.number:
                    found.add(line.number, DUPLICATE_CUSTOM_ID,
                              f"custom_id {parsed.custom_id!r} is already used on line {first}")
                planned = planner.plan_request(parsed, plan, name)
                for url in _non_public_urls(parsed.body):
                    warned.add(line.number, MEDIA_URL_NOT_PUBLIC, url)
                plan.add(planned, parsed.url)
                _note(models, parsed.model, line.number)
                _note(urls, parsed.url, line.number)
                _note(thinking_modes, planned.thinking, line.number)
                _check_request(catalog, limits, parsed, planned, found)
            if on_progress is not None:
                on_progress(len(block.data))
        size = input_size(handle)  # after reading: standard input's size is known only at its end

    if lines == 0:
        found.add(None, NO_REQUESTS, "the file holds no requests")
    if lines > limits.max_requests:
        found.add(None, TOO_MANY_REQUESTS,
                  f"{lines:,} requests, over the limit of {limits.max_requests:,} per batch file (batchplan split divides it)")
    if size > limits.max_file_bytes:
        found.add(None, FILE_TOO_LARGE,
                  f"{size:,} bytes, over the limit of {limits.max_file_bytes:,} per batch file (batchplan split divides it)")
    split_hint = "batchplan split separates them"
    _check_uniform(models, MIXED_MODELS, "model", found, hint=split_hint, prefix="model ")
    _check_uniform(thinking_modes, MIXED_THINKING, "thinking mode", found, hint=split_hint,
                   show=lambda t: "thinking" if t else "non-thinking")
    _check_uniform(urls, MIXED_URLS, "url", found, hint=split_hint, prefix="url ")
    for url, seen in urls.items():
        if url not in limits.urls:
            found.add(seen.first_line, URL_NOT_ALLOWED,
                      f"url {url!r} is not allowed for batch (allowed: {', '.join(limits.urls)}); {seen.count:,} line(s)")
    if limits.test_model in models:
        if lines > limits.test_max_requests:
            found.add(None, TEST_FILE_TOO_LARGE,
                      f"{limits.test_model} files take at most {limits.test_max_requests:,} lines; this one has {lines:,}")
        if size > limits.test_max_file_bytes:
            found.add(None, TEST_FILE_TOO_LARGE,
                      f"{limits.test_model} files take at most {limits.test_max_file_bytes:,} bytes; this one has {size:,}")
    for model_name, seen in models.items():
        _check_offered(catalog, region, model_name, seen, found)

    violations = sorted(found.kept, key=lambda v: -1 if v.line is None else v.line)
    return FileCheck(
        path=name,
        region=region,
        requests=lines,
        bytes=size,
        model=_only(models),
        url=_only(urls),
        thinking=_only(thinking_modes),
        violations=violations,
        plan=planner.batch_plan({name: plan}),
        violation_counts=dict(found.counts),
        warnings=sorted(warned.kept, key=lambda v: -1 if v.line is None else v.line),
        warning_counts=dict(warned.counts),
    )


def _line_size(limits, size: int) -> tuple[str, str] | None:
    """The rule a line of ``size`` bytes breaks or is warned about. The newest
    Batch API page says 1 MB a line where the English page says 6 MB: above
    the larger limit the line is refused, between the two it is warned about;
    both messages name the two sources (catalog batch_limits.line_sources)."""
    newest, english = limits.line_sources
    both = f"the newest Batch API page ({newest or 'warn_line_bytes'}) and the English page ({english or 'max_line_bytes'}) disagree"
    if size > limits.max_line_bytes:
        return LINE_TOO_LARGE, (f"line is {size:,} bytes, over the {limits.max_line_bytes:,}-byte limit per line; "
                                f"{both}, and this is over both")
    if limits.warn_line_bytes is not None and size > limits.warn_line_bytes:
        return LINE_OVER_NEWEST_LIMIT, (f"line is {size:,} bytes, over {limits.warn_line_bytes:,}: {both}, so the "
                                        f"service may refuse it")
    return None


def _non_public_urls(body: dict) -> list[str]:
    """Messages for media parts the Batch API cannot fetch: it accepts such a
    batch, and its requests never complete."""
    from batchplan.planning.validate import media_urls, non_public_media_url

    out = []
    for url in media_urls(body):
        why = non_public_media_url(url)
        if why:
            shown = url if len(url) <= 80 else url[:77] + "..."
            out.append(f"media URL {shown} is {why}: the batch is accepted but this request never completes; "
                       f"use a public URL or a data: URL")
    return out


def _only(values: dict):
    return next(iter(values)) if len(values) == 1 else None


def _check_request(catalog: Catalog, limits, request, planned: PlannedRequest, found: _Collector) -> None:
    """Rules one valid request can break given the catalog."""
    name = request.model
    number = request.line
    if name == limits.test_model and request.url != limits.test_url:
        found.add(number, TEST_MODEL_URL, f"{limits.test_model} must use url {limits.test_url}, not {request.url}")
    elif name != limits.test_model and request.url == limits.test_url:
        found.add(number, TEST_MODEL_URL, f"url {limits.test_url} takes only {limits.test_model}, not {name}")
    model = catalog.model(name)
    if model is None:
        return
    thinking = planned.thinking
    mode = " when thinking" if thinking else ""
    cap = model.limits.input_limit(thinking, batch=True)
    if cap is not None and planned.input_tokens is not None and planned.input_tokens > cap:
        in_batch = " in batch" if cap != model.limits.input_limit(thinking) else ""
        found.add(number, OVER_MAX_INPUT,
                  f"{planned.input_tokens:,} prompt tokens; {model.name} takes at most {cap:,}{mode}{in_batch}")
    key = "max_tokens" if "max_tokens" in request.body else "max_completion_tokens"
    asked = request.body.get(key)
    out_cap = model.limits.output_limit(thinking)
    if asked is not None and out_cap is not None and asked > out_cap:
        found.add(number, OVER_MAX_OUTPUT, f"{key} {asked:,} is over {model.name}'s max output of {out_cap:,}{mode}")


def _check_uniform(values: dict, rule: str, what: str, found: _Collector, hint: str | None = None, show=str,
                   prefix: str = "") -> None:
    """One violation when a field that must be the same on every line is not:
    at the first line that breaks the pattern, naming every value."""
    if len(values) < 2:
        return
    ordered = sorted(values.items(), key=lambda kv: kv[1].first_line)
    (first_value, first), (second_value, second) = ordered[0], ordered[1]
    counts = ", ".join(f"{show(v)} x{s.count:,}" for v, s in ordered[:SHOW_VALUES])
    if len(ordered) > SHOW_VALUES:
        counts += f" and {len(ordered) - SHOW_VALUES:,} more"
    message = (f"{prefix}{show(second_value)} here, but {prefix}{show(first_value)} on line {first.first_line}; "
               f"a batch file takes one {what} (this one has {counts})")
    found.add(second.first_line, rule, message + (f"; {hint}" if hint else ""))


def offered_for_batch(catalog: Catalog, region: str, name: str) -> bool:
    """Whether the region offers this model for batch, by the name written or
    the catalog entry it resolves to (alias, -latest, dated snapshot)."""
    offered = catalog.regions[region].batch_models
    model = catalog.model(name)
    return name in offered or (model is not None and model.name in offered)


def _check_offered(catalog: Catalog, region: str, name: str, seen: _Seen, found: _Collector) -> None:
    """One violation per model the region does not offer for batch."""
    if offered_for_batch(catalog, region, name):
        return
    model = catalog.model(name)
    lines = f"{seen.count:,} line(s)"
    if model is None:
        found.add(seen.first_line, UNKNOWN_MODEL,
                  f"unknown model {name!r}: not in the catalog and not offered for batch in {region}; {lines}")
        return
    elsewhere = [r for r, reg in catalog.regions.items() if r != region and (name in reg.batch_models or model.name in reg.batch_models)]
    also = f" (offered in {', '.join(elsewhere)})" if elsewhere else ""
    found.add(seen.first_line, MODEL_NOT_OFFERED, f"{name} is not offered for batch in {region}{also}; {lines}")


# -- completion window and metadata ---------------------------------------------

# Documented completion windows: 24h to 336h, written in h or d [BATCH].
MIN_WINDOW_HOURS, MAX_WINDOW_HOURS = 24, 336
_WINDOW = re.compile(r"^\s*(\d+)\s*([hd])\s*$", re.IGNORECASE)
# Documented metadata limits [BATCH].
MAX_NAME_CHARS, MAX_DESCRIPTION_CHARS = 100, 200


def parse_window(text: str) -> str:
    """A completion window as the service takes it: '24h'..'336h' or '1d'..'14d'."""
    number, unit, _ = _window(text)
    return f"{number}{unit}"


def window_hours(text: str) -> int:
    """The hours of a completion window written as ``parse_window`` takes it."""
    return _window(text)[2]


def _window(text: str) -> tuple[int, str, int]:
    m = _WINDOW.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a completion window; write hours or days, like 24h, 72h or 14d")
    number, unit = int(m.group(1)), m.group(2).lower()
    hours = number * (24 if unit == "d" else 1)
    if not MIN_WINDOW_HOURS <= hours <= MAX_WINDOW_HOURS:
        raise ValueError(f"{text!r} is outside the allowed {MIN_WINDOW_HOURS}h-{MAX_WINDOW_HOURS}h (1d-14d)")
    return number, unit, hours


def batch_metadata(name: str | None, description: str | None) -> dict[str, str] | None:
    """``metadata`` for batches.create, checked against the documented limits."""
    meta = {}
    if name:
        if len(name) > MAX_NAME_CHARS:
            raise InputError(f"the name is {len(name)} characters; the service takes at most {MAX_NAME_CHARS}",
                             hint="name")
        meta["ds_name"] = name
    if description:
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise InputError(f"the description is {len(description)} characters; the service takes at most "
                             f"{MAX_DESCRIPTION_CHARS}", hint="description")
        meta["ds_description"] = description
    return meta or None
