"""Operator prices per GPU type, in cents per GPU-hour (read through services/price_book.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.core import gpu_names
from gpuyard.core.clock import Clock
from gpuyard.core.errors import InvalidRequest, NotFound
from gpuyard.server import orm
from gpuyard.server.db import write_session
from gpuyard.server.services import offers, price_book


@dataclass(frozen=True, slots=True)
class GpuPrice:
    gpu_key: str
    gpu_name: str
    cents_per_gpu_hour: int
    updated_at: datetime


def _domain(row: orm.GpuPrice) -> GpuPrice:
    return GpuPrice(row.gpu_key, row.name, row.cents_per_gpu_hour, row.updated_at)


async def list_prices(session: AsyncSession) -> list[GpuPrice]:
    rows = await session.scalars(
        select(orm.GpuPrice)
        .where(~orm.GpuPrice.gpu_key.startswith(price_book.RESERVED_PREFIX, autoescape=True))
        .order_by(orm.GpuPrice.gpu_key)
    )
    return [_domain(r) for r in rows]


async def set_price(session: AsyncSession, *, clock: Clock, gpu_name: str, cents: int) -> GpuPrice:
    key = gpu_names.gpu_key(gpu_name)
    if not key:
        raise InvalidRequest("gpu_name must name a GPU type, e.g. 'RTX 4090'", param="gpu_name")
    if cents < 0:
        raise InvalidRequest("price must not be negative", param="cents_per_gpu_hour")
    row = await session.scalar(select(orm.GpuPrice).where(orm.GpuPrice.gpu_key == key))
    if row is None:
        row = orm.GpuPrice(
            gpu_key=key,
            name=gpu_names.display_name(gpu_name),
            cents_per_gpu_hour=cents,
            updated_at=clock.now(),
        )
        session.add(row)
    else:
        row.cents_per_gpu_hour = cents
        row.updated_at = clock.now()
    await session.flush()
    await offers.refresh_all(session)
    return _domain(row)


async def delete_price(session: AsyncSession, *, gpu_name: str) -> None:
    key = gpu_names.gpu_key(gpu_name)
    result = await session.execute(delete(orm.GpuPrice).where(orm.GpuPrice.gpu_key == key))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"no price set for {gpu_name}", code="price_not_found")
    await offers.refresh_all(session)


async def configure_default(
    sessions: async_sessionmaker[AsyncSession],
    *,
    clock: Clock,
    cents: int,
    storage_cents: int = price_book.DEFAULT_STORAGE_CENTS_PER_GB_MONTH,
) -> None:
    """At start: record this server's configured default GPU price (rebuilding the offers if it
    changed) and storage price."""
    async with write_session(sessions) as session:
        if await price_book.set_default(session, clock=clock, cents=cents):
            await offers.refresh_all(session)
        await price_book.set_storage(session, clock=clock, cents=storage_cents)
