"""Run a select as one cursor page in (created_at, pk) order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.pagination import Page, Position, check_limit, decode_cursor, encode_cursor

T = TypeVar("T")


async def paginate(
    session: AsyncSession,
    stmt: Select[Any],
    *,
    model: Any,
    limit: int,
    cursor: str | None,
    convert: Callable[[Any], T],
) -> Page[T]:
    check_limit(limit)
    if cursor:
        pos = decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                model.created_at > pos.created_at,
                and_(model.created_at == pos.created_at, model.pk > pos.seq),
            )
        )
    stmt = stmt.order_by(model.created_at, model.pk).limit(limit + 1)
    rows = list((await session.scalars(stmt)).all())
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = (
        encode_cursor(Position(created_at=rows[-1].created_at, seq=rows[-1].pk))
        if has_more
        else None
    )
    return Page(items=[convert(r) for r in rows], has_more=has_more, next_cursor=next_cursor)
