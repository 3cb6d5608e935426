"""The clusters controller: keeps each cluster at its wanted number of healthy replicas.

One pass over a cluster (``process`` then ``apply``):

1. probe, outside any transaction, every replica that runs and has a port and is not draining:
   ``GET health_path`` (2xx = ready) and, when the cluster names no models, ``GET /v1/models``
   to discover them;
2. record the results; replicas that ended (exited or failed) or whose host went offline are
   removed at once (nothing to drain), ended ones counted as failures (with their last log lines
   as the cluster's reason); draining replicas whose drain period is over are removed;
3. scale: place missing replicas of the current generation (scheduler.place/allocate), retire
   extra ones (unready first); replicas of an older generation or on a host the operator drains
   are *displaced*: one new replica at a time is placed beyond the wanted count and a displaced
   one is retired only once a new one is ready, so capacity never drops (a drained host's
   replicas are retired anyway when no replacement fits anywhere: the operator's drain wins);
4. derive the status (core/clusters.py) and write an event when it changes; a deleted cluster
   is ``deleted`` once every replica has drained and its host has confirmed it gone (or is lost).

Retiring a replica that may be serving (running on a ready host) drains it: ``ready`` turns
false (the gateway stops routing to it within its 1-second refresh) and ``drain_started_at`` is
set while ``desired`` stays ``running``, so requests already sent to it finish; after
``drain_seconds`` its ``desired`` becomes ``removed`` and the host's agent stops it. A draining
replica is never probed back to ready and never counts as capacity. Others are removed at once.

After ``MAX_FAILURES`` failed replicas the cluster is ``failed`` and is not retried until it is
changed (PATCH), so a replica that can never start does not loop forever.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.agent_protocol import Desired, HostStatus
from gpuyard.core.clusters import DEFAULT_DRAIN_SECONDS, MAX_FAILURES, cluster_status
from gpuyard.core.ids import new_id
from gpuyard.core.workload import WorkloadKind, WorkloadSpec
from gpuyard.server import orm
from gpuyard.server.controllers import cluster_scaling
from gpuyard.server.controllers.base import Reconciler
from gpuyard.server.controllers.replica_health import (
    Probe,
    Prober,
    ProbeResult,
    http_probe,
    probed,
    record_health,
)
from gpuyard.server.services import events, offers, scheduler, wakeups, workloads
from gpuyard.server.services.clusters import replica_rows

PROBE_SECONDS = 5.0  # a settled cluster's replicas are probed this often
SETTLE_SECONDS = 1.0  # a replica that runs but is not ready yet is probed again this soon
MAX_UNHEALTHY_CHECKS = 600  # running but never healthy for this many probes: a failed replica


@dataclass(frozen=True, slots=True)
class ClusterWork:
    id: str
    probes: tuple[Probe, ...]


@dataclass(slots=True)
class _Pass:
    """What one pass over a cluster has found so far."""

    cluster: orm.Cluster
    now: datetime
    hosts: dict[str, orm.Host] = field(default_factory=dict)  # by replica id
    live: list[orm.Workload] = field(default_factory=list)  # running or starting, not leaving
    draining: list[orm.Workload] = field(default_factory=list)
    busy: dict[str, int] = field(default_factory=dict)  # requests in flight (autoscaling only)

    def displaced(self, w: orm.Workload) -> bool:
        """To be replaced: an older generation, or on a host the operator drains."""
        return w.generation != self.cluster.generation or self.hosts[w.id].draining


class ClusterController(Reconciler[orm.Cluster, ClusterWork, dict[str, ProbeResult]]):
    name = "clusters"
    model = orm.Cluster
    batch_size = 10

    def __init__(
        self,
        *,
        prober: Prober | None = None,
        drain_seconds: float = DEFAULT_DRAIN_SECONDS,
        probe_seconds: float = PROBE_SECONDS,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.drain = timedelta(seconds=drain_seconds)
        self.probe_every = timedelta(seconds=probe_seconds)
        self._client: httpx.AsyncClient | None = None
        self._prober = prober

    def due(self) -> ColumnElement[bool]:
        """Every cluster that is not gone; when is up to its next-run time (``_next_look``)."""
        return or_(orm.Cluster.deleted_at.is_(None), orm.Cluster.status != "deleted")

    def snapshot(self, row: orm.Cluster) -> ClusterWork:
        return ClusterWork(id=row.id, probes=())

    async def load(self, session: AsyncSession, row: orm.Cluster) -> ClusterWork:
        probes = []
        for w, h in await replica_rows(session, row.id):
            if probed(w, h) and w.host_port:
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
        self,
        session: AsyncSession,
        row: orm.Cluster,
        item: ClusterWork,
        result: dict[str, ProbeResult],
    ) -> None:
        cluster: orm.Cluster = row
        p = _Pass(cluster=cluster, now=self.clock.now())
        p.busy = await cluster_scaling.in_flight(session, cluster, p.now)
        rows = await replica_rows(session, cluster.id)
        for w, h in rows:
            p.hosts[w.id] = h
            record_health(w, h, result.get(w.id), p.now)
            await self._sweep(session, p, w)
        deleting = cluster.deleted_at is not None
        current = [w for w in p.live if not p.displaced(w)]
        old = [w for w in p.live if p.displaced(w)]
        idle: list[str] = []
        if cluster.autoscaling is not None and not deleting:
            idle = await cluster_scaling.rescale(
                session,
                clock=self.clock,
                cluster=cluster,
                current=current,
                every=[w for w, _ in rows],
                busy=p.busy,
                now=p.now,
            )
        wanted = 0 if deleting else cluster.replicas
        room = wanted - len(current)
        if old and wanted:  # surge: one replica beyond the wanted count at a time
            room = min(room, wanted + 1 - len(p.live))
        unplaceable = False
        if cluster.failures < MAX_FAILURES and room > 0:
            unplaceable = not await self._fill(session, p, current, room)
        for w in cluster_scaling.surplus(current, wanted, first=idle, busy=p.busy):
            await self._retire(session, p, w, "cluster deleted" if deleting else "scaled down")
            current.remove(w)
        ready_new = sum(1 for w in current if w.ready)
        for w in sorted(old, key=lambda w: (w.ready, w.pk)):
            host_drained = p.hosts[w.id].draining
            covered = ready_new + sum(1 for o in old if o.ready) > wanted
            # The operator's drain wins when no replacement fits anywhere.
            if not wanted or not w.ready or covered or (host_drained and unplaceable):
                why = "host drained" if host_drained else "rolling update"
                await self._retire(session, p, w, "cluster deleted" if deleting else why)
                old.remove(w)
        await self._set_status(
            session, p, wanted=wanted, live=current + old, unplaceable=unplaceable and not current
        )
        if cluster.status != "deleted":
            cluster.next_run_at = p.now + self._next_look(p, current + old)

    def _next_look(self, p: _Pass, live: list[orm.Workload]) -> timedelta:
        """How soon to look again: a replica that runs but is not ready yet is probed again soon,
        a drain ends on time, anything else waits for the probe interval. (A replica that starts
        or ends is reported by its host's heartbeat, which wakes the cluster at once.)"""
        soon = [self.probe_every]
        for w in live:
            if w.state == "running" and not w.ready:  # 0.2 s, 0.4 s, 0.8 s, then every second
                soon.append(timedelta(seconds=min(SETTLE_SECONDS, 0.2 * 2**w.health_failures)))
        for w in p.draining:  # (past its end, one waits for its requests: polled)
            if w.drain_started_at is not None and w.drain_started_at + self.drain > p.now:
                soon.append(w.drain_started_at + self.drain - p.now)
        return max(min(soon), timedelta(seconds=0.1))

    async def _fill(
        self, session: AsyncSession, p: _Pass, current: list[orm.Workload], room: int
    ) -> bool:
        """Place up to ``room`` new replicas (added to ``current``); False when one could not
        be placed and none will fit soon."""
        cluster = p.cluster
        for _ in range(room):
            placed = await self._place(session, cluster)
            if placed is None:
                # GPUs our leaving replicas hold come back once they are gone.
                if await self._releasing(session, cluster.id):
                    return True
                if not cluster.failures:
                    cluster.status_reason = (
                        f"no ready host has {cluster.gpus_per_replica} free "
                        f"{cluster.gpu_name} GPU(s) for a replica"
                    )
                return False
            new, host = placed
            p.hosts[new.id] = host
            current.append(new)
        return True

    async def _sweep(self, session: AsyncSession, p: _Pass, w: orm.Workload) -> None:
        """Remove what is over; file the rest as live or draining."""
        lost = p.hosts[w.id].status in (HostStatus.OFFLINE, HostStatus.REMOVED)
        ended = w.state in ("exited", "failed")
        if w.drain_started_at is not None:
            if lost or ended:
                why = "host lost while draining" if lost else "ended while draining"
                await self._remove(session, p.cluster, w, why)
            elif cluster_scaling.drained(w, p.busy, p.now, self.drain):
                await self._remove(session, p.cluster, w, "drained")
            else:
                p.draining.append(w)
            return
        hopeless = w.health_failures >= MAX_UNHEALTHY_CHECKS
        if not (lost or ended or hopeless):
            p.live.append(w)
            return
        why = w.message or ("never became healthy" if hopeless else f"exited ({w.exit_code})")
        await self._remove(session, p.cluster, w, "host lost" if lost else why)
        if not lost:
            p.cluster.failures += 1
            tail = (w.log_tail or "").strip().splitlines()[-5:]
            p.cluster.status_reason = f"replica {w.id} {why}" + (
                ": " + " | ".join(tail) if tail else ""
            )

    async def _retire(self, session: AsyncSession, p: _Pass, w: orm.Workload, why: str) -> None:
        """Take a replica out of the cluster: drain it if it may be serving, else remove it."""
        if not self.drain or not probed(w, p.hosts[w.id]):
            await self._remove(session, p.cluster, w, why)
            return
        w.ready = False
        w.drain_started_at = w.updated_at = p.now
        p.draining.append(w)
        await self._event(session, p.cluster, w, "draining", why)

    async def _remove(
        self, session: AsyncSession, cluster: orm.Cluster, w: orm.Workload, why: str
    ) -> None:
        w.desired = Desired.REMOVED.value
        w.ready = False
        wakeups.tell_host(session, w.host_id)
        w.updated_at = self.clock.now()
        await self._event(session, cluster, w, "removed", why)

    async def _event(
        self, session: AsyncSession, cluster: orm.Cluster, w: orm.Workload, what: str, why: str
    ) -> None:
        await events.record(
            session,
            clock=self.clock,
            org_id=cluster.org_id,
            type=f"replica.{what}",
            subject_id=cluster.id,
            data={"id": cluster.id, "workload_id": w.id, "reason": why},
        )

    async def _set_status(
        self,
        session: AsyncSession,
        p: _Pass,
        *,
        wanted: int,
        live: list[orm.Workload],
        unplaceable: bool,
    ) -> None:
        cluster = p.cluster
        ready = sum(1 for w in live if w.ready)
        deleting = cluster.deleted_at is not None
        status = cluster_status(
            wanted=wanted,
            ready=ready,
            failures=cluster.failures,
            unplaceable=unplaceable,
            deleting=deleting,
        ).value
        if deleting and not live and not p.draining and not await self._stopping(session, p):
            status = "deleted"
        if status == "healthy":
            cluster.status_reason = None
        if status != cluster.status:
            cluster.status = status
            cluster.updated_at = p.now
            await events.record(
                session,
                clock=self.clock,
                org_id=cluster.org_id,
                type=f"cluster.{status}",
                subject_id=cluster.id,
                data={"ready": ready, "wanted": wanted, "reason": cluster.status_reason},
            )

    async def _place(
        self, session: AsyncSession, cluster: orm.Cluster
    ) -> tuple[orm.Workload, orm.Host] | None:
        placement = await scheduler.place(
            session,
            gpu_key=cluster.gpu_key,
            count=cluster.gpus_per_replica,
            owner_id=cluster.id,
            org_id=cluster.org_id,
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
        wakeups.tell_host(session, placement.host.id)
        await session.flush()
        await offers.refresh_host(session, host=placement.host)
        await self._event(session, cluster, row, "placed", f"on host {placement.host.name}")
        return row, placement.host

    async def _releasing(self, session: AsyncSession, cluster_id: str) -> bool:
        """Whether replicas of this cluster that are leaving hold GPUs a new one could use."""
        return await _has_replica(
            session,
            cluster_id,
            or_(orm.Workload.desired == "removed", orm.Workload.drain_started_at.is_not(None)),
            orm.Host.status == HostStatus.READY,
            orm.Host.cordoned.is_(False),
            orm.Host.draining.is_(False),
        )

    async def _stopping(self, session: AsyncSession, p: _Pass) -> bool:
        """Whether a removed replica still waits for its host to confirm it stopped (a host that
        is offline or removed will not: its GPUs are freed when it comes back or is removed)."""
        return await _has_replica(
            session,
            p.cluster.id,
            orm.Host.status.not_in([HostStatus.OFFLINE, HostStatus.REMOVED]),
        )


async def _has_replica(session: AsyncSession, cluster_id: str, *where: ColumnElement[bool]) -> bool:
    """Whether the cluster has a replica row (joined with its host) matching ``where``."""
    await session.flush()  # sessions do not autoflush: let the query see this pass's changes
    found = await session.scalar(
        select(orm.Workload.pk)
        .join(orm.Host, orm.Host.id == orm.Workload.host_id)
        .where(orm.Workload.owner_id == cluster_id, *where)
        .limit(1)
    )
    return found is not None
