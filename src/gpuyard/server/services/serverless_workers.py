"""Serverless workers as clients and the workers themselves see them: the lists
``/get_endpoint_workers/`` and ``/get_workergroup_workers/`` answer, and what a worker reports
(``/worker_status/``, ``/delete_requests/``, Vast's worker library's calls).

A worker authenticates with its number (``id``, its ``CONTAINER_ID``) and its ``mtoken`` (its
``MASTER_TOKEN``): a report that does not match is refused and changes nothing. A report of a
loaded model (``max_perf`` measured and a ``loadtime``) moves a loading or starting worker to
``idle`` (ready: it gets requests); an ``error_msg`` moves it to ``error`` (the autoscaler
replaces it).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.autoscaling import WorkerState
from gpuyard.core.clock import Clock
from gpuyard.core.errors import InvalidRequest, Unauthenticated
from gpuyard.core.serverless import Worker
from gpuyard.server import orm
from gpuyard.server.services import endpoints, events, wakeups, workergroups

# A loaded report moves these to idle (a worker may report before its host says it runs).
_COMING_UP = {
    WorkerState.CREATING,
    WorkerState.LOADING,
    WorkerState.MODEL_LOADING,
    WorkerState.STARTING,
}


@dataclass(frozen=True, slots=True)
class StatusReport:
    worker_id: int
    mtoken: str
    loadtime: float = 0.0
    cur_load: float = 0.0
    new_load: float = 0.0
    rej_load: float = 0.0
    max_perf: float = 0.0
    cur_perf: float = 0.0
    num_requests_working: int = 0
    url: str | None = None
    error_msg: str | None = None


@dataclass(frozen=True, slots=True)
class FinishedRequest:
    request_idx: int
    success: bool


def to_domain(
    w: orm.ServerlessWorker, *, gpu_name: str | None, endpoint_number: int, group_number: int
) -> Worker:
    return Worker(
        number=w.pk,
        endpoint_number=endpoint_number,
        workergroup_number=group_number,
        status=WorkerState(w.status),
        cur_load=w.cur_load,
        new_load=w.new_load,
        cur_perf=w.cur_perf,
        max_perf=w.max_perf,
        reqs_working=w.reqs_working,
        loadtime=w.loadtime,
        loaded_at=w.loaded_at,
        started_at=w.started_at,
        gpu_name=gpu_name,
        error_msg=w.error_msg,
    )


async def _listed(session: AsyncSession, *where: object) -> list[Worker]:
    gpu = (
        select(orm.Gpu.name)
        .where(orm.Gpu.workload_id == orm.ServerlessWorker.workload_id)
        .limit(1)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(orm.ServerlessWorker, gpu, orm.Endpoint.pk, orm.Workergroup.pk)
        .join(orm.Endpoint, orm.Endpoint.id == orm.ServerlessWorker.endpoint_id)
        .join(orm.Workergroup, orm.Workergroup.id == orm.ServerlessWorker.workergroup_id)
        .where(*where)  # type: ignore[arg-type]
        .order_by(orm.ServerlessWorker.pk)
    )
    return [
        to_domain(w, gpu_name=gpu_name, endpoint_number=ep, group_number=wg)
        for w, gpu_name, ep, wg in rows.all()
    ]


async def endpoint_workers(session: AsyncSession, *, org_id: str, ref: str | int) -> list[Worker]:
    ep = await endpoints.row_of(session, org_id=org_id, ref=ref)
    return await _listed(session, orm.ServerlessWorker.endpoint_id == ep.id)


async def workergroup_workers(
    session: AsyncSession, *, org_id: str, ref: str | int
) -> list[Worker]:
    group = await workergroups.row_of(session, org_id=org_id, ref=ref)
    return await _listed(session, orm.ServerlessWorker.workergroup_id == group.id)


async def _worker(session: AsyncSession, worker_id: int, mtoken: str) -> orm.ServerlessWorker:
    row = await session.scalar(
        select(orm.ServerlessWorker).where(orm.ServerlessWorker.pk == worker_id).with_for_update()
    )
    if row is None or not secrets.compare_digest(row.mtoken.encode(), mtoken.encode()):
        raise Unauthenticated("unknown worker or wrong mtoken", code="invalid_worker_token")
    return row


def _number(value: float, name: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise InvalidRequest(f"{name} must be a number >= 0", param=name)
    return value


async def report_status(session: AsyncSession, *, clock: Clock, report: StatusReport) -> None:
    for name in ("loadtime", "cur_load", "new_load", "rej_load", "max_perf", "cur_perf"):
        _number(getattr(report, name), name)
    if report.num_requests_working < 0:
        raise InvalidRequest("num_requests_working must be >= 0", param="num_requests_working")
    w = await _worker(session, report.worker_id, report.mtoken)
    now = clock.now()
    w.cur_load, w.new_load, w.rej_load = report.cur_load, report.new_load, report.rej_load
    w.cur_perf, w.reqs_working = report.cur_perf, report.num_requests_working
    if report.max_perf > 0:
        w.max_perf = report.max_perf
    if report.url:
        w.url = report.url[:2048]
    w.reported_at = now
    state = WorkerState(w.status)
    before = state
    if report.error_msg:
        w.error_msg = report.error_msg[-4096:]
        state = WorkerState.ERROR
    elif state in _COMING_UP and report.max_perf > 0 and report.loadtime > 0:
        state = WorkerState.IDLE
        w.loadtime = report.loadtime
        w.loaded_at = now
    if state != before:
        w.status, w.status_at, w.updated_at = state.value, now, now
        await events.record(
            session,
            clock=clock,
            org_id=w.org_id,
            type=f"worker.{state.value}",
            subject_id=w.workergroup_id,
            data={"worker_id": w.pk, "from": before.value, "error": w.error_msg},
        )
        await wakeups.wake_where(session, orm.Endpoint, orm.Endpoint.id == w.endpoint_id)


async def finish_requests(
    session: AsyncSession,
    *,
    clock: Clock,
    worker_id: int,
    mtoken: str,
    requests: list[FinishedRequest],
) -> int:
    """Mark the worker's requests done; how many were open."""
    w = await _worker(session, worker_id, mtoken)
    now = clock.now()
    done = 0
    for ok in (True, False):
        idxs = [r.request_idx for r in requests if r.success is ok]
        if not idxs:
            continue
        result = await session.execute(
            update(orm.RoutedRequest)
            .where(
                orm.RoutedRequest.pk.in_(idxs),
                orm.RoutedRequest.worker_id == w.pk,
                orm.RoutedRequest.done_at.is_(None),
            )
            .values(done_at=now, status="done" if ok else "failed")
            .execution_options(synchronize_session=False)
        )
        done += int(getattr(result, "rowcount", 0) or 0)
    if done:  # capacity freed: the autoscaler may scale down now
        await wakeups.wake_where(session, orm.Endpoint, orm.Endpoint.id == w.endpoint_id)
    return done
