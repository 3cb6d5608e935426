"""The one read a steady heartbeat makes: its host and the host's workloads, as cheaply as the
driver allows.

For a heartbeat that changes nothing this read is all the database work, so its cost is most of
the heartbeat's. It is one statement outside any transaction (one statement is its own
consistent snapshot). On Postgres it runs on the pooled connection's asyncpg driver directly:
SQLAlchemy's work around each statement (transaction bookkeeping, isolation level, cursor and
result wrapping) cost more CPU than the rest of a steady heartbeat (in process: 0.63-0.81 ms per
heartbeat through ``AsyncConnection.execute``, 0.40-0.50 ms this way). The SQL is the SQLAlchemy
select below, compiled once. SQLite (in process, no round trips) reads through SQLAlchemy Core.

JSON columns come back as text (``CAST … AS TEXT``): the caller decodes them only when they
changed (facts) or when it must build a new answer (specs).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Text, bindparam, cast, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from gpuyard.server import orm

_h = orm.Base.metadata.tables["hosts"]
_w = orm.Base.metadata.tables["workloads"]
HOST_AND_WORKLOADS = (
    select(
        _h.c.pk.label("host_pk"),
        _h.c.id.label("host_id"),
        _h.c.status.label("host_status"),
        _h.c.cordoned.label("host_cordoned"),
        cast(_h.c.facts, Text).label("host_facts_json"),
        _w.c.id,
        cast(_w.c.spec, Text).label("spec_json"),
        _w.c.spec_hash,
        _w.c.desired,
        _w.c.state,
        _w.c.exit_code,
        _w.c.host_port,
        _w.c.message,
        _w.c.log_tail,
        _w.c.log_size,
        _w.c.started_at,
        _w.c.finished_at,
    )
    .select_from(_h.outerjoin(_w, _w.c.host_id == _h.c.id))
    .where(_h.c.credential_hash == bindparam("secret_hash"))
    .order_by(_w.c.pk)
)


class HostRow(NamedTuple):
    """One row of ``HOST_AND_WORKLOADS``: the host's columns, repeated on each of its workloads'
    (workload columns named as in ``orm.Workload``; all None for a host without workloads)."""

    host_pk: int
    host_id: str
    host_status: str
    host_cordoned: bool
    host_facts_json: str
    id: str | None
    spec_json: str | None
    spec_hash: str | None
    desired: str | None
    state: str | None
    exit_code: int | None
    host_port: int | None
    message: str | None
    log_tail: str | None
    log_size: int | None
    started_at: datetime | None
    finished_at: datetime | None


class HostReader:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sql = (
            None
            if engine.dialect.name == "sqlite"
            else str(HOST_AND_WORKLOADS.compile(dialect=engine.dialect))
        )

    async def read(self, secret_hash: str) -> list[HostRow]:
        """The host whose credential hashes to ``secret_hash`` with its workloads, in ``pk``
        order; empty when there is no such host."""
        async with self._engine.connect() as conn:
            if self._sql is None:
                result = await conn.execute(HOST_AND_WORKLOADS, {"secret_hash": secret_hash})
                return [HostRow(*row) for row in result]
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None  # a checked-out connection has one
            try:
                records = await driver.fetch(self._sql, secret_hash)
            except Exception as exc:  # as SQLAlchemy would: drop the connection, one error kind
                await conn.invalidate(exc)
                raise OperationalError(self._sql, (secret_hash,), exc) from exc
            return [HostRow(*record) for record in records]
