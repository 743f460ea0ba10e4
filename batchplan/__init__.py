"""batchplan: plan, price and run DashScope (Qwen) Batch API jobs.

    >>> import batchplan
    >>> result = batchplan.plan_file("samples/chat_shared_system.jsonl")
    >>> result.plan.total().batch_cost            # Decimal, exact
    >>> batchplan.count_prompt_tokens({"model": "qwen-plus", "messages": [...]})
    >>> batchplan.run_job(["big.jsonl"], "job/", max_cost=Decimal("20"))  # the whole job, resumable

The layers, lowest first: ``catalog`` (prices and model facts as data),
``planning`` (a file in, a priced plan out), ``jobs`` (the Batch API),
``reports`` (text, JSON, HTML) and ``cli``; docs/architecture.md is the map.
This module re-exports the public names of the layers below the CLI.
"""

from batchplan._version import __version__
from batchplan.catalog.catalog import Catalog, default_catalog, load_catalog
from batchplan.errors import BatchplanError, CatalogError, InputError
from batchplan.jobs.run import JobReport, run_job
from batchplan.planning.aggregate import Plan, PlannedRequest, Row
from batchplan.planning.images import ImageAssumption
from batchplan.planning.output import OutputAssumption
from batchplan.planning.paths import plan_paths
from batchplan.planning.planner import BatchPlan, Planner, count_prompt_tokens, plan_file, plan_files
from batchplan.planning.realtime import RealtimeOptions, decide

__all__ = [
    "BatchPlan",
    "BatchplanError",
    "Catalog",
    "CatalogError",
    "ImageAssumption",
    "InputError",
    "JobReport",
    "OutputAssumption",
    "Plan",
    "PlannedRequest",
    "Planner",
    "RealtimeOptions",
    "Row",
    "count_prompt_tokens",
    "decide",
    "default_catalog",
    "load_catalog",
    "plan_file",
    "plan_files",
    "plan_paths",
    "run_job",
    "__version__",
]
