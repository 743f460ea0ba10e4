"""Stage 5: estimate output. How many output tokens each request is assumed
to produce. The report always says which assumption was used."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from batchplan.catalog.catalog import Model, snapshot_base

WORST_CASE = "max"
PER_REQUEST = "per_request"
RATIO = "ratio"
CALIBRATED = "calibrated"


@dataclass(frozen=True)
class OutputAssumption:
    """What output length to assume. The default is the worst case (an upper
    bound): each request's max_tokens, else the model's max output, plus the
    thinking budget (or the model's max reasoning) for thinking requests."""

    mode: str = WORST_CASE
    tokens: int | None = None  # PER_REQUEST
    ratio: Decimal | None = None  # RATIO, times the input tokens
    per_model: dict[str, int] = field(default_factory=dict)  # CALIBRATED
    source: str = ""  # CALIBRATED: where the figures came from
    calibration: dict[str, Any] | None = None  # CALIBRATED: calibrate.Calibration.document(), for --json

    @property
    def is_upper_bound(self) -> bool:
        return self.mode == WORST_CASE

    def describe(self) -> str:
        if self.mode == PER_REQUEST:
            return f"expected: {self.tokens} output tokens per request"
        if self.mode == RATIO:
            return f"expected: {self.ratio} x input tokens per request"
        if self.mode == CALIBRATED:
            figures = ", ".join(f"{m} {n}" for m, n in sorted(self.per_model.items()))
            return f"calibrated from {self.source}: {figures}; other models at the worst case"
        return "upper bound: max_tokens, else the model's max output, plus the thinking budget when thinking"


def is_thinking(body: dict[str, Any], model: Model | None) -> bool:
    """Whether the request thinks: enable_thinking, else the model's default."""
    flag = body.get("enable_thinking")
    if flag is not None:
        return flag
    return bool(model and model.thinks_by_default)


def estimate_output_tokens(
    body: dict[str, Any],
    model: Model | None,
    input_tokens: int,
    thinking: bool,
    assumption: OutputAssumption,
    embedding: bool = False,
) -> int | None:
    """Assumed output tokens of one request; None when it cannot be known."""
    if embedding:
        return 0
    if assumption.mode == PER_REQUEST:
        return assumption.tokens
    if assumption.mode == RATIO:
        return math.ceil(assumption.ratio * input_tokens)
    if assumption.mode == CALIBRATED:
        # Figures are kept under catalog names (calibrate.model_key): the
        # request's model as written, else the entry that bills it.
        name = body["model"]
        calibrated = assumption.per_model.get(name)
        if calibrated is None:
            calibrated = assumption.per_model.get(model.name if model is not None else snapshot_base(name) or name)
        if calibrated is not None:
            return calibrated
    return worst_case_output(body, model, thinking)


def worst_case_output(body: dict[str, Any], model: Model | None, thinking: bool) -> int | None:
    limits = model.limits if model else None
    reply = body.get("max_tokens") or body.get("max_completion_tokens")
    if reply is None:
        reply = limits.output_limit(thinking) if limits else None
    if reply is None:
        return None
    if not thinking:
        return reply
    reasoning = body.get("thinking_budget")
    if reasoning is None and limits:
        # Where the catalog does not know the reasoning cap, assume it is the
        # model's max output (stated in docs/assumptions).
        reasoning = limits.max_reasoning or limits.output_limit(True)
    return None if reasoning is None else reply + reasoning
