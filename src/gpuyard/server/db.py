"""Database engines and sessions for SQLite (embedded default) and Postgres.

SQLite runs in WAL mode with a busy timeout and foreign keys on. Its transactions that will write
start with ``BEGIN IMMEDIATE`` (ask for it with :func:`write_session`), so two writers queue on the
busy timeout instead of failing with "database is locked" when a read upgrades to a write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from gpuyard.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)
SQLITE_BUSY_TIMEOUT_MS = 30_000
# SQLite folds its write-ahead log into the database (a checkpoint) in the commit that passes this
# many pages: with the server's checkpointer (WalCheckpointer) a backstop, reached only if it
# falls behind (about 40 MB of log).
SQLITE_AUTOCHECKPOINT_PAGES = 10_000
CHECKPOINT_INTERVAL_S = 1.0
WRITE_OPTION = "gpuyard_write"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "isolation_level": None},
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    # A pool large enough for a busy replica; connections are recycled rather than pinged
    # before every checkout (a round trip per request), and a dropped one fails one request.
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 30)
    kwargs.setdefault("pool_recycle", 1800)
    return create_async_engine(url, **kwargs)


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # The driver runs in autocommit (isolation_level=None), so we emit BEGIN ourselves.
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def session_factory(
    engine: AsyncEngine, *, sync_session_class: type[Session] = Session
) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        engine, expire_on_commit=False, autoflush=False, sync_session_class=sync_session_class
    )


def insert_on_conflict(session: AsyncSession, table: Any) -> postgresql.Insert | sqlite.Insert:
    """``INSERT INTO table`` in the session's dialect, which can say ``ON CONFLICT`` (do nothing,
    or update): Postgres's or SQLite's."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def begin_write(session: AsyncSession) -> None:
    """Mark the session's coming transaction as a writer (``BEGIN IMMEDIATE`` on SQLite)."""
    await session.connection(execution_options={WRITE_OPTION: True})


@asynccontextmanager
async def write_session(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session in one write transaction: committed on success, rolled back on error."""
    async with factory() as session:
        await begin_write(session)
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


@asynccontextmanager
async def read_session(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with factory() as session, session.begin():
        yield session


class WalCheckpointer:
    """Checkpoints a SQLite database every ``interval`` seconds, off the write path.

    Left to itself, SQLite checkpoints in whichever commit passes its threshold, so that commit
    (a metering batch, a request's write) also copies the log's pages into the database and waits
    for the disk: on a metering pass over 10,000 workloads, 0.15 to 0.25 s of its time. Here a
    task does it in the background (``PASSIVE``: it never waits for, nor blocks, a writer or a
    reader), and the threshold (``SQLITE_AUTOCHECKPOINT_PAGES``) is only a backstop. Nothing to do
    on Postgres.
    """

    def __init__(self, engine: AsyncEngine, *, interval: float = CHECKPOINT_INTERVAL_S) -> None:
        self.engine = engine
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.engine.dialect.name == "sqlite" and self._task is None:
            self._task = asyncio.create_task(self._run(), name="sqlite-checkpoint")

    @property
    def running(self) -> bool:
        return self._task is not None

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def checkpoint(self) -> None:
        """One passive checkpoint, outside any transaction (on the driver's connection)."""
        async with self.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            await driver.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.checkpoint()
            except Exception:
                log.exception("SQLite checkpoint failed; its commits will checkpoint instead")
