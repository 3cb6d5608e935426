"""The load of autoscaled clusters, as the gateways measure it (gateway/load_meter.py).

Every gateway reports, about once a second, the request-seconds it served to each replica and
the requests it has in flight on it. The request-seconds of all gateways add up per cluster and
5-second period (``cluster_load_samples``: over the period, the cluster's mean concurrency);
requests in flight are kept per replica and gateway (``replica_in_flight``), and a gateway that
has not reported for ``STALE`` (it went away) no longer counts. Only clusters with autoscaling
are recorded. The clusters controller reads it back (``demand``) to plan the replica count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.autoscaling.model import LoadSample
from gpuyard.core.autoscaling.replicas import ClusterDemand
from gpuyard.server import orm
from gpuyard.server.db import insert_on_conflict

PERIOD = timedelta(seconds=5)
HISTORY = timedelta(minutes=5)  # what the policy reads: its smoothing window and hold, with room
STALE = timedelta(seconds=30)  # a gateway silent this long has gone; its in-flight counts go too


class Measured(NamedTuple):
    """One gateway's report on one replica (the gateway's ``LoadReport``)."""

    cluster_id: str
    replica_id: str | None  # None: requests refused for want of a ready replica
    in_flight: int
    busy_seconds: float
    refused: int
    at: datetime


def period_start(at: datetime) -> datetime:
    seconds = PERIOD.total_seconds()
    epoch = at.timestamp()
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=at.tzinfo)


async def record(
    session: AsyncSession, *, reporter: str, reports: Sequence[Measured], now: datetime
) -> int:
    """Add one gateway's reports; those of clusters without autoscaling are dropped. How many
    were kept."""
    ids = {r.cluster_id for r in reports}
    found = await session.execute(
        select(orm.Cluster.id, orm.Cluster.autoscaling).where(orm.Cluster.id.in_(ids))
    )
    scaled = {cluster_id for cluster_id, settings in found.all() if settings is not None}
    kept = [r for r in reports if r.cluster_id in scaled]
    periods: dict[tuple[str, datetime], list[float]] = defaultdict(lambda: [0.0, 0])
    for r in kept:
        totals = periods[(r.cluster_id, period_start(r.at))]
        totals[0] += r.busy_seconds
        totals[1] += r.refused
    for (cluster_id, start), (busy, refused) in sorted(periods.items()):
        stmt = insert_on_conflict(session, orm.ClusterLoadSample).values(
            cluster_id=cluster_id, period_start=start, busy_seconds=busy, refused=int(refused)
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["cluster_id", "period_start"],
                set_={
                    "busy_seconds": orm.ClusterLoadSample.busy_seconds + busy,
                    "refused": orm.ClusterLoadSample.refused + int(refused),
                },
            )
        )
    for r in sorted(
        (r for r in kept if r.replica_id is not None), key=lambda r: r.replica_id or ""
    ):
        stmt = insert_on_conflict(session, orm.ReplicaInFlight).values(
            replica_id=r.replica_id,
            reporter=reporter,
            cluster_id=r.cluster_id,
            in_flight=r.in_flight,
            reported_at=now,
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["replica_id", "reporter"],
                set_={"in_flight": r.in_flight, "reported_at": now},
            )
        )
    return len(kept)


async def in_flight(session: AsyncSession, *, cluster_id: str, now: datetime) -> dict[str, int]:
    """Requests in flight per replica of the cluster, over the gateways still reporting."""
    rows = await session.execute(
        select(orm.ReplicaInFlight.replica_id, func.sum(orm.ReplicaInFlight.in_flight))
        .where(
            orm.ReplicaInFlight.cluster_id == cluster_id,
            orm.ReplicaInFlight.reported_at >= now - STALE,
        )
        .group_by(orm.ReplicaInFlight.replica_id)
    )
    return {replica_id: int(total or 0) for replica_id, total in rows.all()}


async def demand(
    session: AsyncSession, *, cluster_id: str, now: datetime, since: datetime
) -> ClusterDemand:
    """The cluster's load history (mean concurrency per period, oldest first), the requests
    refused in the last two periods for want of a ready replica, and when it last had a request
    (``since`` at the earliest: a new or changed cluster counts as just used)."""
    rows = (
        await session.execute(
            select(
                orm.ClusterLoadSample.period_start,
                orm.ClusterLoadSample.busy_seconds,
                orm.ClusterLoadSample.refused,
            )
            .where(
                orm.ClusterLoadSample.cluster_id == cluster_id,
                orm.ClusterLoadSample.period_start >= now - HISTORY,
            )
            .order_by(orm.ClusterLoadSample.period_start)
        )
    ).all()
    length = PERIOD.total_seconds()
    # A period is stamped with its end, or now while it lasts.
    samples = [LoadSample(at=min(s + PERIOD, now), load=busy / length) for s, busy, _ in rows]
    used = [min(s + PERIOD, now) for s, busy, refused in rows if busy > 0 or refused > 0]
    last = max([since, *used])
    if any((await in_flight(session, cluster_id=cluster_id, now=now)).values()):
        last = now
    waiting = sum(refused for start, _, refused in rows if start >= now - 2 * PERIOD)
    return ClusterDemand(samples=samples, waiting=waiting, last_request_at=last)


async def forget(session: AsyncSession, *, cluster_id: str, now: datetime, live: set[str]) -> None:
    """Drop what is no longer read: samples older than the history, and the in-flight counts of
    replicas that are gone or of gateways that stopped reporting."""
    await session.execute(
        delete(orm.ClusterLoadSample).where(
            orm.ClusterLoadSample.cluster_id == cluster_id,
            orm.ClusterLoadSample.period_start < now - HISTORY,
        )
    )
    await session.execute(
        delete(orm.ReplicaInFlight).where(
            orm.ReplicaInFlight.cluster_id == cluster_id,
            (orm.ReplicaInFlight.reported_at < now - STALE)
            | orm.ReplicaInFlight.replica_id.not_in(live or {""}),
        )
    )
