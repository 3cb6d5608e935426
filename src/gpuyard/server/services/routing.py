"""``POST /route/``: which worker of an endpoint takes a request, with a signed grant.

The caller names the endpoint and gives its key (the endpoint's own ``ep-…`` key). A new request
(``request_idx`` 0) is recorded as a *routed request*; its number is the ``request_idx`` the
client polls with while no worker is ready. A ready worker (``idle``, with an address) gets it,
packed: the busiest one whose queue stays within ``target_queue_time`` (``_pick``). The answer
carries the worker's ``url``, a ``signature`` over that url (services/route_signing.py),
``reqnum`` (the request's number, which only grows) and the request's ``cost`` and
``request_idx``. With none
ready, the answer is ``{"endpoint", "status", "request_idx"}`` and the endpoint's autoscaler is
woken: a waiting request is demand, so an endpoint at zero workers starts one. The worker tells
``/delete_requests/`` when a request is done, which ends its time in flight.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.autoscaling import DEFAULT_TUNING, READY_STATES
from gpuyard.core.clock import Clock
from gpuyard.core.errors import InvalidRequest, NotFound, Unauthenticated, Unavailable
from gpuyard.core.serverless import EndpointState
from gpuyard.server import orm
from gpuyard.server.services import route_signing, wakeups

MAX_COST = 1e9
WAITING = "waiting"
ROUTED = "routed"
ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class Grant:
    endpoint: str
    url: str
    signature: str
    reqnum: int
    cost: float
    request_idx: int
    worker_id: int
    endpoint_id: str


@dataclass(frozen=True, slots=True)
class Waiting:
    endpoint: str
    request_idx: int
    status: str


async def endpoint_by_key(session: AsyncSession, *, api_key: str | None) -> orm.Endpoint:
    if not api_key:
        raise Unauthenticated("give the endpoint's api_key", code="missing_endpoint_key")
    row = await session.scalar(  # locked: the autoscaler never stops a worker mid-route
        select(orm.Endpoint)
        .where(orm.Endpoint.api_key == api_key, orm.Endpoint.deleted_at.is_(None))
        .with_for_update()
    )
    if row is None or not secrets.compare_digest(row.api_key, api_key):
        raise Unauthenticated("unknown endpoint key", code="invalid_endpoint_key")
    return row


def worker_url(worker: orm.ServerlessWorker, host: orm.Host, workload: orm.Workload) -> str | None:
    """Where clients reach a worker: the address it reports, else its host's and port."""
    if worker.url:
        return worker.url
    if workload.host_port:
        return f"http://{host.address}:{workload.host_port}"
    return None


async def route(
    session: AsyncSession,
    *,
    clock: Clock,
    api_key: str | None,
    endpoint_name: str | None,
    cost: float,
    request_idx: int,
) -> Grant | Waiting:
    ep = await endpoint_by_key(session, api_key=api_key)
    if endpoint_name is not None and endpoint_name != ep.name:
        raise NotFound(f"no endpoint named {endpoint_name!r} for this key", param="endpoint")
    return await _route(session, clock, ep, cost, request_idx)


async def route_by_name(
    session: AsyncSession, *, clock: Clock, org_id: str, name: str, cost: float, request_idx: int
) -> Grant | Waiting | None:
    """``route`` for the org's own endpoint called ``name`` (the OpenAI gateway: the caller's
    API key is the org's, the endpoint's name is the model); None when it has none."""
    ep = await session.scalar(  # locked, as by ``endpoint_by_key``
        select(orm.Endpoint)
        .where(
            orm.Endpoint.org_id == org_id,
            orm.Endpoint.name == name,
            orm.Endpoint.deleted_at.is_(None),
        )
        .with_for_update()
    )
    if ep is None:
        return None
    return await _route(session, clock, ep, cost, request_idx)


async def reroute(
    session: AsyncSession, *, clock: Clock, org_id: str, request_idx: int, refused: tuple[int, ...]
) -> Grant | None:
    """The workers ``refused`` answered request ``request_idx`` with 429 (their queue was full):
    it goes to another ready worker of its endpoint that has room for it (its queue stays
    within ``target_queue_time``), if one has; None when none has (the request is left as it
    is, for its caller to pass the refusal on and close it)."""
    endpoint_id = await session.scalar(
        select(orm.RoutedRequest.endpoint_id).where(orm.RoutedRequest.pk == request_idx)
    )
    ep = await session.scalar(  # locked first, as ``/route/`` locks it
        select(orm.Endpoint)
        .where(
            orm.Endpoint.id == endpoint_id,
            orm.Endpoint.org_id == org_id,
            orm.Endpoint.deleted_at.is_(None),
        )
        .with_for_update()
    )
    if ep is None or ep.state != EndpointState.ACTIVE:
        return None
    req = await session.scalar(
        select(orm.RoutedRequest)
        .where(
            orm.RoutedRequest.pk == request_idx,
            orm.RoutedRequest.status == ROUTED,
            orm.RoutedRequest.done_at.is_(None),
        )
        .with_for_update()
    )
    if req is None:
        return None
    now = clock.now()
    picked = await _pick(session, ep, req.cost, now, refused=refused)
    if picked is None:
        return None
    req.worker_id, req.routed_at = picked, now
    return await _grant_for(session, clock, ep, req, picked)


async def endpoint_names(session: AsyncSession, *, org_id: str) -> dict[str, float]:
    """The org's endpoints as the OpenAI gateway routes them (by name), with when each was
    created (a POSIX timestamp), for ``/v1/models``."""
    rows = await session.execute(
        select(orm.Endpoint.name, orm.Endpoint.created_at).where(
            orm.Endpoint.org_id == org_id, orm.Endpoint.deleted_at.is_(None)
        )
    )
    return {name: created.timestamp() for name, created in rows.all()}


async def abandon(session: AsyncSession, *, clock: Clock, org_id: str, request_idx: int) -> None:
    """Request ``request_idx`` will not reach a worker (its caller gave up, or could not reach
    the worker it got): closed, it is neither demand nor in flight."""
    await session.execute(
        update(orm.RoutedRequest)
        .where(
            orm.RoutedRequest.pk == request_idx,
            orm.RoutedRequest.status.in_([WAITING, ROUTED]),
            orm.RoutedRequest.done_at.is_(None),
            orm.RoutedRequest.endpoint_id.in_(
                select(orm.Endpoint.id).where(orm.Endpoint.org_id == org_id)
            ),
        )
        .values(done_at=clock.now(), status=ABANDONED)
    )


async def _route(
    session: AsyncSession, clock: Clock, ep: orm.Endpoint, cost: float, request_idx: int
) -> Grant | Waiting:
    if not (math.isfinite(cost) and 0 <= cost <= MAX_COST):
        raise InvalidRequest(f"cost must be between 0 and {MAX_COST:g}", param="cost")
    if ep.state != EndpointState.ACTIVE:
        raise Unavailable(
            f"endpoint {ep.name} is {ep.state}", retry_after=30, code=f"endpoint_{ep.state}"
        )
    now = clock.now()
    req = await _request(session, ep, request_idx, cost, now)
    ep.last_request_at = now
    if req.status == ROUTED and req.worker_id is not None:
        grant = await _grant_for(session, clock, ep, req, req.worker_id)
        if grant is not None:
            return grant
    picked = await _pick(session, ep, cost, now)
    if picked is not None:
        req.status, req.worker_id, req.routed_at = ROUTED, picked, now
        grant = await _grant_for(session, clock, ep, req, picked)
        if grant is not None:
            return grant
    req.status, req.worker_id = WAITING, None
    if not request_idx:  # new demand: bring a worker up now (a poll adds none)
        wakeups.wake(session, ep)
    return Waiting(endpoint=ep.name, request_idx=req.pk, status="waiting for a ready worker")


async def _request(
    session: AsyncSession, ep: orm.Endpoint, request_idx: int, cost: float, now: datetime
) -> orm.RoutedRequest:
    if request_idx:
        req = await session.scalar(
            select(orm.RoutedRequest)
            .where(orm.RoutedRequest.pk == request_idx, orm.RoutedRequest.endpoint_id == ep.id)
            .with_for_update()
        )
        if req is None or req.done_at is not None:
            raise NotFound(f"no open request {request_idx}", param="request_idx")
        return req
    req = orm.RoutedRequest(endpoint_id=ep.id, cost=cost, status=WAITING, created_at=now)
    session.add(req)
    await session.flush()
    return req


async def _pick(
    session: AsyncSession,
    ep: orm.Endpoint,
    cost: float,
    now: datetime,
    *,
    refused: tuple[int, ...] = (),
) -> int | None:
    """Pack: the busiest ready worker whose queue, with this request, stays within the
    endpoint's ``target_queue_time``; when none has room, the least busy (unless the request
    was ``refused`` by workers already: then only one with room, not one of those). Packing
    leaves other workers idle, and only an idle worker can be stopped (docs/serverless.md). A
    worker silent for longer than the policy's report timeout gets nothing: it is about to be
    replaced."""
    silent = now - timedelta(seconds=DEFAULT_TUNING.report_timeout)
    open_cost = (
        select(
            orm.RoutedRequest.worker_id,
            func.sum(orm.RoutedRequest.cost).label("cost"),
            func.count().label("n"),
        )
        .where(orm.RoutedRequest.status == ROUTED, orm.RoutedRequest.done_at.is_(None))
        .group_by(orm.RoutedRequest.worker_id)
        .subquery()
    )
    rows = (
        await session.execute(
            select(
                orm.ServerlessWorker.pk,
                orm.ServerlessWorker.max_perf,
                open_cost.c.cost,
                open_cost.c.n,
            )
            .outerjoin(open_cost, open_cost.c.worker_id == orm.ServerlessWorker.pk)
            .where(
                orm.ServerlessWorker.endpoint_id == ep.id,
                orm.ServerlessWorker.status.in_([s.value for s in READY_STATES]),
                or_(
                    orm.ServerlessWorker.reported_at.is_(None),
                    orm.ServerlessWorker.reported_at >= silent,
                ),
                orm.ServerlessWorker.pk.not_in(refused),
            )
        )
    ).all()
    if not rows:
        return None

    def queue(r: Any) -> float:
        return (float(r.cost or 0.0) + cost) / max(r.max_perf or 0.0, 1e-9)

    roomy = [r for r in rows if queue(r) <= ep.target_queue_time]
    if roomy:
        best = max(roomy, key=lambda r: (r.n or 0, queue(r), -r.pk))
    elif refused:
        return None
    else:
        best = min(rows, key=lambda r: (queue(r), r.pk))
    return int(best.pk)


async def _grant_for(
    session: AsyncSession,
    clock: Clock,
    ep: orm.Endpoint,
    req: orm.RoutedRequest,
    worker_pk: int,
) -> Grant | None:
    found = (
        await session.execute(
            select(orm.ServerlessWorker, orm.Host, orm.Workload)
            .join(orm.Workload, orm.Workload.id == orm.ServerlessWorker.workload_id)
            .join(orm.Host, orm.Host.id == orm.Workload.host_id)
            .where(orm.ServerlessWorker.pk == worker_pk)
        )
    ).first()
    if found is None:
        return None
    worker, host, workload = found
    url = worker_url(worker, host, workload)
    if url is None or worker.status not in READY_STATES:
        return None
    signature = await route_signing.sign(session, clock=clock, url=url)
    return Grant(
        endpoint=ep.name,
        url=url,
        signature=signature,
        reqnum=req.pk,
        cost=req.cost,
        request_idx=req.pk,
        worker_id=worker.pk,
        endpoint_id=ep.id,
    )
