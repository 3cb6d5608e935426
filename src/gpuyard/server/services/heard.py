"""When each host was last heard from, kept in memory and written for all hosts at once.

A heartbeat that changes nothing (services/heartbeats.py) writes nothing: its time is noted here,
and ``flush`` writes every noted time in one statement, about once a second, instead of one
``UPDATE hosts`` per heartbeat. A flush never moves a host's ``last_heartbeat_at`` backwards (a
newer time written meanwhile, by another replica or by a heartbeat that changed something, wins).

Who flushes (all by the injected clock or by an explicit call, never on a timer in tests):

- the host-health controller, at the start of each step, before it judges silence;
- the heartbeat path, before answering, once the oldest noted time is ``FLUSH_SECONDS`` old;
- a loop in the running server (controllers/heard_flush.py), for when heartbeats stop coming;
- the app's lifespan, on shutdown.

What this costs: ``last_heartbeat_at`` as read elsewhere (``GET /v1/admin/hosts/{id}``) may lag
the last heartbeat by up to ``FLUSH_SECONDS``. A process that is killed loses at most the last
second's times; that is harmless, since the host heartbeats again within its interval (5 s) and
silence only counts after ``host_unreachable_seconds`` (20 s). With several replicas on one
database each buffers the hosts that heartbeat to it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, DateTime, bindparam, or_, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.server import orm
from gpuyard.server.db import write_session

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0

_hosts = orm.Base.metadata.tables["hosts"]
_LATER = bindparam("heard_at", type_=orm.UTCDateTime())
# SQLite (one writer, no round trips): one prepared statement, executed for each host.
_TOUCH_EACH = (
    update(_hosts)
    .where(
        _hosts.c.pk == bindparam("host_pk"),
        or_(_hosts.c.last_heartbeat_at.is_(None), _hosts.c.last_heartbeat_at < _LATER),
    )
    .values(last_heartbeat_at=_LATER)
)
# Postgres: one statement for every host, the same text whatever their number (compiled once):
# ``UPDATE hosts … FROM unnest(pks, times)``, the batch as two array parameters.
_TOUCH_ALL = text(
    "UPDATE hosts SET last_heartbeat_at = heard.at"
    " FROM unnest(CAST(:pks AS BIGINT[]), CAST(:ats AS TIMESTAMP WITH TIME ZONE[]))"
    " AS heard(pk, at)"
    " WHERE hosts.pk = heard.pk"
    " AND (hosts.last_heartbeat_at IS NULL OR hosts.last_heartbeat_at < heard.at)"
).bindparams(
    bindparam("pks", type_=ARRAY(BigInteger())),
    bindparam("ats", type_=ARRAY(DateTime(timezone=True))),
)


class HeardFrom:
    """Heard-from times not yet written, by host ``pk``; the newest time per host wins."""

    def __init__(self, *, every: float = FLUSH_SECONDS) -> None:
        self.every = timedelta(seconds=every)
        self._at: dict[int, datetime] = {}
        self._oldest: datetime | None = None  # when the earliest unwritten time was noted

    def __len__(self) -> int:
        return len(self._at)

    def note(self, host_pk: int, at: datetime) -> None:
        known = self._at.get(host_pk)
        if known is None or at > known:
            self._at[host_pk] = at
        if self._oldest is None or at < self._oldest:
            self._oldest = at

    def due(self, now: datetime) -> bool:
        """True once the earliest unwritten time is ``every`` old."""
        return self._oldest is not None and now - self._oldest >= self.every

    async def flush(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        """Write every noted time; the number of hosts. On failure the times are kept for the
        next flush and the error is raised."""
        if not self._at:
            return 0
        batch, self._at, self._oldest = self._at, {}, None
        try:
            async with write_session(sessions) as session:
                await _write(session, sorted(batch.items()))
        except BaseException:
            for host_pk, at in batch.items():
                self.note(host_pk, at)
            raise
        return len(batch)

    async def flush_if_due(self, sessions: async_sessionmaker[AsyncSession], now: datetime) -> None:
        """Flush when due (see ``due``), logging a failure instead of raising it."""
        if self.due(now):
            await self.flush_or_log(sessions)

    async def flush_or_log(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Flush; a failure is logged, not raised (the times wait for the next flush)."""
        try:
            await self.flush(sessions)
        except Exception:
            log.warning("writing %d heard-from times failed; will retry", len(self), exc_info=True)


async def _write(session: AsyncSession, batch: list[tuple[int, datetime]]) -> None:
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(_TOUCH_EACH, [{"host_pk": pk, "heard_at": at} for pk, at in batch])
    else:
        await session.execute(
            _TOUCH_ALL, {"pks": [pk for pk, _ in batch], "ats": [at for _, at in batch]}
        )
