"""Workloads: the rows agents reconcile. Applying what an agent reports, and releasing GPUs.

A workload's ``desired`` state is written by the service that owns it (instances, clusters); its
``state`` is only ever what the host's agent reported. A workload whose desired state is
``removed`` is deleted, and its GPUs freed, once its agent reports it gone.

``spec`` and ``spec_hash`` are always written together (``new_workload``, ``respec``): the hash
stands for the spec where answers are cached (services/heartbeats.py).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.clusters import MAX_FAILURES, ClusterStatus
from gpuyard.core.metering import Observed
from gpuyard.core.workload import WorkloadKind, WorkloadSpec, WorkloadStatus
from gpuyard.server import orm
from gpuyard.server.services import events, meter_changes, meters, wakeups

MAX_LOG_TAIL = 16_384


def new_workload(
    *,
    spec: WorkloadSpec,
    org_id: str,
    host_id: str,
    owner_id: str,
    desired: str,
    now: datetime,
) -> orm.Workload:
    return orm.Workload(
        id=spec.id,
        org_id=org_id,
        host_id=host_id,
        kind=spec.kind.value,
        owner_id=owner_id,
        spec=spec.model_dump(mode="json"),
        spec_hash=spec.spec_hash(),
        desired=desired,
        state="pending",
        created_at=now,
        updated_at=now,
    )


def respec(row: orm.Workload, spec: WorkloadSpec, now: datetime) -> None:
    row.spec = spec.model_dump(mode="json")
    row.spec_hash = spec.spec_hash()
    row.state = "pending"
    row.exit_code = None
    row.message = None
    row.updated_at = now


def news_of(row: Any, status: WorkloadStatus) -> dict[str, object]:
    """What recording ``status`` would change in ``row`` (a workload row, ORM or Core, with the
    column names): the fields that differ, empty when the report repeats what is stored or is
    about an older spec (the agent is replacing it)."""
    if status.spec_hash is not None and status.spec_hash != row.spec_hash:
        return {}
    seen: dict[str, object] = {
        "state": status.state.value,
        "exit_code": status.exit_code,
        "host_port": status.host_port,
        "message": status.message,
        "started_at": status.started_at or row.started_at,
        "finished_at": status.finished_at,
    }
    if status.log_tail is not None:  # a running workload's only when its output changed
        seen["log_tail"] = status.log_tail[-MAX_LOG_TAIL:]
        seen["log_size"] = status.log_size
    return {k: v for k, v in seen.items() if getattr(row, k) != v}


async def apply_status(
    session: AsyncSession, *, clock: Clock, row: orm.Workload, status: WorkloadStatus
) -> bool:
    """Record what the agent saw; an event when the state changed. True when it changed."""
    news = news_of(row, status)
    if not news:
        return False  # heartbeats repeat every report: one that changes nothing writes nothing
    now = clock.now()
    changed = "state" in news
    if changed:  # its meter counts to the reported start or end now (opened if it has none)
        after = Observed(
            billable=status.state.value in meters.BILLABLE_STATES,
            started_at=news.get("started_at", row.started_at),  # type: ignore[arg-type]
            finished_at=status.finished_at,
        )
        await meter_changes.follow(session, row, after, now, state=status.state.value)
    for key, value in news.items():
        setattr(row, key, value)
    row.reported_at = now
    if changed:
        row.updated_at = now
        if row.kind == WorkloadKind.REPLICA:  # its cluster reacts now (probe, replace)
            await wakeups.wake_where(session, orm.Cluster, orm.Cluster.id == row.owner_id)
        if row.kind == WorkloadKind.WORKER:  # its endpoint's autoscaler too
            await wakeups.wake_where(session, orm.Endpoint, orm.Endpoint.id == row.owner_id)
        data: dict[str, object] = {"id": row.owner_id, "workload_id": row.id, "state": row.state}
        if row.exit_code is not None:
            data["exit_code"] = row.exit_code
        if row.message:
            data["message"] = row.message
        await events.record(
            session,
            clock=clock,
            org_id=row.org_id,
            type=f"{row.kind}.{row.state}",
            subject_id=row.owner_id,
            data=data,
        )
    return changed


async def release_gpus(session: AsyncSession, *, workload_id: str) -> set[str]:
    """Free the workload's GPUs; the kinds (``gpu_key``) freed."""
    freed = await session.execute(
        update(orm.Gpu)
        .where(orm.Gpu.workload_id == workload_id)
        .values(workload_id=None)
        .returning(orm.Gpu.gpu_key)
    )
    return set(freed.scalars())


async def forget(session: AsyncSession, *, row: orm.Workload, now: datetime) -> None:
    """Delete a removed workload its host no longer runs, and free its GPUs (a cluster that
    waits for them to place a replacement, or to finish deleting, looks again now)."""
    # Its meter counts to now, when its host said it is gone; the controller charges and closes it.
    gone = Observed(billable=False, finished_at=now)
    await meter_changes.follow(session, row, gone, now, state=None)
    freed = await release_gpus(session, workload_id=row.id)
    await session.execute(delete(orm.Workload).where(orm.Workload.pk == row.pk))
    if row.kind == WorkloadKind.REPLICA:
        await wakeups.wake_where(session, orm.Cluster, orm.Cluster.id == row.owner_id)
    if row.kind == WorkloadKind.WORKER:
        await wakeups.wake_where(session, orm.Endpoint, orm.Endpoint.id == row.owner_id)
    if freed:
        await wake_clusters_waiting_for_room(session, gpu_keys=freed)


async def wake_clusters_waiting_for_room(
    session: AsyncSession, *, gpu_keys: Collection[str] | None = None
) -> None:
    """Clusters short of replicas look again now: room for them may have come (a host joined,
    came back, was uncordoned or trusted, or a replica's GPUs were freed). ``gpu_keys`` narrows
    it to the clusters that want one of those kinds of GPU (``None``: every kind)."""
    kinds = [] if gpu_keys is None else [orm.Cluster.gpu_key.in_(sorted(gpu_keys))]
    await wakeups.wake_where(
        session,
        orm.Cluster,
        *kinds,
        orm.Cluster.deleted_at.is_(None),
        orm.Cluster.status.in_(
            [ClusterStatus.PROVISIONING, ClusterStatus.DEGRADED, ClusterStatus.FAILED]
        ),
        orm.Cluster.failures < MAX_FAILURES,  # failed for want of room, not of a broken replica
    )


async def wake_clusters_on(session: AsyncSession, *, host_id: str) -> None:
    """The clusters with a replica on this host look again now (the host changed: drained,
    cordoned, lost, removed, back)."""
    on_host = select(orm.Workload.owner_id).where(
        orm.Workload.host_id == host_id, orm.Workload.kind == WorkloadKind.REPLICA
    )
    await wakeups.wake_where(session, orm.Cluster, orm.Cluster.id.in_(on_host))
