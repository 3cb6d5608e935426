"""The price book: what the operator charges, read from one place by everything that prices.

Today it holds cents per GPU-hour per GPU type (``gpu_prices``, set by the operator) and the
default for types without a price (``GPUYARD_DEFAULT_GPU_PRICE_CENTS``, kept in the same table
under the key ``*`` by each server at start, so every replica and every service reads the same
book from the database instead of having it handed down).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.server import orm

DEFAULT_GPU_PRICE_CENTS = 50
DEFAULT_KEY = "*"  # never a GPU type's key (those are letters and digits)


@dataclass(frozen=True, slots=True)
class PriceBook:
    default_gpu_hour: int = DEFAULT_GPU_PRICE_CENTS
    gpu_hour: dict[str, int] = field(default_factory=dict)

    def cents_per_gpu_hour(self, gpu_key: str) -> int:
        return self.gpu_hour.get(gpu_key, self.default_gpu_hour)

    def is_priced(self, gpu_key: str) -> bool:
        return gpu_key in self.gpu_hour


async def load(session: AsyncSession) -> PriceBook:
    rows = await session.execute(select(orm.GpuPrice.gpu_key, orm.GpuPrice.cents_per_gpu_hour))
    prices: dict[str, int] = {key: cents for key, cents in rows.all()}
    default = prices.pop(DEFAULT_KEY, DEFAULT_GPU_PRICE_CENTS)
    return PriceBook(default_gpu_hour=default, gpu_hour=prices)


async def set_default(session: AsyncSession, *, clock: Clock, cents: int) -> bool:
    """Record the configured default price; True when it changed (offers must be rebuilt)."""
    row = await session.scalar(select(orm.GpuPrice).where(orm.GpuPrice.gpu_key == DEFAULT_KEY))
    if row is not None and row.cents_per_gpu_hour == cents:
        return False
    if row is None:
        if cents == DEFAULT_GPU_PRICE_CENTS:
            return False  # an empty book already reads this
        row = orm.GpuPrice(
            gpu_key=DEFAULT_KEY, name="default", cents_per_gpu_hour=cents, updated_at=clock.now()
        )
        session.add(row)
    else:
        row.cents_per_gpu_hour = cents
        row.updated_at = clock.now()
    await session.flush()
    return True
