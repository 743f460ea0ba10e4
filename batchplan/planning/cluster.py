"""``compare --cluster ADDRESS``: count on a Dask cluster.

The work is cut into units of (file, start byte, end byte); a unit holds the
lines that begin in its byte range (``reading.read_range``), so units
partition every file's lines exactly. Each unit is one Dask task, pure: it
reads its range from the path it shares with the client, plans it with lines
numbered from 1, and returns the plan with its number of lines. The client
merges the results by unit index, in file and range order, renumbering each
range after the lines before it, so the plan, its errors' and warnings' line
numbers and the per-request rows are those of a local run.

A task whose worker dies is run again by Dask on another worker (the
scheduler's ``allowed-failures``); a task that raises is retried ``RETRIES``
times. Either way a unit's result is taken once, by its index: no line is
counted twice or lost.

This is the only module that imports Dask, and only when a cluster is asked
for: ``pip install 'batchplan[cluster]'``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

from batchplan.catalog.catalog import DEFAULT_REGION, Catalog
from batchplan.errors import ClusterError
from batchplan.planning.aggregate import Plan, PlannedRequest
from batchplan.planning.images import ImageAssumption
from batchplan.planning.output import OutputAssumption
from batchplan.planning.planner import BatchPlan, Planner, _input_size, default_workers, unique_paths
from batchplan.planning.reading import BLOCK_BYTES, InputError, open_input, read_range

# A 500 MB file becomes about 30 tasks of 1.6 s each at 10 MB/s: small
# enough to spread over many workers and to lose little when one dies, large
# enough that Dask's overhead (about 1 ms a task) does not show.
RANGE_BYTES = 16 * 1024 * 1024
RETRIES = 2
LOCAL = "local"
CONNECT_TIMEOUT = "10s"
SHARED_PATHS = "workers read the files from the same path as the client (a shared file system)"


@dataclass(frozen=True)
class Settings:
    """What a worker needs to build the client's planner; ``key`` names it,
    so each worker process builds it (and loads the vocabulary) once."""

    catalog: Catalog
    region: str
    output: OutputAssumption
    realtime_stats: bool
    images: ImageAssumption
    key: str

    @classmethod
    def of(cls, planner: Planner) -> "Settings":
        fields = (planner.catalog, planner.region, planner.output, planner.realtime_stats, planner.images)
        return cls(*fields, hashlib.sha256(pickle.dumps(fields)).hexdigest())


@dataclass(frozen=True)
class Unit:
    """One task's work: the lines that begin in bytes [start, end) of a file."""

    path: str  # as the user wrote it
    source: str  # absolute, what the worker opens
    label: str | None  # the file named in rows and errors (several files)
    start: int
    end: int


@dataclass(frozen=True)
class RangePlan:
    plan: Plan
    rows: list[PlannedRequest]
    line_count: int  # lines that begin in the range, blank ones too


_PLANNERS: dict[str, Planner] = {}


def worker_planner(settings: Settings) -> Planner:
    planner = _PLANNERS.get(settings.key)
    if planner is None:
        planner = _PLANNERS[settings.key] = Planner(settings.catalog, settings.region, settings.output,
                                                        realtime_stats=settings.realtime_stats, images=settings.images)
    return planner


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return f"the Dask worker at {get_worker().address}"
    except (ImportError, ValueError):
        return "the worker"


def unreadable(unit_path: str, source: str, exc: InputError) -> InputError:
    """The one-line error for a file that a worker cannot read."""
    reason = str(exc)
    if reason.startswith(source + ": "):
        reason = reason[len(source) + 2:]
    return InputError(f"{unit_path}: {_worker_name()} cannot read it ({reason}); {SHARED_PATHS}")


def plan_range(settings: Settings, unit: Unit, keep_rows: bool) -> RangePlan:
    """The task: plan the lines of ``unit``, numbered from 1. Pure."""
    planner = worker_planner(settings)
    rows: list[PlannedRequest] = []
    plan = Plan()
    count = 0
    try:
        with open_input(unit.source) as handle:
            for block in read_range(handle, unit.start, unit.end, BLOCK_BYTES, unit.source):
                plan = plan.merge(planner.plan_lines(block.lines(), unit.label, rows.append if keep_rows else None))
                count += block.line_count
    except InputError as exc:
        raise unreadable(unit.path, unit.source, exc) from None
    return RangePlan(plan, rows, count)


def units(names: Sequence[str], sizes: Sequence[int], range_bytes: int = RANGE_BYTES) -> list[Unit]:
    """Every file cut into ranges of about ``range_bytes`` (one for a small
    or empty file), in order."""
    out = []
    for name, size in zip(names, sizes):
        source = os.path.abspath(name)
        cuts = list(range(0, size, max(1, range_bytes))) + [size]
        if len(cuts) == 1:
            cuts = [0, 0]
        for start, end in zip(cuts, cuts[1:]):
            out.append(Unit(name, source, name, start, max(end, start)))  # rows and errors name their file
    return out


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError("needs Dask: pip install 'batchplan[cluster]'", hint="cluster") from None
    return distributed


@contextmanager
def open_client(address: str, workers: int | None = None) -> Iterator[object]:
    """A Dask client: a new LocalCluster of ``workers`` processes (default:
    the available cores) for ``local``, else the scheduler at ``address``."""
    distributed = _import_distributed()
    cluster = None
    try:
        if address == LOCAL:
            cluster = distributed.LocalCluster(
                n_workers=workers or default_workers(), threads_per_worker=1, processes=True,
                dashboard_address=":0", silence_logs=logging.ERROR,
            )
            client = distributed.Client(cluster)
        else:
            logging.getLogger("distributed").setLevel(logging.ERROR)
            client = distributed.Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError, RuntimeError) as exc:
        if cluster is not None:
            cluster.close()
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def results_in_order(client, task: Callable, items: Sequence, settings, *rest) -> Iterator[tuple[object, object]]:
    """(item, task(settings, item, *rest)) for each item, in the items' order.
    All tasks are sent at once; each result is taken once, by its index."""
    n = len(items)
    futures = client.map(task, [settings] * n, list(items), *([r] * n for r in rest), pure=False, retries=RETRIES)
    try:
        for item, future in zip(items, futures):
            try:
                result = future.result()
            except (InputError, ClusterError):
                raise
            except Exception as exc:  # a task's own failure, or the cluster's
                raise ClusterError(f"{getattr(item, 'path', item)}: a Dask task failed: {type(exc).__name__}: {exc}") from None
            future.release()
            yield item, result
    finally:
        client.cancel(futures)


def plan_files_on_cluster(
    paths: list[str],
    *,
    address: str | None = None,
    client=None,
    catalog: Catalog | None = None,
    region: str = DEFAULT_REGION,
    output: OutputAssumption | None = None,
    workers: int | None = None,
    on_request: Callable[[PlannedRequest], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    planner: Planner | None = None,
    range_bytes: int = RANGE_BYTES,
    task: Callable = plan_range,
) -> BatchPlan:
    """``plan_files`` on a Dask cluster: the same plan, counted by its
    workers. Give ``client`` (a ``distributed.Client``) or ``address``
    (``local`` or the scheduler's, like ``tcp://host:8786``). ``workers``
    is the size of a ``local`` cluster. Raises InputError for a file that
    the client or a worker cannot read, ClusterError for the cluster."""
    if client is None:
        if not address:
            raise ValueError("give a Dask client or a scheduler address")
        with open_client(address, workers) as opened:
            return plan_files_on_cluster(
                paths, client=opened, catalog=catalog, region=region, output=output, on_request=on_request,
                on_progress=on_progress, planner=planner, range_bytes=range_bytes, task=task,
            )
    planner = planner or Planner(catalog, region, output)
    names = unique_paths(paths)
    sizes = [_input_size(name) for name in names]  # fail on any bad path before work starts
    files: dict[str, Plan] = {name: Plan() for name in names}
    before: dict[str, int] = {name: 0 for name in names}  # lines of the ranges merged so far
    settings = Settings.of(planner)
    for unit, part in results_in_order(client, task, units(names, sizes, range_bytes), settings, on_request is not None):
        offset = before[unit.path]
        files[unit.path] = files[unit.path].merge(part.plan.renumbered(offset))
        before[unit.path] = offset + part.line_count
        if on_request is not None:
            for row in part.rows:
                on_request(replace(row, line=row.line + offset) if offset else row)
        if on_progress is not None:
            on_progress(unit.end - unit.start)
    return planner.batch_plan(files)


__all__ = ["ClusterError", "RANGE_BYTES", "open_client", "plan_files_on_cluster", "plan_range", "units"]
