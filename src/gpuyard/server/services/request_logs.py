"""The inference request log: rows the gateway queued, written in batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.server import orm


async def add(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (columns of ``request_logs`` by name) in one statement."""
    if rows:
        await session.execute(insert(orm.RequestLog), list(rows))


async def query(
    session: AsyncSession,
    *,
    org_id: str,
    start: datetime,
    end: datetime,
    endpoint: str | None,
    limit: int,
) -> list[orm.RequestLog]:
    """The org's requests logged from ``start`` to ``end`` (both included), newest first."""
    q = select(orm.RequestLog).where(
        orm.RequestLog.org_id == org_id,
        orm.RequestLog.created_at >= start,
        orm.RequestLog.created_at <= end,
    )
    if endpoint is not None:
        q = q.where(orm.RequestLog.endpoint == endpoint)
    rows = await session.scalars(
        q.order_by(orm.RequestLog.created_at.desc(), orm.RequestLog.pk.desc()).limit(limit)
    )
    return list(rows.all())
