"""The pipeline, end to end: read lines -> validate -> count tokens -> price ->
estimate output -> aggregate. Reports are written by ``report``.

``Planner`` plans one request or one block of lines and does no I/O.
``plan_file`` and ``plan_files`` read files and spread blocks over worker
processes; their partial plans merge into one.
"""

from __future__ import annotations

import gc
import os
import signal
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice
from typing import Callable, Iterable, Iterator

import orjson

from batchplan.catalog.catalog import DEFAULT_REGION, Catalog, default_catalog
from batchplan.planning import aggregate as agg
from batchplan.planning.aggregate import Plan, PlannedRequest
from batchplan.planning.images import ImageAssumption, ImageCount, count_images
from batchplan.planning.output import OutputAssumption, estimate_output_tokens, is_thinking
from batchplan.planning.pricing import choose_tier, price_group, price_request
from batchplan.planning.reading import BLOCK_BYTES, Block, InputError, Line, input_size, open_input, read_blocks
from batchplan.planning.templates import has_images, media_parts, render, request_warnings
from batchplan.planning.tokens import TokenCounter
from batchplan.planning.validate import CHAT_URL, LineError, Request, parse_line, plain_chat_body

# Lines planned a stage at a time (see Planner.plan_lines).
STAGE_LINES = 256
# Inputs smaller than this are planned in-process: below two worker blocks
# (PARALLEL_BLOCK_BYTES), workers cannot share the work. Measured: 2 MB of
# text takes 0.25 s in-process and 0.16 s over 2 workers.
PARALLEL_MIN_BYTES = 2 * 1024 * 1024


@dataclass
class BatchPlan:
    """What ``plan_file``/``plan_files`` return: the combined plan, a plan per
    file, and what it assumed."""

    plan: Plan
    files: dict[str, Plan]
    region: str
    currency: str
    output: OutputAssumption
    batch_price_factor: Decimal
    sample: object | None = None  # sampling.SampleEstimate when --sample was used
    catalog_sources: dict = field(default_factory=dict)
    realtime: object | None = None  # realtime.Decision: real-time against batch, with a verdict

    def decide(self, options=None, catalog: Catalog | None = None):
        """Real-time against batch under ``options`` (realtime.RealtimeOptions);
        sets and returns ``self.realtime``. Cache figures need a plan made
        with those options (prefixes are recorded only when a cache mode asks)."""
        from batchplan.planning.realtime import decide

        self.realtime = decide(self.plan, catalog or default_catalog(), self.region, self.currency, self.batch_price_factor, options)
        return self.realtime

    @property
    def exit_code(self) -> int:
        """0 all lines valid, 1 some invalid, 2 no requests at all."""
        if self.plan.requests == 0:
            return 2
        return 1 if self.plan.invalid else 0


class Planner:
    """Plans requests against a catalog. Pure: data in, data out."""

    def __init__(
        self,
        catalog: Catalog | None = None,
        region: str = DEFAULT_REGION,
        output: OutputAssumption | None = None,
        counter: TokenCounter | None = None,
        realtime_stats: bool = False,
        images: ImageAssumption | None = None,
    ):
        self.catalog = catalog or default_catalog()
        if region not in self.catalog.regions:
            raise ValueError(f"unknown region {region!r} (expected one of {', '.join(self.catalog.regions)})")
        self.region = region
        self.output = output or OutputAssumption()
        self.counter = counter or TokenCounter()
        self.images = images or ImageAssumption()  # the size of remote images (--image-size)
        self.batch_factor = self.catalog.batch_limits.batch_price_factor
        # Prefix statistics for --cache/--html; off, they cost nothing.
        self.realtime_stats = realtime_stats
        self._cache_minimums = None
        self._prefix_digests = None
        self._model_facts: dict[str, _ModelFacts] = {}
        self._facts_of = self.catalog

    def prompt_tokens(self, request: Request) -> int:
        """The prompt tokens of one valid request."""
        body = request.body
        tokens = self.counter.prompt_tokens(body, request.url, self.catalog.template_for(body["model"]))
        if not request.is_embedding and has_images(body):
            tokens += self._image_count(body).tokens
        return tokens

    def _image_count(self, body: dict) -> ImageCount:
        return image_count(self.catalog, body, self.images)

    def plan_request(self, request: Request, plan: Plan | None = None, file: str | None = None, input_tokens: int | None = None) -> PlannedRequest:
        """Count (unless ``input_tokens`` is given), price and estimate one
        valid request; warnings go to ``plan``."""
        body = request.body
        name = body["model"]
        model = self.catalog.model(name)
        thinking = False if request.is_embedding else is_thinking(body, model)
        if input_tokens is None:
            input_tokens = self.prompt_tokens(request)
        output_tokens = estimate_output_tokens(body, model, input_tokens, thinking, self.output, request.is_embedding)
        price = price_request(model, name, self.region, input_tokens, output_tokens, thinking, self.batch_factor)
        if plan is not None:
            self._warn(plan, request, model, thinking, input_tokens, price.unpriced_reason)
            if self.realtime_stats:
                self._observe(plan, request, price.tier, input_tokens)
        return PlannedRequest(
            line=request.line,
            custom_id=request.custom_id,
            model=name,
            tier=price.tier,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            realtime_cost=price.realtime_cost,
            batch_cost=price.batch_cost,
            thinking=thinking,
            file=file,
        )

    def _observe(self, plan: Plan, request: Request, tier: str | None, input_tokens: int) -> None:
        """Record what real-time pricing needs (cache prefixes, histogram)."""
        from batchplan.planning import cache

        if plan.realtime is None:
            plan.realtime = cache.RealtimeStats()
        body = request.body
        pieces = None
        if not request.is_embedding:
            pieces = render(body, self.catalog.template_for(body["model"]))
        cache.observe(plan.realtime, body["model"], tier or "-", input_tokens, pieces, self.counter.count_text,
                      cache.explicit_marks(body) if pieces is not None else None, self._minimums(), self._digests())

    def _digests(self):
        """The planner's memory of prefix digests (cache.PrefixDigests)."""
        if self._prefix_digests is None:
            from batchplan.planning.cache import PrefixDigests

            self._prefix_digests = PrefixDigests()
        return self._prefix_digests

    def _minimums(self) -> dict[str, int]:
        """The fewest tokens a cached prefix has, per cache mode (catalog)."""
        if self._cache_minimums is None:
            from batchplan.planning.realtime import cache_rules

            self._cache_minimums = cache_rules(self.catalog).minimums
        return self._cache_minimums

    def _warn(self, plan: Plan, request: Request, model, thinking: bool, input_tokens: int, unpriced: str | None) -> None:
        body = request.body
        line = request.line
        if unpriced:
            plan.warn(agg.UNPRICED, line, unpriced)
        if model is not None:
            limit = model.limits.input_limit(thinking)
            if limit is not None and input_tokens > limit:
                plan.warn(agg.OVER_MAX_INPUT, line, f"{model.name}: max input {limit}")
            cap = model.limits.output_limit(thinking)
            asked = body.get("max_tokens")
            if cap is not None and asked is not None and asked > cap:
                plan.warn(agg.OVER_MAX_OUTPUT, line, f"{model.name}: max output {cap}")
            if thinking and model.thinks_by_default and "enable_thinking" not in body:
                plan.warn(agg.THINKING_DEFAULT, line, model.name)
            if model.count_note:
                plan.warn(agg.APPROXIMATE_COUNT, line, f"{model.name}: {model.count_note}")
        for kind, detail in request_warnings(body, self.catalog.template_for(body["model"])):  # issue 13
            plan.warn(kind, line, detail)
        if not request.is_embedding and media_parts(body):
            self._warn_media(plan, request, model)

    def _warn_media(self, plan: Plan, request: Request, model) -> None:
        """Images counted at an assumed size, images that could not be read,
        and media left uncounted (audio, video, images without a rule)."""
        body, line = request.body, request.line
        found = self._image_count(body) if has_images(body) else _NO_IMAGES
        if found.assumed:
            rule = model.vision if model is not None else None
            detail = self.images.describe(rule, body.get("vl_high_resolution_images") is True)
            for _ in range(found.assumed):  # counted per image
                plan.warn(agg.IMAGE_SIZE_ASSUMED, line, detail)
        for reason in found.unreadable:
            plan.warn(agg.IMAGE_UNREADABLE, line, reason)
        if media_parts(body) > found.images:
            plan.warn(agg.MEDIA_NOT_COUNTED, line)

    def batch_plan(self, files: dict[str, Plan]) -> BatchPlan:
        """Per-file plans made by this planner, wrapped as one ``BatchPlan``."""
        combined = Plan()
        for plan in files.values():
            combined = combined.merge(plan)
        return BatchPlan(
            plan=combined,
            files=files,
            region=self.region,
            currency=self.catalog.currency(self.region),
            output=self.output,
            batch_price_factor=self.batch_factor,
            catalog_sources=self.catalog.raw.get("sources", {}),
        )

    def plan_line(self, line: Line, plan: Plan, file: str | None = None) -> PlannedRequest:
        return self._plan_parsed(parse_line(line), None, plan, file)

    def _plan_parsed(self, parsed: Request | LineError, input_tokens: int | None, plan: Plan, file: str | None) -> PlannedRequest:
        if isinstance(parsed, LineError):
            result = PlannedRequest(parsed.line, parsed.custom_id, None, None, None, None, None, None, parsed.reason, file=file)
            plan.add(result)
            return result
        result = self.plan_request(parsed, plan, file, input_tokens)
        plan.add(result, parsed.url)
        return result

    def plan_lines(self, lines: Iterable[Line], file: str | None = None, on_request: Callable[[PlannedRequest], None] | None = None) -> Plan:
        """Plan lines in order. They go through in chunks, a stage at a time
        (parse, count, price), which keeps the tokenizer's tables in the CPU
        cache while it runs: about 10% faster than line by line. Without
        ``on_request`` (and without prefix statistics) no row is needed, and
        the totals are summed without one (``_plan_totals``): the same plan,
        prefix statistics included."""
        if on_request is None and (not self.realtime_stats or hasattr(self.counter, "count_turns")):
            # (a counter of the caller's own without count_turns takes rows)
            return self._plan_totals(lines, file)
        plan = Plan()
        lines = iter(lines)
        while True:
            parsed = [parse_line(line) for line in islice(lines, STAGE_LINES)]
            if not parsed:
                return plan
            counts = [None if isinstance(p, LineError) else self.prompt_tokens(p) for p in parsed]
            for request, input_tokens in zip(parsed, counts):
                result = self._plan_parsed(request, input_tokens, plan, file)
                if on_request is not None:
                    on_request(result)

    def _facts(self, name: str) -> "_ModelFacts":
        facts = self._model_facts.get(name)
        if facts is None:
            facts = self._model_facts[name] = _ModelFacts(self.catalog, name)
        return facts

    def _plan_totals(self, lines: Iterable[Line], file: str | None) -> Plan:
        """``plan_lines`` without rows, with less work a line: each line is
        parsed once, and a plain chat line (``validate.plain_chat_body``) skips
        the full checks; no Request or PlannedRequest is built; the catalog
        facts of a model are looked up once; requests are summed with plain
        ints per model, tier, thinking mode and url, and each sum is priced
        once (``pricing.price_group``, equal to the sum of ``price_request``).
        Invalid lines and lines with a warning go through the same code as
        in ``plan_lines``. ``tests/planning/test_hot_path.py`` checks the plans are equal.

        With prefix statistics (``realtime_stats``: --cache, --html), a plain
        line is rendered once: the pieces that are counted are the pieces
        whose prefixes are hashed, and the tokens up to each turn come from
        the same count (``TokenCounter.count_turns``, ``cache.record``)."""
        if self._facts_of is not self.catalog:  # a planner whose catalog was replaced
            self._model_facts = {}
            self._facts_of = self.catalog
        stats = self.realtime_stats
        if stats:
            from batchplan.planning import cache

            minimums = self._minimums()
            digests = self._digests()
            record = cache.record
            count_turns = self.counter.count_turns
            # per line of the stage: (pieces, cuts, tokens at each cut), or None
            turns: list = []
        plan = Plan()
        # (model, tier label, thinking, url) -> [requests, input, output or None, all priced, tier]
        groups: dict[tuple, list] = {}
        counter = self.counter
        prompt_tokens = counter.prompt_tokens
        output = self.output
        region = self.region
        loads = orjson.loads
        lines = iter(lines)
        while True:
            parsed: list = []
            for line in islice(lines, STAGE_LINES):
                try:
                    doc = loads(line.raw)
                except orjson.JSONDecodeError:
                    doc = body = None
                else:
                    body = plain_chat_body(doc)
                parsed.append((line, doc, body) if body is not None else parse_line(line))
            if not parsed:
                break
            counts = []
            if stats:
                turns.clear()
            for item in parsed:
                if type(item) is tuple:
                    body = item[2]
                    if stats:
                        pieces = render(body, self._facts(body["model"]).template)
                        cuts: list[int] = []
                        cut_tokens: list[int] = []
                        counts.append(count_turns(pieces, cuts, cut_tokens))
                        turns.append((pieces, cuts, cut_tokens))
                    else:
                        counts.append(prompt_tokens(body, CHAT_URL, self._facts(body["model"]).template))
                else:
                    counts.append(None if isinstance(item, LineError) else self.prompt_tokens(item))
                    if stats:
                        turns.append(None)
            for index, (item, input_tokens) in enumerate(zip(parsed, counts)):
                if input_tokens is None:
                    self._plan_parsed(item, None, plan, file)
                    continue
                if type(item) is tuple:
                    line, doc, body = item
                    url = CHAT_URL
                    embedding = False
                    plain = True
                else:
                    body = item.body
                    url = item.url
                    embedding = item.is_embedding
                    plain = False
                name = body["model"]
                facts = self._facts(name)
                model = facts.model
                if embedding:
                    thinking = False
                else:
                    thinking = body.get("enable_thinking")
                    if thinking is None:
                        thinking = facts.thinks_by_default
                output_tokens = estimate_output_tokens(body, model, input_tokens, thinking, output, embedding)
                label, tier, unpriced = choose_tier(model, name, region, input_tokens, output_tokens, thinking)
                if unpriced is not None or facts.may_warn(body, thinking, input_tokens) or (not plain and not embedding and (media_parts(body) or "translation_options" in body)):
                    request = Request(line.number, doc["custom_id"], url, body, len(line.raw)) if plain else item
                    self._warn(plan, request, model, thinking, input_tokens, unpriced)
                if stats:
                    if plan.realtime is None:
                        plan.realtime = cache.RealtimeStats()
                    if plain:
                        # A plain body has string contents: no cache_control marker.
                        pieces, cuts, cut_tokens = turns[index]
                        record(plan.realtime, name, label or "-", input_tokens, pieces, cuts, cut_tokens, None, minimums, digests)
                    else:
                        self._observe(plan, item, label, input_tokens)
                key = (name, label or "-", thinking, url)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = [0, 0, 0, True, tier]
                group[0] += 1
                group[1] += input_tokens
                if group[2] is not None:
                    group[2] = None if output_tokens is None else group[2] + output_tokens
                if unpriced is not None:
                    group[3] = False
        rows = plan.rows
        for (name, label, thinking, url), (requests, input_tokens, output_tokens, priced, tier) in groups.items():
            if priced:
                realtime, batch = price_group(tier, thinking, input_tokens, output_tokens, self.batch_factor)
            else:
                realtime = batch = None
            row = agg.Row(requests, input_tokens, output_tokens, realtime, batch)
            key = (name, label, thinking)
            rows[key] = rows[key].merge(row) if key in rows else row
            plan.lines += requests
            plan.models[name] += requests
            plan.thinking_modes[thinking] += requests
            plan.urls[url] += requests
        return plan

    def plan_block(self, block: Block, file: str | None = None, keep_rows: bool = False) -> tuple[Plan, list[PlannedRequest], int]:
        """Plan one block; returns its plan, its rows when asked, and its size."""
        rows: list[PlannedRequest] = []
        plan = self.plan_lines(block.lines(), file, rows.append if keep_rows else None)
        return plan, rows, len(block.data)


_NO_IMAGES = ImageCount()  # nothing counted (never changed)


class _ModelFacts:
    """What planning needs of one model name, looked up in the catalog once."""

    __slots__ = ("model", "template", "thinks_by_default", "input_limit", "output_cap")

    def __init__(self, catalog: Catalog, name: str):
        model = self.model = catalog.model(name)
        self.template = catalog.template_for(name)
        self.thinks_by_default = bool(model and model.thinks_by_default)
        limits = model.limits if model is not None else None
        # indexed by thinking (False, True)
        self.input_limit = (limits.input_limit(False), limits.input_limit(True)) if limits else (None, None)
        self.output_cap = (limits.output_limit(False), limits.output_limit(True)) if limits else (None, None)

    def may_warn(self, body: dict, thinking: bool, input_tokens: int) -> bool:
        """Whether ``Planner._warn`` has a model warning for this request (it
        decides which); media parts are checked by the caller."""
        if self.model is None:
            return False
        if self.model.count_note:
            return True
        limit = self.input_limit[thinking]
        if limit is not None and input_tokens > limit:
            return True
        cap = self.output_cap[thinking]
        if cap is not None:
            asked = body.get("max_tokens")
            if asked is not None and asked > cap:
                return True
        return thinking and self.thinks_by_default and "enable_thinking" not in body


# -- worker processes ------------------------------------------------------

# Blocks sent to workers are smaller than when planning in-process, so the
# last blocks of a file do not leave a worker idle for long, and fewer bytes
# wait in flight.
PARALLEL_BLOCK_BYTES = 1024 * 1024

_WORKER: Planner | None = None


def _init_worker(planner: Planner | None, args: tuple | None) -> None:
    global _WORKER
    # Ctrl-C reaches the whole process group: the parent stops the pool, so
    # workers need not print tracebacks of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Under fork the parent's planner (vocabulary loaded) is inherited as is.
    _WORKER = planner if planner is not None else Planner(*args)


def _plan_block_in_worker(block: Block, file: str | None, keep_rows: bool):
    return _WORKER.plan_block(block, file, keep_rows)


def _pool(workers: int, planner: Planner):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if "fork" in multiprocessing.get_all_start_methods():
        load = getattr(planner.counter, "load", None)
        if load is not None:
            load()  # once, before forking, so that workers share the engine
        # Keep the collector off the parent's objects in the workers, so
        # their pages (the vocabulary among them) stay shared, not copied.
        gc.freeze()
        ctx = multiprocessing.get_context("fork")
        return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(planner, None))
    # Each spawned worker loads the engine the parent chose.
    engine_name = getattr(planner.counter, "engine_name", None)
    counter = TokenCounter(engine=engine_name()) if engine_name is not None else None
    args = (planner.catalog, planner.region, planner.output, counter, planner.realtime_stats, planner.images)
    return ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(None, args))


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _results(planner: Planner, blocks: Iterator[tuple[str, str | None, Block]], keep_rows: bool, workers: int, pool) -> Iterator[tuple[str, tuple[Plan, list[PlannedRequest], int]]]:
    """Plans of each (path, label, block), in order. At most 2 blocks per
    worker are in flight, so memory stays flat however large the files. Blocks
    of the next file are sent before the last ones of a file come back, so
    many small files keep the workers busy too."""
    if pool is None:
        for path, label, block in blocks:
            yield path, planner.plan_block(block, label, keep_rows)
        return
    pending: deque = deque()
    for path, label, block in blocks:
        pending.append((path, pool.submit(_plan_block_in_worker, block, label, keep_rows)))
        if len(pending) >= 2 * workers:
            path, future = pending.popleft()
            yield path, future.result()
    while pending:
        path, future = pending.popleft()
        yield path, future.result()


def _input_size(path: str) -> int:
    """The size of a readable batch file; InputError when it is not one."""
    with open_input(path) as handle:
        return input_size(handle)


def _blocks(paths: list[str], label: bool, block_bytes: int) -> Iterator[tuple[str, str | None, Block]]:
    # One file open at a time, however many are given.
    for path in paths:
        with open_input(path) as handle:
            for block in read_blocks(handle, block_bytes, name=path):
                yield path, path if label else None, block


def unique_paths(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Paths in order, each file once, however often it was named (a glob
    and a name may both match it)."""
    seen: set[str] = set()
    out = []
    for path in paths:
        name = os.fspath(path)
        key = os.path.realpath(name)
        if key not in seen:
            seen.add(key)
            out.append(name)
    return out


def plan_files(
    paths: list[str],
    *,
    catalog: Catalog | None = None,
    region: str = DEFAULT_REGION,
    output: OutputAssumption | None = None,
    workers: int | None = None,
    on_request: Callable[[PlannedRequest], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    planner: Planner | None = None,
    parallel_min_bytes: int | None = None,
    realtime=None,
) -> BatchPlan:
    """Plan several batch files into one combined plan, plus one per file.

    A file named twice is planned once. ``on_request`` receives every planned
    line in file order (for ``--per-request``); ``on_progress`` receives bytes
    as they are planned. Inputs of ``parallel_min_bytes`` (default
    PARALLEL_MIN_BYTES) or more are spread over ``workers`` processes (default:
    the available cores); the counts are the same either way.
    ``realtime`` (realtime.RealtimeOptions) sets the real-time assumptions
    (cache, free quota, limits) of the result's ``realtime`` verdict.
    Raises InputError for a file that cannot be read.
    """
    planner = planner or Planner(catalog, region, output, realtime_stats=bool(realtime is not None and realtime.collects))
    workers = default_workers() if workers is None else max(1, workers)
    names = unique_paths(paths)
    total_bytes = sum(_input_size(name) for name in names)  # fail on any bad path before work starts
    threshold = PARALLEL_MIN_BYTES if parallel_min_bytes is None else parallel_min_bytes
    parallel = workers > 1 and total_bytes >= threshold
    expect_bytes = getattr(planner.counter, "expect_bytes", None)  # (a counter of the caller's own may not)
    if expect_bytes is not None:
        expect_bytes(total_bytes, workers if parallel else 1)  # so that the tokenizer engine suits the input
    files: dict[str, Plan] = {name: Plan() for name in names}
    # Every row and error names its file, one file or many: messages read PATH:LINE.
    blocks = _blocks(names, True, PARALLEL_BLOCK_BYTES if parallel else BLOCK_BYTES)
    pool = None
    try:
        if parallel:
            pool = _pool(workers, planner)
        for name, (part, rows, size) in _results(planner, blocks, on_request is not None, workers, pool):
            files[name] = files[name].merge(part)
            if on_request is not None:
                for row in rows:
                    on_request(row)
            if on_progress is not None:
                on_progress(size)
    finally:
        blocks.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if parallel:
            gc.unfreeze()
    result = planner.batch_plan(files)
    result.decide(realtime, planner.catalog)
    return result


def plan_file(path: str, **options) -> BatchPlan:
    """Plan one batch file. See ``plan_files`` for the options."""
    return plan_files([path], **options)


def count_prompt_tokens(body: dict, url: str = "/v1/chat/completions", catalog: Catalog | None = None,
                        images: ImageAssumption | None = None) -> int:
    """The prompt tokens DashScope bills for one request body (remote images
    at ``images``' size, else at the per-image maximum)."""
    catalog = catalog or default_catalog()
    tokens = _default_counter().prompt_tokens(body, url, catalog.template_for(body.get("model", "")))
    if url != "/v1/embeddings" and has_images(body):
        tokens += image_count(catalog, body, images or ImageAssumption()).tokens
    return tokens


def image_count(catalog: Catalog, body: dict, images: ImageAssumption) -> ImageCount:
    """The images of a request, counted by the model's rule in the catalog
    (nothing when it has none: those images stay uncounted, with a warning)."""
    name = body.get("model", "")
    model = catalog.model(name)
    rule = model.vision if model is not None else None
    if rule is None:
        return _NO_IMAGES
    return count_images(body, rule.for_model(name), images)


_COUNTER: TokenCounter | None = None


def _default_counter() -> TokenCounter:
    global _COUNTER
    if _COUNTER is None:
        _COUNTER = TokenCounter()
    return _COUNTER


__all__ = ["BatchPlan", "Planner", "plan_file", "plan_files", "count_prompt_tokens", "InputError"]
