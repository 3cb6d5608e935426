"""Readiness: the database answers and its schema is at the newest migration."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gpuyard.server.migrate import current_revision, head_revision


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    database: str
    schema_revision: str | None
    expected_revision: str | None


async def readiness(engine: AsyncEngine) -> Readiness:
    expected = head_revision()
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        current = await current_revision(engine)
    except Exception as exc:
        return Readiness(False, f"unreachable: {type(exc).__name__}", None, expected)
    return Readiness(current == expected, "ok", current, expected)
