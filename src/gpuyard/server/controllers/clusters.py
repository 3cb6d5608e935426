"""The clusters controller: keeps each cluster at its wanted number of healthy replicas.

One pass over a cluster (``process`` then ``apply``):

1. probe, outside any transaction, every replica that runs and has a port: ``GET health_path``
   (2xx = ready) and, when the cluster names no models, ``GET /v1/models`` to discover them;
2. record the results; replicas that ended (exited or failed) or whose host went offline are
   removed and counted as failures (with their last log lines as the cluster's reason);
3. scale: place missing replicas of the current generation (scheduler.place/allocate), remove
   extra ones (unready first); during a rolling update place one new replica at a time beyond the
   wanted count and remove an old one only once a new one is ready, so capacity never drops;
4. derive the status (core/clusters.py) and write an event when it changes.

After ``MAX_FAILURES`` failed replicas the cluster is ``failed`` and is not retried until it is
changed (PATCH), so a replica that can never start does not loop forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.agent_protocol import Desired, HostStatus
from gpuyard.core.clusters import MAX_FAILURES, cluster_status
from gpuyard.core.ids import new_id
from gpuyard.core.workload import WorkloadKind, WorkloadSpec
from gpuyard.server import orm
from gpuyard.server.controllers.base import Reconciler
from gpuyard.server.services import events, offers, scheduler, workloads
from gpuyard.server.services.clusters import replica_rows

HEALTH_TIMEOUT_S = 2.0
MAX_UNHEALTHY_CHECKS = 150  # running but never healthy for this many passes: a failed replica


@dataclass(frozen=True, slots=True)
class Probe:
    replica_id: str
    url: str  # http://address:port
    health_path: str
    discover: bool


@dataclass(frozen=True, slots=True)
class ProbeResult:
    healthy: bool
    models: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class ClusterWork:
    id: str
    probes: tuple[Probe, ...]


Prober = Callable[[Probe], Awaitable[ProbeResult]]


async def http_probe(probe: Probe, client: httpx.AsyncClient) -> ProbeResult:
    try:
        r = await client.get(probe.url + probe.health_path, timeout=HEALTH_TIMEOUT_S)
        healthy = r.status_code < 400
        models: tuple[str, ...] | None = None
        if healthy and probe.discover:
            m = await client.get(probe.url + "/v1/models", timeout=HEALTH_TIMEOUT_S)
            if m.status_code == 200:
                data = m.json().get("data", [])
                models = tuple(str(x["id"]) for x in data if isinstance(x, dict) and "id" in x)
        return ProbeResult(healthy=healthy, models=models)
    except (httpx.HTTPError, ValueError, TypeError, KeyError):
        return ProbeResult(healthy=False, models=None)


class ClusterController(Reconciler[ClusterWork, dict[str, ProbeResult]]):
    name = "clusters"
    model = orm.Cluster
    batch_size = 10

    def __init__(self, *, default_price: int, prober: Prober | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.default_price = default_price
        self._client: httpx.AsyncClient | None = None
        self._prober = prober

    def due(self) -> ColumnElement[bool]:
        return or_(orm.Cluster.deleted_at.is_(None), orm.Cluster.status != "deleted")

    def snapshot(self, row: Any) -> ClusterWork:
        return ClusterWork(id=row.id, probes=())

    async def load(self, session: AsyncSession, row: Any) -> ClusterWork:
        probes = []
        for w, h in await replica_rows(session, row.id):
            if w.state == "running" and w.host_port and h.status == HostStatus.READY:
                probes.append(
                    Probe(
                        replica_id=w.id,
                        url=f"http://{h.address}:{w.host_port}",
                        health_path=row.health_path,
                        discover=not row.models,
                    )
                )
        return ClusterWork(id=row.id, probes=tuple(probes))

    async def process(self, item: ClusterWork) -> dict[str, ProbeResult]:
        if not item.probes:
            return {}
        prober = self._prober or self._http
        results = await asyncio.gather(*(prober(p) for p in item.probes))
        return {p.replica_id: r for p, r in zip(item.probes, results, strict=True)}

    async def _http(self, probe: Probe) -> ProbeResult:
        if self._client is None:
            self._client = httpx.AsyncClient()
        return await http_probe(probe, self._client)

    async def apply(
        self, session: AsyncSession, row: Any, item: ClusterWork, result: dict[str, ProbeResult]
    ) -> None:
        cluster: orm.Cluster = row
        now = self.clock.now()
        replicas = await replica_rows(session, cluster.id)
        live: list[orm.Workload] = []
        for w, h in replicas:
            probed = result.get(w.id)
            if probed is not None:
                w.ready = probed.healthy
                w.health_checked_at = now
                w.health_failures = 0 if probed.healthy else w.health_failures + 1
                if probed.models is not None:
                    w.served_models = list(probed.models)
            elif w.state != "running":
                w.ready = False
            lost = h.status in (HostStatus.OFFLINE, HostStatus.REMOVED)
            ended = w.state in ("exited", "failed")
            hopeless = w.health_failures >= MAX_UNHEALTHY_CHECKS
            if lost or ended or hopeless:
                await self._remove(session, w)
                if not lost:
                    cluster.failures += 1
                    tail = (w.log_tail or "").strip().splitlines()[-5:]
                    why = w.message or (
                        "never became healthy" if hopeless else f"exited ({w.exit_code})"
                    )
                    cluster.status_reason = f"replica {w.id} {why}" + (
                        ": " + " | ".join(tail) if tail else ""
                    )
                continue
            live.append(w)

        wanted = 0 if cluster.deleted_at is not None else cluster.replicas
        current = [w for w in live if w.generation == cluster.generation]
        old = [w for w in live if w.generation != cluster.generation]
        unplaceable = False
        if cluster.failures < MAX_FAILURES:
            room = wanted - len(current)
            if old and wanted:
                room = min(room, wanted + 1 - len(live))
            for _ in range(max(0, room)):
                placed = await self._place(session, cluster)
                if placed is None:
                    # GPUs our removed replicas still hold come back once their host confirms.
                    unplaceable = not await self._draining(session, cluster.id)
                    if unplaceable and not cluster.failures:
                        cluster.status_reason = (
                            f"no ready host has {cluster.gpus_per_replica} free "
                            f"{cluster.gpu_name} GPU(s) for a replica"
                        )
                    break
                current.append(placed)
        for w in _surplus(current, wanted):
            await self._remove(session, w)
            current.remove(w)
        ready_new = sum(1 for w in current if w.ready)
        for w in sorted(old, key=lambda w: (w.ready, w.pk)):
            if ready_new + sum(1 for o in old if o.ready) > wanted or not w.ready or not wanted:
                await self._remove(session, w)
                old.remove(w)
        ready = sum(1 for w in current + old if w.ready)
        status = cluster_status(
            wanted=wanted,
            ready=ready,
            failures=cluster.failures,
            unplaceable=unplaceable and not current,
            deleting=cluster.deleted_at is not None,
        )
        if cluster.deleted_at is not None and not current and not old:
            status_value = "deleted"
        else:
            status_value = status.value
        if status_value in ("healthy",):
            cluster.status_reason = None
        if status_value != cluster.status:
            cluster.status = status_value
            cluster.updated_at = now
            await events.record(
                session,
                clock=self.clock,
                org_id=cluster.org_id,
                type=f"cluster.{status_value}",
                subject_id=cluster.id,
                data={"ready": ready, "wanted": wanted, "reason": cluster.status_reason},
            )

    async def _place(self, session: AsyncSession, cluster: orm.Cluster) -> orm.Workload | None:
        placement = await scheduler.place(
            session, gpu_key=cluster.gpu_key, count=cluster.gpus_per_replica, owner_id=cluster.id
        )
        if placement is None:
            return None
        workload_id = new_id("wl")
        if not await scheduler.allocate(session, gpus=placement.gpus, workload_id=workload_id):
            return None
        spec = WorkloadSpec(
            id=workload_id,
            kind=WorkloadKind.REPLICA,
            image=cluster.container,
            command=cluster.command,
            env=dict(cluster.env),
            gpu_indices=[g.index for g in placement.gpus],
            gpu_uuids=[g.uuid for g in placement.gpus],
            port=cluster.port,
            health_path=cluster.health_path,
            labels={"gpuyard.cluster": cluster.id, "gpuyard.org": cluster.org_id},
        )
        row = workloads.new_workload(
            spec=spec,
            org_id=cluster.org_id,
            host_id=placement.host.id,
            owner_id=cluster.id,
            desired=Desired.RUNNING.value,
            now=self.clock.now(),
        )
        row.generation = cluster.generation
        session.add(row)
        await session.flush()
        await offers.refresh_host(session, host=placement.host, default_price=self.default_price)
        return row

    async def _draining(self, session: AsyncSession, cluster_id: str) -> bool:
        found = await session.scalar(
            select(orm.Workload.pk)
            .where(orm.Workload.owner_id == cluster_id, orm.Workload.desired == "removed")
            .limit(1)
        )
        return found is not None

    async def _remove(self, session: AsyncSession, w: orm.Workload) -> None:
        w.desired = Desired.REMOVED.value
        w.ready = False
        w.updated_at = self.clock.now()


def _surplus(current: list[orm.Workload], wanted: int) -> list[orm.Workload]:
    extra = len(current) - wanted
    if extra <= 0:
        return []
    # unready first, then the newest
    return sorted(current, key=lambda w: (w.ready, -w.pk))[:extra]
