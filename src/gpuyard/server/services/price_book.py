"""The price book: what the operator charges, read from one place by everything that prices.

It holds cents per GPU-hour per GPU type (``gpu_prices``, set by the operator), the default for
types without a price (``GPUYARD_DEFAULT_GPU_PRICE_CENTS``) and the price of disk kept while an
instance or a serverless worker is stopped, in cents per GB-month
(``GPUYARD_STORAGE_PRICE_CENTS``). The two settings are kept in the same table under reserved
keys (``*`` and ``*disk``, never a GPU type's key) by each server at start, so every replica and
every service reads the same book from the database instead of having it handed down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.server import orm

DEFAULT_GPU_PRICE_CENTS = 50
DEFAULT_STORAGE_CENTS_PER_GB_MONTH = 10
DEFAULT_KEY = "*"  # never a GPU type's key (those are letters and digits)
STORAGE_KEY = "*disk"
RESERVED_PREFIX = "*"


@dataclass(frozen=True, slots=True)
class PriceBook:
    default_gpu_hour: int = DEFAULT_GPU_PRICE_CENTS
    gpu_hour: dict[str, int] = field(default_factory=dict)
    storage_gb_month: int = DEFAULT_STORAGE_CENTS_PER_GB_MONTH

    def cents_per_gpu_hour(self, gpu_key: str) -> int:
        return self.gpu_hour.get(gpu_key, self.default_gpu_hour)

    def is_priced(self, gpu_key: str) -> bool:
        return gpu_key in self.gpu_hour


async def load(session: AsyncSession) -> PriceBook:
    rows = await session.execute(select(orm.GpuPrice.gpu_key, orm.GpuPrice.cents_per_gpu_hour))
    prices: dict[str, int] = {key: cents for key, cents in rows.all()}
    default = prices.pop(DEFAULT_KEY, DEFAULT_GPU_PRICE_CENTS)
    storage = prices.pop(STORAGE_KEY, DEFAULT_STORAGE_CENTS_PER_GB_MONTH)
    return PriceBook(default_gpu_hour=default, gpu_hour=prices, storage_gb_month=storage)


async def set_default(session: AsyncSession, *, clock: Clock, cents: int) -> bool:
    """Record the configured default price; True when it changed (offers must be rebuilt)."""
    return await _set_reserved(session, clock, DEFAULT_KEY, cents, DEFAULT_GPU_PRICE_CENTS)


async def set_storage(session: AsyncSession, *, clock: Clock, cents: int) -> bool:
    """Record the configured storage price (cents per GB-month); True when it changed."""
    return await _set_reserved(
        session, clock, STORAGE_KEY, cents, DEFAULT_STORAGE_CENTS_PER_GB_MONTH
    )


async def _set_reserved(
    session: AsyncSession, clock: Clock, key: str, cents: int, builtin: int
) -> bool:
    row = await session.scalar(select(orm.GpuPrice).where(orm.GpuPrice.gpu_key == key))
    if row is not None and row.cents_per_gpu_hour == cents:
        return False
    if row is None:
        if cents == builtin:
            return False  # an empty book already reads this
        row = orm.GpuPrice(
            gpu_key=key, name=key.lstrip("*") or "default", cents_per_gpu_hour=cents,
            updated_at=clock.now(),
        )  # fmt: skip
        session.add(row)
    else:
        row.cents_per_gpu_hour = cents
        row.updated_at = clock.now()
    await session.flush()
    return True
