"""How one vision model turns an image into tokens: the catalog's facts as a value.

It sits in the catalog layer because the catalog builds it from its data and
the planner's image counting (``planning.images``) reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class VisionRule:
    """How one model turns an image into tokens."""

    patch: int = 28  # pixels on each side of the square one token covers
    min_tokens: int = 4
    max_tokens: int = 1280
    max_tokens_high_resolution: int = 16384  # with vl_high_resolution_images
    # Dated snapshots before this date use ``older_patch`` (Qwen2.5-VL ones).
    older_before: str | None = None
    older_patch: int | None = None
    # Dated snapshots from this date on use ``newer_patch`` (the alias keeps
    # ``patch``, as recorded).
    newer_since: str | None = None
    newer_patch: int | None = None

    def for_model(self, name: str) -> "VisionRule":
        """The rule for a dated snapshot of the model, if it differs."""
        found = re.search(r"-(\d{4}-\d{2}-\d{2})$", name)
        if found is None:
            return self
        date = found.group(1)
        if self.older_before and self.older_patch and date < self.older_before:
            return VisionRule(self.older_patch, self.min_tokens, self.max_tokens, self.max_tokens_high_resolution)
        if self.newer_since and self.newer_patch and date >= self.newer_since:
            return VisionRule(self.newer_patch, self.min_tokens, self.max_tokens, self.max_tokens_high_resolution)
        return self
