"""Per-key inference limits (requests and tokens per minute) that hold across server replicas:
each key's use in the current minute is one row, incremented atomically in the database."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.errors import RateLimited
from gpuyard.core.principal import Principal
from gpuyard.server import orm
from gpuyard.server.db import insert_on_conflict

WINDOW = timedelta(minutes=1)
KEEP = timedelta(hours=1)


def window_start(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


async def admit(session: AsyncSession, *, principal: Principal, now: datetime) -> None:
    """Count one request against the key's minute; raise RateLimited past either limit."""
    start = window_start(now)
    retry_after = max(1.0, (start + WINDOW - now).total_seconds())
    new = insert_on_conflict(session, orm.RateWindow).values(
        key_id=principal.key_id, window_start=start, requests=1, tokens=0
    )
    stmt = new.on_conflict_do_update(
        index_elements=["key_id", "window_start"],
        set_={"requests": orm.RateWindow.requests + 1},
    ).returning(orm.RateWindow.requests, orm.RateWindow.tokens)
    requests, tokens = (await session.execute(stmt)).one()
    if principal.rpm_limit is not None and requests > principal.rpm_limit:
        raise RateLimited(
            f"rate limit reached: {principal.rpm_limit} requests per minute for this key",
            retry_after=retry_after,
            code="rate_limit_requests",
        )
    if principal.tpm_limit is not None and tokens >= principal.tpm_limit:
        raise RateLimited(
            f"rate limit reached: {principal.tpm_limit} tokens per minute for this key",
            retry_after=retry_after,
            code="rate_limit_tokens",
        )


async def add_tokens(session: AsyncSession, *, key_id: str, tokens: int, now: datetime) -> None:
    stmt = insert_on_conflict(session, orm.RateWindow).values(
        key_id=key_id, window_start=window_start(now), requests=0, tokens=tokens
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["key_id", "window_start"],
            set_={"tokens": orm.RateWindow.tokens + tokens},
        )
    )


async def purge_old(session: AsyncSession, *, now: datetime) -> int:
    result = await session.execute(
        delete(orm.RateWindow).where(orm.RateWindow.window_start < now - KEEP)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def usage(session: AsyncSession, *, key_id: str, now: datetime) -> tuple[int, int]:
    row = await session.execute(
        select(orm.RateWindow.requests, orm.RateWindow.tokens).where(
            orm.RateWindow.key_id == key_id, orm.RateWindow.window_start == window_start(now)
        )
    )
    found = row.first()
    return (found[0], found[1]) if found else (0, 0)
