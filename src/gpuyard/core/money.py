"""Money is integers. Prices are cents per hour; metering uses micro-cents per second.

One cent is 1,000,000 micro-cents, so a price of 1 cent per GPU-hour accrues 277 micro-cents per
second with the remainder carried, and sums never touch a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

MICROCENTS_PER_CENT = 1_000_000
SECONDS_PER_HOUR = 3600
SECONDS_PER_MONTH = 730 * SECONDS_PER_HOUR  # a storage month: 730 hours, as clouds bill disk


def microcents_for(cents_per_hour: int, seconds: int) -> int:
    """Exact cost in micro-cents of running ``seconds`` at ``cents_per_hour``."""
    if cents_per_hour < 0 or seconds < 0:
        raise ValueError("price and duration must be non-negative")
    return cents_per_hour * MICROCENTS_PER_CENT * seconds // SECONDS_PER_HOUR


def microcents_over(cents: int, per_seconds: int, seconds: int) -> int:
    """Exact cost in micro-cents of ``seconds`` at ``cents`` per ``per_seconds``."""
    if cents < 0 or seconds < 0 or per_seconds <= 0:
        raise ValueError("price and duration must be non-negative")
    return cents * MICROCENTS_PER_CENT * seconds // per_seconds


def cents_floor(microcents: int) -> int:
    return microcents // MICROCENTS_PER_CENT


def dollars_per_hour(cents_per_hour: int) -> float:
    """For dialects (Vast's ``dph_total``) that speak dollars; display only, never summed."""
    return cents_per_hour / 100


def dollars(cents: int) -> float:
    """A balance for dialects that speak dollars (Vast's ``credit``); display only."""
    return cents / 100


def cents_of_dollars(amount: float) -> int:
    """The whole cents of a dollar amount a dialect sends as a JSON number (Vast's ``amount``),
    read from its shortest decimal form (``25.1`` is 2510 cents, never 2509); ValueError for a
    boolean, a non-finite number or a fraction of a cent."""
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise ValueError("an amount of dollars is a number")
    exact = Decimal(repr(amount)) * 100
    if not exact.is_finite() or exact != exact.to_integral_value():
        raise ValueError("an amount of dollars is a finite number of whole cents")
    return int(exact)


@dataclass(frozen=True, slots=True)
class BalancePolicy:
    """When a balance is low (an event below ``low_balance_cents``) and how long one at or below
    zero may stay there before its org's instances stop and clusters scale to zero."""

    low_balance_cents: int = 500
    grace_seconds: float = 3600.0
    # An inference request's hold still unsettled this long is swept (its server died).
    hold_seconds: float = 3600.0
