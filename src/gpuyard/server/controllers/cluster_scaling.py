"""The replica count of a cluster with autoscaling, for the clusters controller's pass.

The cluster's measured load (services/cluster_load.py: what the gateways report) goes through
the serverless policy (core/autoscaling/replicas.py, over ``plan``'s planner); the count it asks
for is written to the cluster's ``replicas`` (a ``cluster.scaled`` event when it changes), and
the pass then places or retires replicas as for any cluster. Which replicas are retired: those
not yet ready, then the idle ones the policy chose, then the rest, newest first; a replica with
requests in flight comes last, and once draining it is removed only when none is left on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.autoscaling.replicas import ReplicaAutoscaling, ReplicaLoad, plan_replicas
from gpuyard.core.clock import Clock
from gpuyard.server import orm
from gpuyard.server.services import cluster_load, events

MAX_DRAIN_WAIT = timedelta(minutes=10)
"""Past its drain period, how long a replica with requests in flight may still wait for them
(as long as the gateway waits for a replica's answer)."""


def settings(raw: Mapping[str, Any]) -> ReplicaAutoscaling:
    return ReplicaAutoscaling(**{k: raw[k] for k in raw if k in ReplicaAutoscaling.__slots__})


async def in_flight(session: AsyncSession, cluster: orm.Cluster, now: datetime) -> dict[str, int]:
    """Requests in flight per replica (only measured for a cluster with autoscaling)."""
    if cluster.autoscaling is None:
        return {}
    return await cluster_load.in_flight(session, cluster_id=cluster.id, now=now)


def drained(w: orm.Workload, busy: Mapping[str, int], now: datetime, drain: timedelta) -> bool:
    """Whether a draining replica may go: its drain period is over and nothing is in flight on
    it (or it has waited ``MAX_DRAIN_WAIT`` more)."""
    assert w.drain_started_at is not None
    over = now - w.drain_started_at
    return over >= drain and (not busy.get(w.id) or over >= drain + MAX_DRAIN_WAIT)


async def rescale(
    session: AsyncSession,
    *,
    clock: Clock,
    cluster: orm.Cluster,
    current: Sequence[orm.Workload],
    every: Sequence[orm.Workload],
    busy: Mapping[str, int],
    now: datetime,
) -> list[str]:
    """Set ``cluster.replicas`` from its load; the idle replicas the policy would retire."""
    assert cluster.autoscaling is not None
    a = settings(cluster.autoscaling)
    demand = await cluster_load.demand(
        session, cluster_id=cluster.id, now=now, since=cluster.updated_at
    )
    views = [ReplicaLoad(id=w.id, ready=w.ready, in_flight=busy.get(w.id, 0)) for w in current]
    planned = plan_replicas(a, demand, views, now)
    await cluster_load.forget(session, cluster_id=cluster.id, now=now, live={w.id for w in every})
    if planned.replicas != cluster.replicas:
        await events.record(
            session,
            clock=clock,
            org_id=cluster.org_id,
            type="cluster.scaled",
            subject_id=cluster.id,
            data={
                "from": cluster.replicas,
                "to": planned.replicas,
                "load": round(planned.load, 3),
                "in_flight": sum(busy.values()),
                "reasons": list(planned.reasons),
            },
        )
        cluster.replicas = planned.replicas
    return list(planned.retire)


def surplus(
    current: list[orm.Workload],
    wanted: int,
    *,
    first: Sequence[str] = (),
    busy: Mapping[str, int] | None = None,
) -> list[orm.Workload]:
    """The replicas to retire to come down to ``wanted``: unready ones, then ``first``, then the
    newest; those with requests in flight last."""
    extra = len(current) - wanted
    if extra <= 0:
        return []
    busy = busy or {}
    return sorted(
        current, key=lambda w: (w.ready, busy.get(w.id, 0) > 0, w.id not in first, -w.pk)
    )[:extra]
