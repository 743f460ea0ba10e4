"""Planning: a batch file in, a priced plan out, with no network and no
spending. Each request goes read → validate → render and count → price →
estimate output → aggregate (``planner``); the aggregates merge, so the work
splits across processes (``planner``), a random sample (``sampling``) and a
Dask cluster (``cluster``). ``realtime`` then decides real-time against batch
from the plan and the catalog; ``paths`` picks plain, sampled or cluster
planning for a list of files.
"""

from batchplan.planning.aggregate import Plan, PlannedRequest, Row
from batchplan.planning.images import ImageAssumption
from batchplan.planning.output import OutputAssumption
from batchplan.planning.planner import BatchPlan, Planner, count_prompt_tokens, plan_file, plan_files
from batchplan.planning.realtime import RealtimeOptions, decide

__all__ = ["BatchPlan", "ImageAssumption", "OutputAssumption", "Plan", "PlannedRequest", "Planner", "RealtimeOptions",
           "Row", "count_prompt_tokens", "decide", "plan_file", "plan_files"]
