"""Stage 4: price. The real-time and batch cost of one request, exactly.

The tier is chosen by the request's own input tokens, and the whole request,
input and output, is billed at that tier (not graduated). Batch bills both at
``batch_price_factor`` (50%) of the real-time list price, with no cache or
free-quota discount, so list prices are used on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from batchplan.catalog.catalog import Model, Tier

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    tier: str | None  # tier label, None when no tier applies
    realtime_cost: Decimal | None  # None: unknown, never zero
    batch_cost: Decimal | None
    unpriced_reason: str | None = None


def price_request(
    model: Model | None,
    model_name: str,
    region: str,
    input_tokens: int,
    output_tokens: int | None,
    thinking: bool,
    batch_factor: Decimal,
) -> Price:
    """Price one request. A missing price gives unknown costs and says why."""
    label, tier, unpriced = choose_tier(model, model_name, region, input_tokens, output_tokens, thinking)
    if unpriced is not None:
        return Price(label, None, None, unpriced)
    realtime, batch = price_group(tier, thinking, input_tokens, output_tokens, batch_factor)
    return Price(label, realtime, batch)


def choose_tier(
    model: Model | None,
    model_name: str,
    region: str,
    input_tokens: int,
    output_tokens: int | None,
    thinking: bool,
) -> tuple[str | None, Tier | None, str | None]:
    """The tier that bills a request: its label, the tier, and why the request
    cannot be priced (None when it can). The tier is known even when the
    output tokens, and so the cost, are not."""
    if model is None:
        return None, None, f"{model_name} is not in the price catalog"
    region_price = model.price(region)
    if region_price is None:
        return None, None, f"{model_name} has no {region} price in the catalog"
    tier = region_price.tier_for(input_tokens)
    if tier is None:
        return None, None, f"{input_tokens} input tokens is past {model_name}'s largest price tier"
    label = region_price.tier_label(tier)
    if output_tokens is None:
        return label, tier, "output tokens unknown"
    if output_tokens and tier.output_price(thinking) is None:
        return label, tier, f"{model_name} has no output price"
    return label, tier, None


def price_group(tier: Tier, thinking: bool, input_tokens: int, output_tokens: int, batch_factor: Decimal) -> tuple[Decimal, Decimal]:
    """The real-time and batch cost of a group of priced requests billed at one
    tier and thinking mode, from their summed tokens. It equals the sum of
    ``price_request`` over the group: price x sum of tokens is the sum of
    price x tokens, and Decimal (28 digits) keeps both exact while summed
    tokens x a price's digits fit in 28 digits: up to 10^15 tokens at prices
    of 12 significant digits. Equal in value; the exponent may differ
    (0.00001 for 0.000010), and ``report`` normalizes or rounds every cost it shows."""
    realtime = input_tokens * tier.input
    if output_tokens:
        realtime += output_tokens * tier.output_price(thinking)
    realtime /= MILLION
    return realtime, realtime * batch_factor
