"""Money for display and for machines, exact to the last digit.

Costs are Decimal from the catalog's prices to every total; they are rounded
only here, for display. It sits in the catalog layer so that planning, jobs
and reports all format money the same way.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def money(amount: Decimal | None, places: int | None = None) -> str:
    """A cost for display: rounded half-up (more places for small amounts, so
    a cheap job does not show as 0.00), or 'unknown'."""
    if amount is None:
        return "unknown"
    if places is None:
        places = 6 if abs(amount) < 1 else 4 if abs(amount) < 100 else 2
    return f"{amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):,}"


def exact(amount: Decimal | None) -> str | None:
    """A cost for machines: the exact decimal as a string, or null."""
    return None if amount is None else format(amount.normalize(), "f")
