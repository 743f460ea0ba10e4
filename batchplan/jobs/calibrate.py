"""Calibrate output tokens from an earlier run: per model, the completion
tokens that run's Batch output file reports.

The output file names each response's model as the service reports it, which
may be a dated snapshot (``qwen-plus-2025-07-28``) where the request said
``qwen-plus`` (the issue reports this; the two real output lines we hold
name the model as the request did). So the figures are keyed by the model
the *request* named:

1. by ``custom_id`` joined to the input of that run: the file given as
   ``calibrate_input``, or else the files being planned, when every
   custom_id of the output is in them and no joined pair names two
   different catalog models (otherwise they are another run's input whose
   custom_ids only look alike);
2. otherwise by the response's model mapped through the catalog to the
   entry that bills it (dated snapshots and aliases resolve to the base).

Keys are catalog names where the catalog knows the model, so a request for
``qwen-plus-latest`` gets the figure of ``qwen-plus``. A name the catalog does
not know is kept as written, less a date suffix (ASSUMPTION: ``NAME-YYYY-MM-DD``
and ``NAME-MMDD`` are snapshots of ``NAME``, as the catalog assumes for prices).

Memory: one entry per successful output line (a batch output holds at most
50,000) and a dict custom_id -> model of those found in the input; the input
is streamed and the scan stops once every custom_id is found.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import orjson

from batchplan.catalog.catalog import Catalog, snapshot_base
from batchplan.jobs.results import classify, json_lines, open_results
from batchplan.planning.reading import InputError, open_input, read_blocks

JOINED = "custom_id"
CATALOG = "catalog"
# Response models renamed (snapshot -> base) named in the report.
SHOW_RENAMED = 6


def model_key(catalog: Catalog, name: str) -> str:
    """The name calibration figures are kept under: the catalog entry's name
    when the catalog knows the model, else the name less a date suffix."""
    model = catalog.model(name)
    if model is not None:
        return model.name
    return snapshot_base(name) or name


@dataclass(frozen=True)
class Calibration:
    """Completion tokens per request model, and how output lines were keyed."""

    path: str  # the output file
    stats: dict[str, dict[str, int]]  # key -> requests, mean (rounded up), p50, p95, max
    mapping: str  # JOINED (by custom_id to an input) or CATALOG (response model through the catalog)
    inputs: tuple[str, ...] = ()  # the files joined to
    joined: int = 0  # output lines keyed by their request's model
    mapped: int = 0  # output lines keyed by the response's model
    renamed: dict[str, str] = field(default_factory=dict)  # response model -> key, where they differ
    note: str = ""  # why the mapping was chosen, when not the obvious one

    @property
    def per_model(self) -> dict[str, int]:
        return {key: s["mean"] for key, s in self.stats.items()}

    def describe(self) -> str:
        """The source as reports state it (OutputAssumption.source)."""
        if self.mapping == JOINED:
            how = f"keyed by the request's model, joined by custom_id to {', '.join(self.inputs)}"
            if self.mapped:
                how += f" ({self.mapped:,} line(s) not found there keyed by the response's model)"
        else:
            how = "keyed by the response's model through the catalog"
            if self.note:
                how += f" ({self.note})"
        if self.renamed:
            shown = ", ".join(f"{a} -> {b}" for a, b in list(self.renamed.items())[:SHOW_RENAMED])
            how += f"; {shown}" + (" ..." if len(self.renamed) > SHOW_RENAMED else "")
        p95 = ", ".join(f"{m} {s['p95']}" for m, s in self.stats.items())
        return f"{self.path} (mean completion tokens per model, {how}; p95 {p95})"

    def document(self) -> dict[str, Any]:
        return {
            "output_file": self.path,
            "mapping": self.mapping,
            "inputs": list(self.inputs),
            "joined_lines": self.joined,
            "mapped_lines": self.mapped,
            "renamed": dict(self.renamed),
            "note": self.note or None,
            "models": {key: dict(s) for key, s in self.stats.items()},
        }


class CalibrationError(InputError, ValueError):
    """An output file that cannot calibrate output tokens; one line naming file (and line)."""


def _results(path: str) -> list[tuple[str | None, str, int]]:
    """(custom_id, response model, completion tokens) of each successful line
    with a model and a usage."""
    rows = []
    with open_results(path, CalibrationError) as handle:
        for number, doc in json_lines(handle, path, CalibrationError):
            result = classify(doc, number)
            if result.ok and result.completion_tokens is not None and result.model:
                rows.append((result.custom_id, result.model, result.completion_tokens))
    return rows


def request_models(paths: Iterable[str], wanted: set[str]) -> dict[str, str]:
    """custom_id -> body.model of the input lines whose custom_id is wanted
    (the first line of each), streamed; stops once all are found. Lines that
    are not requests are skipped: planning reports them. Raises InputError."""
    found: dict[str, str] = {}
    for path in paths:
        with open_input(path) as handle:
            for block in read_blocks(handle, name=path):
                for line in block.lines():
                    try:
                        doc = orjson.loads(line.raw)
                    except orjson.JSONDecodeError:
                        continue
                    if not isinstance(doc, dict):
                        continue
                    cid = doc.get("custom_id")
                    body = doc.get("body")
                    if isinstance(cid, str) and cid in wanted and cid not in found and isinstance(body, dict) and isinstance(body.get("model"), str):
                        found[cid] = body["model"]
                if len(found) == len(wanted):
                    return found
    return found


def calibrate(output_path: str, catalog: Catalog, calibrate_input: str | None = None,
              planned: Iterable[str] = ()) -> Calibration:
    """Completion tokens per request model from an earlier run's output file.
    ``calibrate_input`` is that run's input; without it the ``planned`` files
    are joined to when they are that input (see the module's docstring).
    Raises CalibrationError (one line)."""
    path = os.fspath(output_path)
    rows = _results(path)
    if not rows:
        raise CalibrationError(f"{path}: no successful lines with a model and usage to calibrate from")
    wanted = {cid for cid, _, _ in rows if cid is not None}
    inputs = (os.fspath(calibrate_input),) if calibrate_input is not None else tuple(os.fspath(p) for p in planned)
    joined_to: dict[str, str] = {}
    note = ""
    if inputs and wanted:
        try:
            joined_to = request_models(inputs, wanted)
        except InputError as exc:
            raise CalibrationError(str(exc)) from None
        if calibrate_input is None:
            note = _not_the_input(catalog, rows, wanted, joined_to)
            if note:
                joined_to = {}
    values: dict[str, list[int]] = {}
    renamed: dict[str, str] = {}
    joined = mapped = 0
    for cid, response_model, tokens in rows:
        request_model = joined_to.get(cid) if cid is not None else None
        if request_model is not None:
            key = model_key(catalog, request_model)
            joined += 1
        else:
            key = model_key(catalog, response_model)
            mapped += 1
        if key != response_model:
            renamed.setdefault(response_model, key)
        values.setdefault(key, []).append(tokens)
    stats = {key: _stats(v) for key, v in sorted(values.items())}
    mapping = JOINED if joined else CATALOG
    if mapping == CATALOG and not note and inputs:
        note = f"no custom_id of it is in {', '.join(inputs)}" if wanted else "its lines have no custom_id"
    return Calibration(path, stats, mapping, inputs if joined else (), joined, mapped, dict(sorted(renamed.items())), note)


def _not_the_input(catalog: Catalog, rows, wanted: set[str], found: dict[str, str]) -> str:
    """Why the planned files are not the input of this output ('' when they are)."""
    if not found:
        return ""  # described by the caller
    if len(found) < len(wanted):
        return f"the planned files have {len(found):,} of its {len(wanted):,} custom_ids, so they are not its input"
    for cid, response_model, _ in rows:
        request_model = found.get(cid)
        if request_model is None:
            continue
        a, b = catalog.model(request_model), catalog.model(response_model)
        if a is not None and b is not None and a.name != b.name:
            return (f"custom_id {cid} asked the planned files for {request_model} but was answered by "
                    f"{response_model}, so they are not its input")
    return ""


def _stats(values: list[int]) -> dict[str, int]:
    values.sort()
    n = len(values)
    return {
        "requests": n,
        "mean": -(-sum(values) // n),  # rounded up, exactly
        "p50": _nearest_rank(values, 50),
        "p95": _nearest_rank(values, 95),
        "max": values[-1],
    }


def _nearest_rank(sorted_values: list[int], percent: int) -> int:
    rank = max(1, math.ceil(percent * len(sorted_values) / 100))
    return sorted_values[rank - 1]


# -- a pilot file (batchplan pilot): a random sample of the planned files -------------

PILOT_KEY = "pilot"  # the object a pilot adds to each Batch API output line


def is_pilot(path: str) -> bool:
    """Whether ``path`` is a pilot's output (its first line has a ``pilot`` object)."""
    try:
        with open_results(os.fspath(path), CalibrationError) as handle:
            for _, doc in json_lines(handle, os.fspath(path), CalibrationError):
                return isinstance(doc.get(PILOT_KEY), dict)
    except CalibrationError:
        return False
    return False


@dataclass(frozen=True)
class PilotSample:
    """A pilot file read back: its strata's edges, and each answered request."""

    path: str
    design: Any  # planning.estimate.Design
    sampled: tuple  # planning.estimate.Sampled
    failed: int  # pilot requests that got no answer
    recorded_lines: dict  # stratum -> its lines when the pilot was drawn
    seeds: tuple[int, ...]


def read_pilot(path: str) -> PilotSample:
    """The pilot's answered requests (usage from the output line, stratum and
    counted prompt tokens from its ``pilot`` object). Raises CalibrationError."""
    from batchplan.planning.estimate import Design, Sampled

    path = os.fspath(path)
    edges: dict[tuple, tuple[int, ...]] = {}
    sampled = []
    failed = 0
    recorded: dict[tuple, int] = {}
    seeds: set[int] = set()
    seen: set[str] = set()
    with open_results(path, CalibrationError) as handle:
        for number, doc in json_lines(handle, path, CalibrationError):
            meta = doc.get(PILOT_KEY)
            if not isinstance(meta, dict) or not isinstance(meta.get("stratum"), dict):
                raise CalibrationError(f"{path}:{number}: not a pilot line (no pilot object); a pilot file comes from batchplan pilot")
            st = meta["stratum"]
            try:
                group = (str(st["model"]), bool(st["thinking"]), str(st["tier"]))
                key = (*group, int(st["bin"]))
                edges[group] = tuple(int(e) for e in st.get("edges") or ())
                counted = int(meta["counted_prompt_tokens"])
            except (KeyError, TypeError, ValueError):
                raise CalibrationError(f"{path}:{number}: the pilot object lacks its stratum or counted prompt tokens") from None
            recorded[key] = int(meta.get("stratum_lines") or 0)
            if isinstance(meta.get("seed"), int):
                seeds.add(meta["seed"])
            result = classify(doc, number)
            if not result.ok or result.completion_tokens is None or result.custom_id is None:
                failed += 1
                continue
            if result.custom_id in seen:
                continue  # a request sent twice counts once
            seen.add(result.custom_id)
            sampled.append(Sampled(result.custom_id, key, counted, result.prompt_tokens, result.completion_tokens))
    if not sampled:
        raise CalibrationError(f"{path}: no answered pilot requests to estimate from")
    return PilotSample(path, Design(edges), tuple(sampled), failed, recorded, tuple(sorted(seeds)))


def pilot_estimate(pilot: PilotSample, population, result, catalog: Catalog):
    """The job's expected output and cost from ``pilot`` (planning.estimate.OutputEstimate),
    ``population`` (planning.estimate.Population) having seen every planned line."""
    from batchplan.planning.estimate import estimate_output

    if not population.found:
        raise CalibrationError(f"{pilot.path}: none of its custom_ids is in the planned files, so it is not a pilot of them")
    sampled = [s for s in pilot.sampled if s.custom_id in population.found]
    approximate = {s.stratum[0] for s in sampled if (catalog.model(s.stratum[0]) and catalog.model(s.stratum[0]).count_note)}
    estimate = estimate_output(population.strata, sampled, result.batch_price_factor, source=pilot.path,
                               currency=result.currency, approximate=approximate)
    notes = list(estimate.notes)
    missing = len(pilot.sampled) - len(sampled)
    if missing:
        notes.append(f"{missing} pilot request(s) are not in the planned files and are left out")
    changed = [k for k, n in pilot.recorded_lines.items() if k in population.strata and population.strata[k].lines != n]
    if changed:
        notes.append(f"{len(changed)} stratum(s) hold a different number of lines than when the pilot was drawn: "
                     "the files changed, or others are planned; the pilot is taken as a sample of the planned files")
    if pilot.failed:
        notes.append(f"{pilot.failed} pilot request(s) got no answer; they are left out (taken as missing at random)")
    from dataclasses import replace

    total = estimate.total
    if total is not None and population.exact_lines:
        # Requests that generate nothing (embeddings) are in the total at their exact cost.
        exact = population.exact_realtime_cost

        def plus(b, factor):
            if b is None or exact is None:
                return None
            return replace(b, estimate=b.estimate + exact * factor, low=b.low + exact * factor, high=b.high + exact * factor)

        total = replace(total, lines=total.lines + population.exact_lines, realtime_cost=plus(total.realtime_cost, 1),
                        batch_cost=plus(total.batch_cost, result.batch_price_factor))
        notes.append(f"{population.exact_lines:,} request(s) generate no output (embeddings): in the total at their exact cost")
    return replace(estimate, total=total, notes=tuple(notes))


class PilotCalibration:
    """``compare --calibrate PILOT.jsonl`` in three steps: read the pilot,
    see every planned line (``add``, the planner's ``on_request``), then
    ``estimate`` the job's output and cost."""

    def __init__(self, path: str, catalog: Catalog, region: str):
        from batchplan.planning.estimate import Population

        self.catalog = catalog
        self.sample = read_pilot(path)
        self.population = Population(self.sample.design, catalog, region, {s.custom_id for s in self.sample.sampled})

    def add(self, request) -> None:
        self.population.add(request)

    def estimate(self, result):
        return pilot_estimate(self.sample, self.population, result, self.catalog)
