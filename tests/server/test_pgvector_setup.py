"""pgvector's set-up when several server processes start at once on one Postgres (``--workers
N``, replicas): every one of them ends up searching in Postgres."""

from __future__ import annotations

import asyncio

from gpuyard.server.db import create_engine
from gpuyard.server.services import pgvector
from tests import databases


async def test_processes_starting_together_all_get_pgvector(pgvector_database: str) -> None:
    await databases.truncate_all(pgvector_database)
    engines = [create_engine(pgvector_database) for _ in range(4)]
    try:
        async with engines[0].begin() as conn:  # as on a fresh database: nothing made yet
            await conn.exec_driver_sql("DROP TABLE IF EXISTS vector_embeddings")
            await conn.exec_driver_sql("DROP EXTENSION IF EXISTS vector")
        why_not = await asyncio.gather(*(pgvector.enable(e) for e in engines))
        assert why_not == [None] * 4
    finally:
        for engine in engines:
            await engine.dispose()


async def test_postgres_without_the_extension_says_why(pg_database: str) -> None:
    engine = create_engine(pg_database)
    try:
        why_not = await pgvector.enable(engine)
    finally:
        await engine.dispose()
    assert why_not and "vector" in why_not
