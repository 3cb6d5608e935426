"""The server's SQLite checkpointer (db.WalCheckpointer): it folds the write-ahead log into the
database outside any transaction, so that commits do not (SQLite only; nothing on Postgres)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from gpuyard.core.clock import ManualClock
from gpuyard.server.db import (
    SQLITE_AUTOCHECKPOINT_PAGES,
    WalCheckpointer,
    create_engine,
    session_factory,
    write_session,
)
from gpuyard.server.migrate import migrate
from tests.server.metered_fleet import add_org, add_running_instances


async def test_a_checkpoint_folds_the_whole_log_and_the_backstop_is_set(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    engine = create_engine(url)
    await migrate(engine)
    sessions = session_factory(engine)
    clock = ManualClock()
    async with write_session(sessions) as s:
        org_id = await add_org(s, now=clock.now())
        await add_running_instances(
            s, org_id=org_id, count=500, cents_per_hour=1, started_at=clock.now(), now=clock.now()
        )
        limit = (await s.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one()
    assert limit == SQLITE_AUTOCHECKPOINT_PAGES
    database, wal = tmp_path / "db.sqlite", tmp_path / "db.sqlite-wal"
    before = database.stat().st_size
    assert wal.stat().st_size > 0  # the rows are in the log, not yet in the database file
    await WalCheckpointer(engine).checkpoint()
    assert database.stat().st_size > before  # now they are
    async with sessions() as s:
        assert (await s.execute(text("SELECT count(*) FROM workloads"))).scalar_one() == 500
    await engine.dispose()


async def test_the_checkpointer_does_nothing_on_postgres(db_url: str) -> None:
    engine = create_engine(db_url)
    checkpointer = WalCheckpointer(engine)
    checkpointer.start()
    assert checkpointer.running is (engine.dialect.name == "sqlite")
    await checkpointer.stop()
    await engine.dispose()
