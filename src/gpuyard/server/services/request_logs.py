"""The inference request log: rows the gateway queued, written in batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.server import orm


async def add(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (columns of ``request_logs`` by name) in one statement."""
    if rows:
        await session.execute(insert(orm.RequestLog), list(rows))
