"""The vector store's search inside Postgres, where the ``vector`` extension (pgvector) can be
created: each item's embedding also in ``vector_embeddings`` (written in the transaction that
writes the item, deleted with it by its foreign key), and one partial HNSW index (cosine) per
collection on ``embedding::vector(D)``, D the collection's dimensions.

The table and the indexes are made at start-up and as collections get their first item, not by
the migrations: a Postgres without the extension has neither, and the in-process index serves
instead (vectorstore/ann.py). Collection ids are inlined into the index DDL and the search's
predicate (the planner matches a partial index only to a literal); they are checked to have an
id's shape first.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gpuyard.core.ids import is_id

log = logging.getLogger(__name__)
EF_SEARCH = 100  # hnsw.ef_search: candidates looked at per search (pgvector's default is 40)
# Several server processes start at once (``--workers N``, replicas): their set-up and backfill
# take turns under this transaction-level advisory lock.
SET_UP_LOCK = "SELECT pg_advisory_xact_lock(hashtext('gpuyard-pgvector-set-up'))"

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS vector_embeddings (
    item_pk BIGINT PRIMARY KEY REFERENCES vector_items (pk) ON DELETE CASCADE,
    collection_id VARCHAR(40) NOT NULL,
    embedding vector NOT NULL
)
"""


async def enable(engine: AsyncEngine) -> str | None:
    """Create the extension and the table; None when pgvector is usable, else why not."""
    if engine.dialect.name != "postgresql":
        return "not Postgres"
    try:
        async with engine.begin() as conn:
            await conn.execute(text(SET_UP_LOCK))
            await conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
            await conn.execute(text(CREATE_TABLE))
    except DBAPIError as exc:
        return str(exc.orig).splitlines()[0] if exc.orig else str(exc)
    return None


def _literal(collection_id: str) -> str:
    if not is_id(collection_id, "col"):
        raise ValueError(f"not a collection id: {collection_id!r}")
    return collection_id


def index_name(collection_id: str) -> str:
    return f"vector_embeddings_hnsw_{_literal(collection_id)}"


def as_vector(vector: bytes | Sequence[float]) -> str:
    """pgvector's text form of a vector (``[x,y,…]``)."""
    if isinstance(vector, bytes):
        vector = struct.unpack(f"<{len(vector) // 4}f", vector)
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


async def ensure_index(session: AsyncSession, *, collection_id: str, dims: int) -> None:
    cid = _literal(collection_id)
    await session.execute(
        text(
            f"CREATE INDEX IF NOT EXISTS {index_name(cid)} ON vector_embeddings "
            f"USING hnsw ((embedding::vector({int(dims)})) vector_cosine_ops) "
            f"WHERE collection_id = '{cid}'"
        )
    )


async def drop_index(session: AsyncSession, *, collection_id: str) -> None:
    await session.execute(text(f"DROP INDEX IF EXISTS {index_name(collection_id)}"))


async def add(
    session: AsyncSession, *, collection_id: str, rows: Sequence[tuple[int, bytes]]
) -> None:
    if rows:
        await session.execute(
            text(
                "INSERT INTO vector_embeddings (item_pk, collection_id, embedding) "
                "VALUES (:pk, :cid, CAST(:v AS vector)) ON CONFLICT (item_pk) DO NOTHING"
            ),
            [{"pk": pk, "cid": collection_id, "v": as_vector(v)} for pk, v in rows],
        )


async def nearest(
    engine: AsyncEngine, *, collection_id: str, dims: int, vector: Sequence[float], k: int
) -> list[tuple[int, float]]:
    """The ``k`` nearest items' pks with their cosine similarity, straight through asyncpg (as
    vector_found.py reads, and for its reason): ``hnsw.ef_search`` set for one transaction."""
    cid = _literal(collection_id)
    d = int(dims)
    async with engine.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        async with driver.transaction():
            await driver.execute(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, int(k))}")
            rows = await driver.fetch(
                f"SELECT item_pk, embedding::vector({d}) <=> CAST($1 AS vector({d})) "
                f"FROM vector_embeddings WHERE collection_id = '{cid}' "
                f"ORDER BY embedding::vector({d}) <=> CAST($1 AS vector({d})) LIMIT $2",
                as_vector(vector),
                int(k),
            )
    return [(int(pk), 1.0 - float(distance)) for pk, distance in rows]


async def missing(session: AsyncSession, *, limit: int) -> list[tuple[int, str, bytes]]:
    """Items that have no embedding row yet (written before pgvector was there); takes the
    set-up lock, so one process at a time gives them theirs."""
    await session.execute(text(SET_UP_LOCK))
    result = await session.execute(
        text(
            "SELECT i.pk, i.collection_id, i.vector FROM vector_items i "
            "LEFT JOIN vector_embeddings e ON e.item_pk = i.pk "
            "WHERE e.item_pk IS NULL ORDER BY i.pk LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [(int(pk), cid, bytes(v)) for pk, cid, v in result.all()]


async def collections_with_dims(session: AsyncSession) -> list[tuple[str, int]]:
    result = await session.execute(
        text("SELECT id, dimensions FROM vector_collections WHERE dimensions IS NOT NULL")
    )
    return [(cid, int(d)) for cid, d in result.all()]


async def index_items(
    session: AsyncSession, *, collection_id: str, dims: int, rows: Sequence[tuple[int, bytes]]
) -> None:
    """The embeddings of items just written, in their transaction, and the collection's index."""
    await ensure_index(session, collection_id=collection_id, dims=dims)
    await add(session, collection_id=collection_id, rows=rows)
