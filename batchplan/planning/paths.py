"""Plan a list of files the way the caller asked: every line in this process
and its workers, a random sample (``sampling``), or on a Dask cluster
(``cluster``), then decide real-time against batch. ``compare``, ``run`` and
``pilot`` all plan through here, so the three ways stay one choice.
"""

from __future__ import annotations

from typing import Callable

from batchplan.catalog.catalog import Catalog, default_catalog
from batchplan.errors import InputError
from batchplan.planning.aggregate import PlannedRequest
from batchplan.planning.planner import BatchPlan, Planner, plan_files
from batchplan.planning.reading import STDIN
from batchplan.planning.realtime import RealtimeOptions


def plan_paths(
    paths: list[str],
    planner: Planner,
    *,
    sample: float | int | None = None,
    seed: int = 0,
    cluster: str | None = None,
    workers: int | None = None,
    realtime: RealtimeOptions | None = None,
    catalog: Catalog | None = None,
    on_request: Callable[[PlannedRequest], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> BatchPlan:
    """Plan ``paths`` with ``planner``: all lines, or a ``sample`` (a fraction
    of the bytes or a number of lines, seeded by ``seed``), here or on the Dask
    ``cluster`` at that address ('local' starts one). The result carries the
    real-time verdict under ``realtime``. Raises InputError for a file that
    cannot be read and ClusterError for a cluster that cannot be used."""
    catalog = catalog or planner.catalog or default_catalog()
    if STDIN in paths:
        _refuse_stdin(sample is not None, bool(cluster))
    if sample is not None:
        from batchplan.planning.sampling import plan_sample

        options = dict(planner=planner, workers=workers, on_request=on_request, on_progress=on_progress)
        if cluster:
            from batchplan.planning.cluster import open_client

            with open_client(cluster, workers) as client:
                result = plan_sample(paths, sample, seed, client=client, **options)
        else:
            result = plan_sample(paths, sample, seed, **options)
        result.decide(realtime, catalog)
        return result
    if cluster:
        from batchplan.planning.cluster import plan_files_on_cluster

        result = plan_files_on_cluster(paths, address=cluster, planner=planner, workers=workers,
                                       on_request=on_request, on_progress=on_progress)
        result.decide(realtime, catalog)
        return result
    return plan_files(paths, planner=planner, workers=workers, realtime=realtime,
                      on_request=on_request, on_progress=on_progress)


def _refuse_stdin(sample: bool, cluster: bool) -> None:
    """Standard input is read once, front to back, in this process: a sample
    seeks to random offsets and cluster workers open the path themselves."""
    if sample:
        raise InputError(f"{STDIN}: standard input cannot be sampled (a sample reads lines at random offsets, "
                         "and a pipe cannot seek); save it to a file, or plan all of it")
    if cluster:
        raise InputError(f"{STDIN}: standard input cannot be planned on a cluster (the workers open the file by "
                         "its path); save it to a file on the shared file system")
