"""The two databases every server test runs on: a migrated SQLite file and a Postgres database.

Postgres is found through GPUYARD_TEST_POSTGRES_URL, else a local server on 127.0.0.1:5432 (user
postgres). When none answers its tests are skipped, and the run says so at the end, unless
GPUYARD_TEST_REQUIRE_POSTGRES=1 (CI), which turns that into a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from pathlib import Path

import asyncpg

from gpuyard.server.db import create_engine
from gpuyard.server.migrate import migrate
from gpuyard.server.orm import Base

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def admin_pg_url() -> str:
    return os.environ.get("GPUYARD_TEST_POSTGRES_URL", DEFAULT_PG)


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def postgres_available() -> str | None:
    """None when Postgres answers, else why not."""
    try:
        conn = await asyncpg.connect(_asyncpg_dsn(admin_pg_url()), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def create_pg_database() -> str:
    name = f"gpuyard_test_{os.getpid()}_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(_asyncpg_dsn(admin_pg_url()))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = _with_db(admin_pg_url(), name)
    engine = create_engine(url)
    await migrate(engine)
    await engine.dispose()
    return url


async def drop_pg_database(url: str) -> None:
    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(_asyncpg_dsn(admin_pg_url()))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


_OWNED_SEQUENCES = """
SELECT s.oid::regclass::text FROM pg_class s
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype IN ('a', 'i')
JOIN pg_class t ON t.oid = d.refobjid
WHERE s.relkind = 'S' AND t.relname = ANY($1::text[])
  AND t.relnamespace = current_schema()::regnamespace
"""


# Tables the server makes at run time (pgvector's ``vector_embeddings``) that refer to ours.
_REFERRING_TABLES = """
SELECT DISTINCT c.conrelid::regclass::text FROM pg_constraint c
JOIN pg_class r ON r.oid = c.confrelid
JOIN pg_class t ON t.oid = c.conrelid
WHERE c.contype = 'f' AND r.relname = ANY($1::text[]) AND NOT t.relname = ANY($1::text[])
"""


async def truncate_all(url: str) -> None:
    """Empty every table and restart the sequences they own, as ``TRUNCATE … RESTART IDENTITY
    CASCADE`` would. DELETE, children first, rather than TRUNCATE: TRUNCATE gives each table and
    each of its indexes new files, about a second for the whole schema before every Postgres test
    on a busy machine, where a test leaves a few rows that DELETE removes in milliseconds. The
    tables outside the ORM that refer to ours are still truncated (as CASCADE did), so that the
    planner sees them empty as before (the pgvector test reads a query plan)."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        sequences = [row[0] for row in await conn.fetch(_OWNED_SEQUENCES, tables)]
        referring = [row[0] for row in await conn.fetch(_REFERRING_TABLES, tables)]
        statements = [f"TRUNCATE {', '.join(referring)}"] if referring else []
        statements += [f'DELETE FROM "{t}"' for t in tables]
        statements += [f"ALTER SEQUENCE {s} RESTART" for s in sequences]
        async with conn.transaction():
            await conn.execute(";\n".join(statements))
    finally:
        await conn.close()


async def make_sqlite_template(directory: Path) -> Path:
    path = directory / "template.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(engine)
    await engine.dispose()
    return path


def sqlite_copy(template: Path, directory: Path) -> str:
    target = directory / "gpuyard.db"
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)
