"""Inference clusters: create, read, change and delete. The clusters controller
(controllers/clusters.py) places, health-checks, scales and rolls their replicas."""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core import gpu_names
from gpuyard.core.autoscaling.replicas import (
    MAX_REPLICAS,
    ReplicaAutoscaling,
    autoscaling_errors,
)
from gpuyard.core.clock import Clock
from gpuyard.core.clusters import Cluster, ClusterStatus, ReplicaView
from gpuyard.core.errors import Conflict, InvalidRequest, NotFound
from gpuyard.core.ids import is_id, new_id
from gpuyard.core.pagination import Page
from gpuyard.server import orm
from gpuyard.server.services import events, wakeups
from gpuyard.server.services.pagination import paginate

_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
DEFAULT_PORT = 8000
DEFAULT_HEALTH_PATH = "/health"


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    name: str
    gpu_type: str
    replicas: int
    container: str
    env: dict[str, str]
    command: str | None = None
    gpus_per_replica: int = 1
    port: int = DEFAULT_PORT
    health_path: str = DEFAULT_HEALTH_PATH
    models: tuple[str, ...] = ()
    public: bool = False
    autoscaling: ReplicaAutoscaling | None = None
    task: str | None = None  # one of core.clusters.TASKS; None: not declared


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise InvalidRequest(
            "name must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'",
            param="name",
        )
    return name


def _check_replicas(replicas: int) -> None:
    if not 0 <= replicas <= MAX_REPLICAS:
        raise InvalidRequest(f"replicas must be between 0 and {MAX_REPLICAS}", param="replicas")


def _check_autoscaling(a: ReplicaAutoscaling | None) -> dict[str, Any] | None:
    """The settings as stored; 400 naming the first wrong field."""
    if a is None:
        return None
    for name, why in autoscaling_errors(a).items():
        raise InvalidRequest(f"autoscaling.{why}", param=f"autoscaling.{name}")
    return asdict(a)


def _autoscaling(raw: dict[str, Any] | None) -> ReplicaAutoscaling | None:
    return None if raw is None else ReplicaAutoscaling(**raw)


async def _known_gpu_type(session: AsyncSession, gpu_type: str) -> tuple[str, str]:
    key = gpu_names.gpu_key(gpu_type)
    name = await session.scalar(select(orm.Gpu.name).where(orm.Gpu.gpu_key == key).limit(1))
    if name is None:
        name = await session.scalar(select(orm.GpuPrice.name).where(orm.GpuPrice.gpu_key == key))
    if not key or name is None:
        raise InvalidRequest(
            f"unknown gpu_type {gpu_type!r}; GET /v1/gpus lists the fleet's types",
            code="unknown_gpu_type",
            param="gpu_type",
        )
    return key, gpu_names.display_name(name)


async def replica_rows(
    session: AsyncSession, cluster_id: str
) -> list[tuple[orm.Workload, orm.Host]]:
    rows = await session.execute(_replicas_of([cluster_id]))
    return [(w, h) for w, h in rows.all()]


def _replicas_of(cluster_ids: list[str]) -> Select[orm.Workload, orm.Host]:
    """The live replicas of these clusters (draining ones included) with their hosts, oldest
    first."""
    return (
        select(orm.Workload, orm.Host)
        .join(orm.Host, orm.Host.id == orm.Workload.host_id)
        .where(orm.Workload.owner_id.in_(cluster_ids), orm.Workload.desired != "removed")
        .order_by(orm.Workload.pk)
    )


def view(w: orm.Workload, h: orm.Host) -> ReplicaView:
    return ReplicaView(
        id=w.id,
        host_id=h.id,
        state=w.state,
        ready=w.ready,
        generation=w.generation,
        address=h.address,
        host_port=w.host_port,
        models=tuple(w.served_models or ()),
        draining=w.drain_started_at is not None,
    )


def to_domain(row: orm.Cluster, replicas: list[ReplicaView]) -> Cluster:
    ready = [r for r in replicas if r.ready]
    discovered = sorted({m for r in ready for m in r.models})
    return Cluster(
        id=row.id,
        org_id=row.org_id,
        name=row.name,
        slug=row.slug,
        gpu_type=gpu_names.slug(row.gpu_name),
        gpu_name=row.gpu_name,
        replicas=row.replicas,
        gpus_per_replica=row.gpus_per_replica,
        container=row.container,
        env=dict(row.env),
        command=row.command,
        port=row.port,
        health_path=row.health_path,
        models=tuple(row.models) or tuple(discovered),
        public=row.public,
        status=ClusterStatus(row.status),
        status_reason=row.status_reason,
        ready_replicas=len(ready),
        created_at=row.created_at,
        updated_at=row.updated_at,
        replica_views=tuple(replicas),
        autoscaling=_autoscaling(row.autoscaling),
        task=row.task,
    )


async def _row(
    session: AsyncSession, org_id: str, cluster_id: str, *, lock: bool = False
) -> orm.Cluster:
    row = None
    if is_id(cluster_id, "cl"):
        stmt = select(orm.Cluster).where(
            orm.Cluster.id == cluster_id,
            orm.Cluster.org_id == org_id,
            orm.Cluster.deleted_at.is_(None),
        )
        row = await session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise NotFound(f"cluster {cluster_id} not found", code="cluster_not_found")
    return row


async def _domain(session: AsyncSession, row: orm.Cluster) -> Cluster:
    return to_domain(row, [view(w, h) for w, h in await replica_rows(session, row.id)])


async def create_cluster(
    session: AsyncSession, *, clock: Clock, org_id: str, spec: ClusterSpec
) -> Cluster:
    name = _check_name(spec.name)
    _check_replicas(spec.replicas)
    autoscaling = _check_autoscaling(spec.autoscaling)
    replicas = spec.autoscaling.clamp(spec.replicas) if spec.autoscaling else spec.replicas
    if spec.public:
        org = await session.scalar(select(orm.Org).where(orm.Org.id == org_id))
        if org is None or not org.is_operator:
            raise InvalidRequest(
                "only the operator can publish a cluster to every org", param="public"
            )
    taken = await session.scalar(
        select(orm.Cluster.id).where(
            orm.Cluster.org_id == org_id, orm.Cluster.name == name, orm.Cluster.deleted_at.is_(None)
        )
    )
    if taken:
        raise Conflict(
            f"a cluster named {name!r} exists ({taken})", code="cluster_name_taken", param="name"
        )
    key, display = await _known_gpu_type(session, spec.gpu_type)
    now = clock.now()
    row = orm.Cluster(
        id=new_id("cl"),
        org_id=org_id,
        name=name,
        slug=f"{name[:56]}-{secrets.token_hex(3)}",
        gpu_key=key,
        gpu_name=display,
        replicas=replicas,
        gpus_per_replica=spec.gpus_per_replica,
        container=spec.container,
        env=dict(spec.env),
        command=spec.command,
        port=spec.port,
        health_path=spec.health_path,
        models=list(spec.models),
        public=spec.public,
        autoscaling=autoscaling,
        task=spec.task,
        status=ClusterStatus.PROVISIONING if replicas else ClusterStatus.STOPPED,
        generation=1,
        failures=0,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    wakeups.wake(session, row)  # placed at once, not at the next poll
    await session.flush()
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="cluster.created",
        subject_id=row.id,
        data={
            "name": name,
            "gpu_type": gpu_names.slug(display),
            "replicas": replicas,
            "autoscaling": autoscaling,
        },
    )
    return to_domain(row, [])


async def get_cluster(session: AsyncSession, *, org_id: str, cluster_id: str) -> Cluster:
    return await _domain(session, await _row(session, org_id, cluster_id))


async def list_clusters(
    session: AsyncSession, *, org_id: str, limit: int, cursor: str | None
) -> Page[Cluster]:
    stmt = select(orm.Cluster).where(orm.Cluster.org_id == org_id, orm.Cluster.deleted_at.is_(None))
    page = await paginate(
        session, stmt, model=orm.Cluster, limit=limit, cursor=cursor, convert=lambda r: r
    )
    replicas: dict[str, list[ReplicaView]] = {r.id: [] for r in page.items}
    if page.items:
        for w, h in (await session.execute(_replicas_of(list(replicas)))).all():
            replicas[w.owner_id].append(view(w, h))
    items = [to_domain(r, replicas[r.id]) for r in page.items]
    return Page(items=items, has_more=page.has_more, next_cursor=page.next_cursor)


_ROLLING = {"container", "env", "command", "port", "health_path", "gpus_per_replica"}


async def update_cluster(
    session: AsyncSession, *, clock: Clock, org_id: str, cluster_id: str, changes: dict[str, Any]
) -> Cluster:
    """PATCH: ``replicas`` scales (within the autoscaling bounds, if set: the autoscaler moves
    it from there); ``autoscaling`` turns the autoscaler on, changes it, or (null) off; a change
    to what runs starts a rolling update (a new generation of replicas, surged one at a time)."""
    row = await _row(session, org_id, cluster_id, lock=True)
    if "name" in changes and changes["name"] != row.name:
        raise InvalidRequest("a cluster cannot be renamed", param="name")
    if "replicas" in changes:
        _check_replicas(int(changes["replicas"]))
    if "autoscaling" in changes:
        raw = changes["autoscaling"]
        row.autoscaling = _check_autoscaling(None if raw is None else ReplicaAutoscaling(**raw))
    if "replicas" in changes:
        row.replicas = int(changes["replicas"])
    if (bounds := _autoscaling(row.autoscaling)) is not None:
        row.replicas = bounds.clamp(row.replicas)
    rolled = False
    for field in _ROLLING & changes.keys():
        value = changes[field]
        if field == "env":
            value = dict(value)
        if getattr(row, field) != value:
            setattr(row, field, value)
            rolled = True
    if "models" in changes:
        row.models = list(changes["models"])
    if "task" in changes:
        row.task = changes["task"]
    if rolled:
        row.generation += 1
    if rolled or changes.keys() & {"replicas", "autoscaling"}:
        row.failures = 0
        row.status_reason = None
    row.updated_at = clock.now()
    wakeups.wake(session, row)
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="cluster.updated",
        subject_id=row.id,
        data={"changed": sorted(changes), "generation": row.generation, "replicas": row.replicas},
    )
    return await _domain(session, row)


async def delete_cluster(
    session: AsyncSession, *, clock: Clock, org_id: str, cluster_id: str
) -> Cluster:
    """Delete: the cluster is ``deleting``; the clusters controller drains its replicas (out of
    routing, finishing what they were sent), removes them, and then marks it ``deleted``."""
    row = await _row(session, org_id, cluster_id, lock=True)
    now = clock.now()
    row.deleted_at = now
    row.status = ClusterStatus.DELETING
    row.updated_at = now
    wakeups.wake(session, row)
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="cluster.deleting",
        subject_id=row.id,
        data={"name": row.name},
    )
    return to_domain(row, [view(w, h) for w, h in await replica_rows(session, row.id)])


def endpoint_url(*, slug: str, public_url: str, endpoint_domain: str | None) -> str:
    if endpoint_domain:
        scheme = "https" if public_url.startswith("https") else "http"
        return f"{scheme}://{slug}.{endpoint_domain}"
    return f"{public_url.rstrip('/')}/endpoints/{slug}"
