"""The arithmetic of metering: whole seconds accrue while a workload runs, and each settlement
charges whole cents from an exact total, so fractions carry and rounding never drifts.

A meter counts ``seconds`` at its current price and keeps what earlier prices came to in
``base_microcents``; the total used is exact (``money.microcents_for`` on the whole count, not a
sum of rounded steps), and a settlement charges ``floor(used / 1 cent) - charged`` cents. No float
takes part anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from gpuyard.core.money import MICROCENTS_PER_CENT, SECONDS_PER_HOUR, microcents_over


@dataclass(frozen=True, slots=True)
class Accrual:
    """What a meter has counted, up to ``accrued_until``. The price is ``cents_per_hour`` cents
    per ``rate_seconds`` (an hour for GPUs; a month for disk)."""

    cents_per_hour: int
    seconds: int  # at ``cents_per_hour``
    base_microcents: int  # at the prices before it
    total_seconds: int
    running: bool  # the workload was billable at ``accrued_until``
    accrued_until: datetime
    rate_seconds: int = SECONDS_PER_HOUR

    @property
    def used_microcents(self) -> int:
        return self.base_microcents + microcents_over(
            self.cents_per_hour, self.rate_seconds, self.seconds
        )

    def due_cents(self, charged_cents: int) -> int:
        """Whole cents used and not yet charged (never negative)."""
        return max(0, self.used_microcents // MICROCENTS_PER_CENT - charged_cents)


@dataclass(frozen=True, slots=True)
class Observed:
    """What the meter sees of its workload now. ``started_at``/``finished_at`` are the times its
    host reported; ``gone``: the workload row no longer exists."""

    billable: bool
    started_at: datetime | None = None
    finished_at: datetime | None = None
    gone: bool = False


def reprice(acc: Accrual, cents_per_hour: int) -> Accrual:
    """Fold the seconds so far into the base at the old price; count on at the new one."""
    if cents_per_hour == acc.cents_per_hour:
        return acc
    return replace(
        acc, cents_per_hour=cents_per_hour, seconds=0, base_microcents=acc.used_microcents
    )


def _clamp(when: datetime | None, low: datetime, high: datetime) -> datetime:
    if when is None:
        return high
    return max(low, min(when, high))


def _counted(acc: Accrual, end: datetime) -> tuple[int, datetime]:
    """Whole seconds from ``accrued_until`` to ``end``, and where that count ends (the fraction of
    a second left over is counted next time, never dropped while the workload runs)."""
    whole = max(0, int((end - acc.accrued_until).total_seconds()))
    return whole, acc.accrued_until + timedelta(seconds=whole)


def accrue(acc: Accrual, seen: Observed, now: datetime) -> Accrual:
    """Count the seconds the workload was billable between ``acc.accrued_until`` and ``now``.

    A run that began since the last look counts from its reported start (never before what was
    already counted); one that ended counts to its reported end; a workload whose row is gone
    without a reported end is charged nothing more (time that cannot be shown is not charged).
    """
    if now < acc.accrued_until:
        return acc  # a clock behind the last count: nothing to add
    if not acc.running and seen.billable:
        start = _clamp(seen.started_at, acc.accrued_until, now)
        acc = replace(acc, running=True, accrued_until=start)
    if not acc.running:
        return replace(acc, accrued_until=now)
    if seen.billable:
        end = now
    elif seen.finished_at is not None:
        end = _clamp(seen.finished_at, acc.accrued_until, now)
    elif seen.gone:
        end = acc.accrued_until
    else:
        end = now  # stopped, but its host has not said when: up to now
    whole, until = _counted(acc, end)
    acc = replace(
        acc,
        seconds=acc.seconds + whole,
        total_seconds=acc.total_seconds + whole,
        accrued_until=until,
    )
    if not seen.billable:
        acc = replace(acc, running=False, accrued_until=max(end, now))
    return acc
