"""An endpoint's measured demand, from the requests routed to it (orm.RoutedRequest): the load
history the autoscaling policy reads, the queue, and when the last request came.

Load is perf units per second: the ``cost`` of the requests that arrived in each
``SAMPLE_SECONDS`` bucket, over the bucket's length, for the policy's cold horizon (an hour).
Queue time is the longest a waiting request has waited for a worker, or the most a ready worker's
queue needs to clear (its reported load over its perf), whichever is more.

Routed requests are kept while the policy may read them; ones still open after
``OPEN_REQUEST_SECONDS`` (a client that never called its worker, a worker that never said it was
done) are closed as ``expired``, so they neither hold a worker up nor count as a queue forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.autoscaling import DEFAULT_TUNING, Demand, LoadSample
from gpuyard.server import orm

SAMPLE_SECONDS = 5.0
OPEN_REQUEST_SECONDS = 600.0


async def measure(
    session: AsyncSession,
    *,
    endpoint: orm.Endpoint,
    workers: Sequence[orm.ServerlessWorker],
    now: datetime,
) -> Demand:
    horizon = DEFAULT_TUNING.cold_horizon + DEFAULT_TUNING.smoothing
    since = now - timedelta(seconds=horizon)
    rows = await session.execute(
        select(orm.RoutedRequest.created_at, orm.RoutedRequest.cost).where(
            orm.RoutedRequest.endpoint_id == endpoint.id,
            orm.RoutedRequest.created_at > since,
        )
    )
    buckets = int(horizon // SAMPLE_SECONDS)
    totals = [0.0] * buckets
    for at, cost in rows.all():
        age = (now - at).total_seconds()
        index = buckets - 1 - int(age // SAMPLE_SECONDS)
        if 0 <= index < buckets:
            totals[index] += cost
    samples = [
        LoadSample(
            at=now - timedelta(seconds=(buckets - 1 - i) * SAMPLE_SECONDS),
            load=total / SAMPLE_SECONDS,
        )
        for i, total in enumerate(totals)
    ]
    waiting = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(orm.RoutedRequest.cost), 0.0),
                func.min(orm.RoutedRequest.created_at),
            ).where(
                orm.RoutedRequest.endpoint_id == endpoint.id,
                orm.RoutedRequest.status == "waiting",
                orm.RoutedRequest.done_at.is_(None),
            )
        )
    ).one()
    count, load, oldest = int(waiting[0]), float(waiting[1]), waiting[2]
    queue = (now - oldest).total_seconds() if oldest is not None else 0.0
    for w in workers:
        if w.max_perf > 0:
            queue = max(queue, w.cur_load / w.max_perf)
    return Demand(
        load_samples=samples,
        queue_time=max(queue, 0.0),
        waiting_requests=count,
        waiting_load=load,
        last_request_at=endpoint.last_request_at,
    )


async def in_flight(session: AsyncSession, *, endpoint_id: str) -> dict[int, int]:
    """Open requests routed to each of the endpoint's workers."""
    rows = await session.execute(
        select(orm.RoutedRequest.worker_id, func.count())
        .where(
            orm.RoutedRequest.endpoint_id == endpoint_id,
            orm.RoutedRequest.status == "routed",
            orm.RoutedRequest.done_at.is_(None),
        )
        .group_by(orm.RoutedRequest.worker_id)
    )
    return {int(w): int(n) for w, n in rows.all() if w is not None}


async def expire(session: AsyncSession, *, endpoint_id: str, now: datetime) -> None:
    """Close requests open too long, and forget closed ones the policy no longer reads."""
    stale = now - timedelta(seconds=OPEN_REQUEST_SECONDS)
    await session.execute(
        update(orm.RoutedRequest)
        .where(
            orm.RoutedRequest.endpoint_id == endpoint_id,
            orm.RoutedRequest.done_at.is_(None),
            orm.RoutedRequest.created_at < stale,
        )
        .values(done_at=now, status="expired")
        .execution_options(synchronize_session=False)
    )
    old = now - timedelta(seconds=DEFAULT_TUNING.cold_horizon + 2 * DEFAULT_TUNING.smoothing)
    await session.execute(
        delete(orm.RoutedRequest).where(
            orm.RoutedRequest.endpoint_id == endpoint_id,
            orm.RoutedRequest.done_at.is_not(None),
            orm.RoutedRequest.created_at < old,
        )
    )
