"""batchplan: plan, price and run DashScope (Qwen) Batch API jobs.

    >>> import batchplan
    >>> result = batchplan.plan_file("samples/chat_shared_system.jsonl")
    >>> result.plan.total().batch_cost            # Decimal, exact
    >>> batchplan.count_prompt_tokens({"model": "qwen-plus", "messages": [...]})
"""

from .aggregate import Plan, PlannedRequest, Row
from .catalog import Catalog, CatalogError, load_catalog
from .output import OutputAssumption
from .plan import BatchPlan, Planner, count_prompt_tokens, plan_file, plan_files
from .reading import InputError
from .realtime import RealtimeOptions

__version__ = "0.1.0"

__all__ = [
    "BatchPlan",
    "Catalog",
    "CatalogError",
    "InputError",
    "OutputAssumption",
    "Plan",
    "PlannedRequest",
    "Planner",
    "RealtimeOptions",
    "Row",
    "count_prompt_tokens",
    "load_catalog",
    "plan_file",
    "plan_files",
    "__version__",
]
