"""Host health: missed heartbeats make a host ``unreachable``, then ``offline``.

An unreachable host offers nothing new; an offline host's instances read ``offline`` and (later)
its deployment replicas are replaced elsewhere. A heartbeat brings the host back to ``ready``
(services/agents.py), and the workloads it reports are read again, so nothing is duplicated.

Heartbeats that change nothing are not written one by one: their times wait in memory
(services/heard.py) for up to a second. Each step writes them first, so silence is judged on
every heartbeat this replica has answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.agent_protocol import HostStatus
from gpuyard.server import orm
from gpuyard.server.controllers.base import Reconciler
from gpuyard.server.services import events, offers, workloads
from gpuyard.server.services.heard import HeardFrom
from gpuyard.server.services.hosts import operator_org_id


@dataclass(frozen=True, slots=True)
class SilentHost:
    id: str
    name: str
    status: str


class HostHealthController(Reconciler[orm.Host, SilentHost, None]):
    name = "host-health"
    model = orm.Host

    def __init__(
        self,
        *,
        heard: HeardFrom,
        unreachable_after: float,
        offline_after: float,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.heard = heard
        self.unreachable_after = timedelta(seconds=unreachable_after)
        self.offline_after = timedelta(seconds=offline_after)

    async def step(self) -> int:
        await self.heard.flush(self.sessions)  # before judging silence
        return await super().step()

    def due(self) -> ColumnElement[bool]:
        now = self.clock.now()
        return or_(
            and_(
                orm.Host.status == HostStatus.READY,
                orm.Host.last_heartbeat_at <= now - self.unreachable_after,
            ),
            and_(
                orm.Host.status == HostStatus.UNREACHABLE,
                orm.Host.last_heartbeat_at <= now - self.offline_after,
            ),
        )

    def snapshot(self, row: orm.Host) -> SilentHost:
        return SilentHost(id=row.id, name=row.name, status=row.status)

    def _next_status(self, row: orm.Host) -> HostStatus | None:
        if row.last_heartbeat_at is None:
            return None
        silent = self.clock.now() - row.last_heartbeat_at
        if row.status == HostStatus.UNREACHABLE and silent >= self.offline_after:
            return HostStatus.OFFLINE
        if row.status == HostStatus.READY:
            if silent >= self.offline_after:
                return HostStatus.OFFLINE
            if silent >= self.unreachable_after:
                return HostStatus.UNREACHABLE
        return None

    async def apply(
        self, session: AsyncSession, row: orm.Host, item: SilentHost, result: None
    ) -> None:
        target = self._next_status(row)  # a heartbeat may have landed since the claim
        if target is None or row.last_heartbeat_at is None:
            return
        previous = row.status
        row.status = target
        row.status_changed_at = self.clock.now()
        await offers.refresh_host(session, host=row)
        await workloads.wake_clusters_on(session, host_id=row.id)  # replace what it ran
        await events.record(
            session,
            clock=self.clock,
            org_id=await operator_org_id(session),
            type=f"host.{target.value}",
            subject_id=row.id,
            data={
                "name": row.name,
                "was": previous,
                "last_heartbeat_at": row.last_heartbeat_at.isoformat(),
            },
        )
