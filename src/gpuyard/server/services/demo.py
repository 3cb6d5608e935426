"""``gpuyard up --demo``: an embeddings cluster and a speech cluster of the built-in CPU workers on
the local host, published to every org, so a newcomer can call ``/v1/embeddings`` and
``/v1/audio/speech`` with the ``openai`` SDK within minutes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.clusters import Cluster
from gpuyard.server import orm
from gpuyard.server.services import clusters
from gpuyard.server.services.clusters import ClusterSpec
from gpuyard.server.services.hosts import operator_org_id

DEMO = (  # name, image, task
    ("demo-embeddings", "gpuyard/worker:embeddings", "embeddings"),
    ("demo-speech", "gpuyard/worker:tts", "speech"),
)


async def local_gpu_type(session: AsyncSession) -> str | None:
    """A GPU type of the first ready host, once one has joined."""
    return await session.scalar(
        select(orm.Gpu.name)
        .join(orm.Host, orm.Host.id == orm.Gpu.host_id)
        .where(orm.Host.status == "ready")
        .order_by(orm.Host.pk, orm.Gpu.index)
        .limit(1)
    )


async def ensure_demo(session: AsyncSession, *, clock: Clock, gpu_type: str) -> list[Cluster]:
    """Create the demo clusters that do not exist yet; idempotent across restarts."""
    org_id = await operator_org_id(session)
    made = []
    for name, image, task in DEMO:
        exists = await session.scalar(
            select(orm.Cluster.id).where(
                orm.Cluster.org_id == org_id,
                orm.Cluster.name == name,
                orm.Cluster.deleted_at.is_(None),
            )
        )
        if exists:
            continue
        spec = ClusterSpec(
            name=name,
            gpu_type=gpu_type,
            replicas=1,
            container=image,
            env={},
            public=True,
            task=task,
        )
        made.append(await clusters.create_cluster(session, clock=clock, org_id=org_id, spec=spec))
    return made


async def demo_statuses(session: AsyncSession) -> dict[str, tuple[str, str | None]]:
    """The demo clusters' status and status reason, by name."""
    org_id = await operator_org_id(session)
    rows = await session.execute(
        select(orm.Cluster.name, orm.Cluster.status, orm.Cluster.status_reason).where(
            orm.Cluster.org_id == org_id,
            orm.Cluster.name.in_([name for name, _, _ in DEMO]),
            orm.Cluster.deleted_at.is_(None),
        )
    )
    return {name: (status, reason) for name, status, reason in rows.all()}
