"""The autoscaler: keeps each serverless endpoint's workers at what its load asks for.

One pass over an endpoint (all in ``apply``: workers report to us, nothing is probed):

1. read each worker's state from its host's reports (services/serverless_fleet.py ``observed``):
   placed → ``loading`` once it runs, ``stopping`` → ``stopped``, an ended or lost one →
   ``error`` (its last log lines are the workergroup's reason); a destroyed worker whose host
   has let it go is forgotten;
2. measure demand from the routed requests (services/serverless_demand.py);
3. ask the policy (``gpuyard.core.autoscaling.plan``) which workers to create, start, stop and
   destroy, with each worker's requests in flight (the most of what it reports and what was
   routed to it and is not done);
4. act: create on hosts chosen by the scheduler, start stopped ones, and stop or destroy only
   workers with **nothing in flight**, re-checked here in the same transaction that holds the
   endpoint (``/route/`` locks it too, so no request is routed to a worker between the check
   and the act; a stopping worker is out of routing at once).

A deleted endpoint or workergroup, or an endpoint ``stopped``, drains: its workers leave routing,
and each is destroyed (or stopped) once nothing is in flight on it. A workergroup whose workers
fail ``MAX_FAILURES`` times in a row gets no new ones until it is changed (its reason says why),
so a template that cannot run does not restart forever.

The endpoint is looked at again every ``SAMPLE_SECONDS`` while it has workers or requests, and
at once when a request waits (routing wakes it), a worker reports a new state, or it changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.autoscaling import (
    DEFAULT_TUNING,
    Demand,
    Plan,
    PolicyTuning,
    WorkerState,
    WorkerView,
    plan,
)
from gpuyard.core.serverless import EndpointState
from gpuyard.server import orm
from gpuyard.server.controllers.base import Reconciler
from gpuyard.server.services import endpoints, events, serverless_demand, serverless_fleet
from gpuyard.server.services.serverless_demand import SAMPLE_SECONDS

MAX_FAILURES = 3
IDLE_SECONDS = 60.0  # an endpoint with no workers and no requests is looked at this often


@dataclass(frozen=True, slots=True)
class EndpointWork:
    id: str


@dataclass(slots=True)
class _Worker:
    row: orm.ServerlessWorker
    workload: orm.Workload | None
    host: orm.Host | None
    in_flight: int = 0


class AutoscalerController(Reconciler[orm.Endpoint, EndpointWork, None]):
    name = "autoscaler"
    model = orm.Endpoint
    batch_size = 20

    def __init__(
        self, *, report_url: str, tuning: PolicyTuning = DEFAULT_TUNING, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.report_url = report_url
        self.tuning = tuning

    def due(self) -> ColumnElement[bool]:
        """Live endpoints, and deleted ones until their last worker is gone."""
        has_workers = exists().where(orm.ServerlessWorker.endpoint_id == orm.Endpoint.id)
        return or_(orm.Endpoint.deleted_at.is_(None), has_workers)

    def snapshot(self, row: orm.Endpoint) -> EndpointWork:
        return EndpointWork(id=row.id)

    async def apply(
        self, session: AsyncSession, row: orm.Endpoint, item: EndpointWork, result: None
    ) -> None:
        ep: orm.Endpoint = row
        now = self.clock.now()
        await serverless_demand.expire(session, endpoint_id=ep.id, now=now)
        groups = {
            g.id: g
            for g in await session.scalars(
                select(orm.Workergroup).where(orm.Workergroup.endpoint_id == ep.id)
            )
        }
        workers = await self._workers(session, ep.id)
        for w in workers:
            await self._observe(session, w, groups.get(w.row.workergroup_id), now)
        for w in [w for w in workers if self._forgettable(w)]:
            await session.execute(
                delete(orm.ServerlessWorker).where(orm.ServerlessWorker.pk == w.row.pk)
            )
            workers.remove(w)
        live_groups = [g for g in groups.values() if g.deleted_at is None]
        draining = [w for w in workers if self._drains(ep, groups.get(w.row.workergroup_id))]
        for w in draining:
            await self._drain(session, ep, w)
        kept = [w for w in workers if w not in draining]
        demand = await serverless_demand.measure(
            session, endpoint=ep, workers=[w.row for w in kept], now=now
        )
        if ep.deleted_at is None and ep.state == EndpointState.ACTIVE:
            await self._scale(session, ep, live_groups, kept, demand, now)
        elif ep.deleted_at is None and ep.state == EndpointState.STOPPED:
            for w in kept:
                if WorkerState(w.row.status) not in (WorkerState.STOPPED, WorkerState.STOPPING):
                    await self._quiet_then(session, w, WorkerState.STOPPING, "endpoint stopped")
        busy = bool(workers) or demand.waiting_requests > 0
        ep.next_run_at = now + timedelta(seconds=SAMPLE_SECONDS if busy else IDLE_SECONDS)

    # --- reading -------------------------------------------------------------------------------

    async def _workers(self, session: AsyncSession, endpoint_id: str) -> list[_Worker]:
        rows = await session.execute(
            select(orm.ServerlessWorker, orm.Workload, orm.Host)
            .outerjoin(orm.Workload, orm.Workload.id == orm.ServerlessWorker.workload_id)
            .outerjoin(orm.Host, orm.Host.id == orm.Workload.host_id)
            .where(orm.ServerlessWorker.endpoint_id == endpoint_id)
            .order_by(orm.ServerlessWorker.pk)
        )
        flying = await serverless_demand.in_flight(session, endpoint_id=endpoint_id)
        return [
            _Worker(row=w, workload=wl, host=h, in_flight=max(flying.get(w.pk, 0), w.reqs_working))
            for w, wl, h in rows.all()
        ]

    async def _observe(
        self,
        session: AsyncSession,
        w: _Worker,
        group: orm.Workergroup | None,
        now: datetime,
    ) -> None:
        state, why = serverless_fleet.observed(w.row, w.workload, w.host)
        if state == WorkerState(w.row.status):
            return
        serverless_fleet.set_status(w.row, state, now)
        if state == WorkerState.ERROR:
            w.row.error_msg = why
            if group is not None and why != "host lost":
                group.failures += 1
                group.status_reason = f"worker {w.row.pk} {why}"
        elif state == WorkerState.LOADING:
            w.row.started_at = now
        elif state == WorkerState.STOPPED and w.workload is not None:
            await serverless_fleet.release(session, workload=w.workload, host=w.host)
        await serverless_fleet.worker_event(
            session, clock=self.clock, worker=w.row, what=state.value, why=why or state.value
        )

    @staticmethod
    def _forgettable(w: _Worker) -> bool:
        return w.row.status == WorkerState.DESTROYING and w.workload is None

    @staticmethod
    def _drains(ep: orm.Endpoint, group: orm.Workergroup | None) -> bool:
        return ep.deleted_at is not None or group is None or group.deleted_at is not None

    # --- acting --------------------------------------------------------------------------------

    async def _drain(self, session: AsyncSession, ep: orm.Endpoint, w: _Worker) -> None:
        """Out of routing now; destroyed once nothing is in flight on it."""
        state = WorkerState(w.row.status)
        if state == WorkerState.DESTROYING:
            return
        if w.in_flight:
            if state == WorkerState.IDLE:  # no new requests while the last ones finish
                serverless_fleet.set_status(w.row, WorkerState.STOPPING, self.clock.now())
            return
        why = "endpoint deleted" if ep.deleted_at is not None else "workergroup deleted"
        await self._set(session, w, WorkerState.DESTROYING, why)

    async def _scale(
        self,
        session: AsyncSession,
        ep: orm.Endpoint,
        groups: list[orm.Workergroup],
        workers: list[_Worker],
        demand: Demand,
        now: datetime,
    ) -> None:
        knobs = endpoints.to_domain(ep).knobs
        views = [self._view(w) for w in workers]
        decided = plan(knobs, demand, views, now, tuning=self.tuning)
        by_id = {str(w.row.pk): w for w in workers}
        for wid in decided.destroy:
            await self._quiet_then(session, by_id[wid], WorkerState.DESTROYING, "replaced")
        for wid in decided.stop:
            await self._quiet_then(session, by_id[wid], WorkerState.STOPPING, "scaled down")
        started = [wid for wid in decided.start if await self._start(session, by_id[wid])]
        # A stopped worker whose GPUs are taken meanwhile stays stopped: a new one instead.
        more = len(decided.start) - len(started)
        created = await self._create(session, ep, groups, decided.create + more)
        if created or decided.start or decided.stop or decided.destroy:  # not one per pass
            await self._log(session, ep, decided, created)

    @staticmethod
    def _view(w: _Worker) -> WorkerView:
        loaded = w.row.loadtime if w.row.loaded_at is not None else None
        return WorkerView(
            id=str(w.row.pk),
            state=WorkerState(w.row.status),
            perf=w.row.max_perf or None,
            cur_load=w.row.cur_load,
            reqs_working=w.in_flight,
            load_time=loaded,
            state_since=w.row.status_at,
            last_report_at=w.row.reported_at,
        )

    async def _quiet_then(
        self, session: AsyncSession, w: _Worker, state: WorkerState, why: str
    ) -> None:
        """Stop or destroy, but never a worker with a request in flight (re-checked now)."""
        if w.in_flight:
            return
        await self._set(session, w, state, why)

    async def _start(self, session: AsyncSession, w: _Worker) -> bool:
        """Start a stopped worker on its own GPUs, if they are free (False: it stays stopped)."""
        if w.workload is not None and not await serverless_fleet.retake(
            session, workload=w.workload, host=w.host
        ):
            return False
        await self._set(session, w, WorkerState.STARTING, "scaled up")
        return True

    async def _set(self, session: AsyncSession, w: _Worker, state: WorkerState, why: str) -> None:
        await serverless_fleet.set_desired(
            session, clock=self.clock, worker=w.row, workload=w.workload, state=state, why=why
        )

    async def _create(
        self, session: AsyncSession, ep: orm.Endpoint, groups: list[orm.Workergroup], count: int
    ) -> int:
        usable = [g for g in groups if g.failures < MAX_FAILURES]
        created = 0
        for i in range(count):
            placed = None
            for group in usable[i % max(len(usable), 1) :] + usable[: i % max(len(usable), 1)]:
                placed = await serverless_fleet.create_worker(
                    session, clock=self.clock, endpoint=ep, group=group, report_url=self.report_url
                )
                if placed is not None:
                    break
            if placed is None:
                for group in usable:
                    group.status_reason = "no ready host has room for a worker"
                break
            created += 1
        return created

    async def _log(self, session: AsyncSession, ep: orm.Endpoint, p: Plan, created: int) -> None:
        await events.record(
            session,
            clock=self.clock,
            org_id=ep.org_id,
            type="endpoint.scaled",
            subject_id=ep.id,
            data={
                "reason": "; ".join(p.reasons),
                "create": p.create,
                "created": created,
                "start": list(p.start),
                "stop": list(p.stop),
                "destroy": list(p.destroy),
                "predicted_load": p.predicted_load,
                "active_target": p.active_target,
                "loaded_target": p.loaded_target,
            },
        )
