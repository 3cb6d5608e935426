"""Apply Alembic migrations at start-up, safely when several replicas start at once.

On Postgres the upgrade runs while holding a session-level advisory lock, so replicas queue and
each finds the schema current. SQLite has one writer by construction.
"""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

ADVISORY_LOCK_ID = 0x6770_7579  # "gpuy"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("gpuyard.server") / "migrations"))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


async def migrate(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": ADVISORY_LOCK_ID})
            await conn.commit()
        try:
            await conn.run_sync(_upgrade)
            await conn.commit()
        finally:
            if postgres:
                await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": ADVISORY_LOCK_ID})
                await conn.commit()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The applied revision; None on an empty database."""
    async with engine.connect() as conn:
        try:
            value = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        except DBAPIError:
            return None
        return str(value) if value is not None else None
