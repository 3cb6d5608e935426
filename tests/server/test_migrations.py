"""The migrations build exactly the schema the ORM describes, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gpuyard.server.db import create_engine
from gpuyard.server.migrate import current_revision, head_revision, migrate
from gpuyard.server.orm import Base


async def test_orm_and_migrations_agree(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
            )
        assert diff == []
        assert await current_revision(engine) == head_revision()
        await migrate(engine)  # running again is a no-op
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()
