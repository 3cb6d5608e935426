"""The reads on a search's path (the collection, then the rows of the items the index found),
each scoped to the org, in one statement sent straight through the database driver
(aiosqlite's ``execute_fetchall``: one hop to its thread; asyncpg's ``fetch``: one round trip),
outside a transaction (one statement reads one consistent state on both databases).

Through an ORM session the same read took nine hops to aiosqlite's thread (its ``BEGIN``, the
cursor, the statement, the rows, the cursor's close, the end of the transaction), each a
wake-up of another thread: on a busy machine most of a search's time (bench/vector_search.py,
bench/README.md). The statements name their columns (an item's vector is left out).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

# In the order of the fields of vectorstore/records.py's Item and Collection.
ITEM_COLUMNS = (
    "id, collection_id, pk, content, description, tokens, file_id, created_at, updated_at"
)
COLLECTION_COLUMNS = "id, org_id, name, embedding_model, dimensions, created_at, updated_at"
MARK = re.compile(r"\?")


async def fetch(engine: AsyncEngine, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows ``sql`` (``?`` for each parameter) answers, as tuples."""
    async with engine.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        if engine.dialect.name == "sqlite":
            return [tuple(r) for r in await driver.execute_fetchall(sql, list(params))]
        numbered = iter(range(1, len(params) + 1))
        rows = await driver.fetch(MARK.sub(lambda _: f"${next(numbered)}", sql), *params)
        return [tuple(r) for r in rows]


async def collection(
    engine: AsyncEngine, *, org_id: str, collection_id: str
) -> tuple[Any, ...] | None:
    """``COLLECTION_COLUMNS`` of the org's collection, the times aware UTC datetimes."""
    rows = await fetch(
        engine,
        f"SELECT {COLLECTION_COLUMNS} FROM vector_collections WHERE id = ? AND org_id = ?",
        [collection_id, org_id],
    )
    return (*rows[0][:5], utc(rows[0][5]), utc(rows[0][6])) if rows else None


async def items_by_pk(
    engine: AsyncEngine, *, org_id: str, collection_id: str, pks: Sequence[int]
) -> list[tuple[Any, ...]]:
    """``ITEM_COLUMNS`` of the org's items in the collection among ``pks`` (absent ones left
    out), the times aware UTC datetimes."""
    if not pks:
        return []
    marks = ",".join("?" * len(pks))
    rows = await fetch(
        engine,
        f"SELECT {ITEM_COLUMNS} FROM vector_items "
        f"WHERE collection_id = ? AND org_id = ? AND pk IN ({marks})",
        [collection_id, org_id, *(int(pk) for pk in pks)],
    )
    return [(*row[:7], utc(row[7]), utc(row[8])) for row in rows]


def utc(value: datetime | str) -> datetime:
    """SQLite's driver gives back the text SQLAlchemy stored (naive UTC); asyncpg a
    ``timestamptz``."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
