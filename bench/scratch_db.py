"""Scratch databases for one benchmark run: a SQLite file in a temporary directory, or a fresh
Postgres database created on the server at ``admin_postgres_url()`` and dropped afterwards."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from gpuyard.server.db import create_engine
from gpuyard.server.migrate import migrate

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
KINDS = ("sqlite", "postgres")


def admin_postgres_url(given: str | None = None) -> str:
    """Where scratch Postgres databases are made: ``--postgres-url``, else
    ``GPUYARD_BENCH_POSTGRES_URL``, else ``GPUYARD_TEST_POSTGRES_URL``, else 127.0.0.1:5432."""
    return (
        given
        or os.environ.get("GPUYARD_BENCH_POSTGRES_URL")
        or os.environ.get("GPUYARD_TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES_URL
    )


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def postgres_unavailable(admin_url: str) -> str | None:
    """None when Postgres answers at ``admin_url``, else why not (one line)."""
    try:
        conn = await asyncpg.connect(_dsn(admin_url), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def postgres_version(admin_url: str) -> str:
    conn = await asyncpg.connect(_dsn(admin_url), timeout=3)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


@asynccontextmanager
async def scratch_database(
    kind: str, *, directory: Path, admin_url: str, migrated: bool
) -> AsyncIterator[str]:
    """A new empty database of ``kind``; yields its SQLAlchemy URL. ``migrated`` applies the
    schema first (a ``gpuyard server`` started on it migrates by itself)."""
    if kind == "sqlite":
        path = directory / f"bench-{secrets.token_hex(3)}.db"
        url = f"sqlite+aiosqlite:///{path}"
        try:
            if migrated:
                await _migrate(url)
            yield url
        finally:
            _remove_sqlite(path)
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}; use one of {', '.join(KINDS)}")
    name = f"gpuyard_bench_{os.getpid()}_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(_dsn(admin_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    server, _, query = admin_url.partition("?")  # ?host=/a/socket/dir
    url = f"{server.rpartition('/')[0]}/{name}" + (f"?{query}" if query else "")
    try:
        if migrated:
            await _migrate(url)
        yield url
    finally:
        conn = await asyncpg.connect(_dsn(admin_url))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def each_database(admin_url: str) -> AsyncIterator[tuple[str, str]]:
    """(kind, URL) of a new migrated scratch database of each kind in turn, each dropped after
    its turn; Postgres is skipped, with a line on stderr saying why, where none answers."""
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            if kind == "postgres" and (why := await postgres_unavailable(admin_url)):
                print(f"postgres skipped: {why}", file=sys.stderr)
                continue
            async with scratch_database(
                kind, directory=Path(tmp), admin_url=admin_url, migrated=True
            ) as url:
                yield kind, url


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
