"""Chat completions kept per org (the gateway hands them over once answered), read back by id,
rated, and deleted after the retention period."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import InvalidRequest, NotFound
from gpuyard.server import orm

VOTES = ("up", "down")
MAX_ID = 200


async def add(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (columns of ``completions`` by name) in one statement."""
    if rows:
        await session.execute(insert(orm.StoredCompletion), list(rows))


async def get(session: AsyncSession, *, org_id: str, completion_id: str) -> orm.StoredCompletion:
    """The org's latest completion with this id (model servers' ids need not be unique)."""
    found: orm.StoredCompletion | None = None
    if len(completion_id) <= MAX_ID:
        found = await session.scalar(
            select(orm.StoredCompletion)
            .where(orm.StoredCompletion.org_id == org_id, orm.StoredCompletion.id == completion_id)
            .order_by(orm.StoredCompletion.pk.desc())
            .limit(1)
        )
    if found is None:
        raise NotFound(f"no chat completion {completion_id}", code="completion_not_found")
    return found


async def rate(
    session: AsyncSession, *, clock: Clock, org_id: str, completion_id: str, vote: str
) -> orm.StoredCompletion:
    if vote not in VOTES:
        raise InvalidRequest("vote must be up or down", param="vote", code="invalid_vote")
    row = await get(session, org_id=org_id, completion_id=completion_id)
    row.vote = vote
    row.voted_at = clock.now()
    await session.flush()
    return row


async def purge_before(session: AsyncSession, *, before: datetime) -> int:
    result = await session.execute(
        delete(orm.StoredCompletion).where(orm.StoredCompletion.created_at < before)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def cutoff(now: datetime, days: float) -> datetime:
    return now - timedelta(days=days)
