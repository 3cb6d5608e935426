"""What the inference gateway may route to: the clusters that are not deleted, and their
replicas that are ready (running, healthy, desired running, on a ready host), each with the
address of its host. Read in one session, about once a second per server replica."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.agent_protocol import HostStatus
from gpuyard.server import orm

LIVE_CLUSTERS = select(orm.Cluster).where(orm.Cluster.deleted_at.is_(None))
READY_REPLICAS = (
    select(orm.Workload, orm.Host.address)
    .join(orm.Host, orm.Host.id == orm.Workload.host_id)
    .where(
        orm.Workload.kind == "replica",
        orm.Workload.ready.is_(True),
        orm.Workload.desired == "running",
        orm.Workload.state == "running",
        orm.Workload.host_port.is_not(None),
        orm.Host.status == HostStatus.READY,
    )
)


async def routable(
    session: AsyncSession,
) -> tuple[list[orm.Cluster], list[tuple[orm.Workload, str]]]:
    """Live clusters, and ready replicas with their host's address."""
    clusters = list(await session.scalars(LIVE_CLUSTERS))
    replicas = [(w, address) for w, address in (await session.execute(READY_REPLICAS)).all()]
    return clusters, replicas
