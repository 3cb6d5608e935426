"""Writing many rows of one table in one go: an insert of many new rows, an update of many rows
by primary key, each row with its own values.

On Postgres each is **one** statement whatever the number of rows: every column's values travel
as one array and ``unnest`` turns them back into rows (``INSERT ... SELECT FROM unnest(...)``,
``UPDATE ... FROM unnest(...)``), so the server plans and runs one statement and the driver
encodes arrays instead of a parameter set per row. On SQLite, which has no arrays, they are one
prepared statement run once per row (``executemany``): the rows are written in the same process,
without a round trip each. Every row of a call must give the same columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, column, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["insert_rows", "update_rows"]


async def insert_rows(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts of column name to value) into ``table``."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        await session.execute(insert(table), list(rows))
        return
    names = list(rows[0])
    source = _unnest(table, names, "given")
    await session.execute(
        insert(table).from_select(names, select(*(source.c[name] for name in names))),
        _arrays(names, rows),
    )


async def update_rows(
    session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]], *, key: str = "pk"
) -> None:
    """Set each row's columns (all but ``key``) on the row of ``table`` whose ``key`` column holds
    the row's ``key`` value."""
    if not rows:
        return
    names = [name for name in rows[0] if name != key]
    if session.get_bind().dialect.name != "postgresql":
        match = f"{key}_match"  # a bind's name must differ from the columns it sets
        by_key = update(table).where(table.c[key] == bindparam(match))
        await session.execute(
            by_key, [{match: row[key], **{n: row[n] for n in names}} for row in rows]
        )
        return
    source = _unnest(table, [key, *names], "given")
    await session.execute(
        update(table)
        .where(table.c[key] == source.c[key])
        .values({name: source.c[name] for name in names}),
        _arrays([key, *names], rows),
    )


def _unnest(table: Table, names: list[str], alias: str) -> Any:
    """``unnest($1::type[], $2::type[], ...) AS alias(name, ...)``: one array bind per column,
    typed as the column is, read as rows."""
    arrays = [bindparam(f"a_{name}", type_=ARRAY(table.c[name].type)) for name in names]
    return (
        func.unnest(*arrays)
        .table_valued(*(column(name, table.c[name].type) for name in names))
        .render_derived(name=alias)
    )


def _arrays(names: list[str], rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    return {f"a_{name}": [row[name] for row in rows] for name in names}
