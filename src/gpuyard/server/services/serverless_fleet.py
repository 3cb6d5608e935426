"""Serverless workers on hosts: placing a new one, starting, stopping and destroying one, and
reading what its host reports into its state. The autoscaler (controllers/autoscaler.py)
decides; this module does.

A worker is a host workload (kind ``worker``, owned by its endpoint) placed by the same scheduler
as cluster replicas (services/scheduler.py: spread over hosts, then binpack), so a workergroup's
first workers land on different hosts, which is how its ``test_workers`` measure perf on several
machines. A stopped (cold) worker keeps its files on its host (the ``process`` runtime keeps a
stopped workload's directory), so starting it again skips the download and the first load, but
not its GPUs: they are free for anything else once its host reports it stopped (``release``).
Starting it takes the same GPUs of the same host again (``retake``: its spec, and so its files,
stay as they are); when they are taken, or the host cannot run it now, it stays stopped and the
autoscaler creates a worker elsewhere instead.

Its environment is what Vast gives a worker: ``REPORT_ADDR`` (gpuyard's URL), ``MASTER_TOKEN``
(the worker's own token), ``CONTAINER_ID`` (its number), ``WORKER_PORT``, ``PUBLIC_IPADDR`` and
``VAST_TCP_PORT_<WORKER_PORT>``; on the ``process`` runtime the port it listens on is ``$PORT``,
which its command's prelude passes on as those variables.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.agent_protocol import Desired, HostStatus
from gpuyard.core.autoscaling import WorkerState
from gpuyard.core.autoscaling.host_choice import HostOption, MeasuredWorker, rank_hosts
from gpuyard.core.clock import Clock
from gpuyard.core.ids import new_id
from gpuyard.core.workload import SERVER_RELAY_LABEL, WorkloadKind, WorkloadSpec
from gpuyard.server import orm
from gpuyard.server.services import (
    events,
    offers,
    price_book,
    scheduler,
    wakeups,
    workloads,
)

DEFAULT_WORKER_PORT = 8000
MB_PER_GB = 1000  # a "24 GB" card reports 24564 MB: compare in decimal gigabytes


def _prelude(port: int) -> str:
    """Shell lines that make the port the worker listens on (the process runtime's ``$PORT``,
    else the group's port) its ``WORKER_PORT`` and its public ``VAST_TCP_PORT_<port>``."""
    return (
        f'export WORKER_PORT="${{PORT:-{port}}}"; '
        'export "VAST_TCP_PORT_${WORKER_PORT}=${WORKER_PORT}"; '
    )


async def _gpu_keys(session: AsyncSession, group: orm.Workergroup) -> list[str]:
    if group.gpu_key is not None:
        return [group.gpu_key]
    rows = await session.scalars(
        select(orm.Gpu.gpu_key)
        .where(
            (orm.Gpu.vram_mb.is_(None)) | (orm.Gpu.vram_mb >= group.gpu_ram * MB_PER_GB),
            orm.Gpu.workload_id.is_(None),
        )
        .distinct()
        .order_by(orm.Gpu.gpu_key)
    )
    return list(rows)


async def create_worker(
    session: AsyncSession,
    *,
    clock: Clock,
    endpoint: orm.Endpoint,
    group: orm.Workergroup,
    report_url: str,
) -> orm.ServerlessWorker | None:
    """Place a new worker of ``group`` on the best host by perf per dollar, measuring on
    ``test_workers`` hosts first (``core.autoscaling.rank_hosts``); None when none has room."""
    placements: list[scheduler.Placement] = []
    options: list[HostOption] = []
    book = await price_book.load(session)
    for key in await _gpu_keys(session, group):
        for placement in await scheduler.candidates(
            session, gpu_key=key, count=group.num_gpus, owner_id=endpoint.id, org_id=group.org_id
        ):
            placements.append(placement)
            cents = book.cents_per_gpu_hour(key) * group.num_gpus
            options.append(HostOption(placement.host.id, key, float(cents)))
    measured = await _measured(session, group)
    for i in rank_hosts(options, measured, group.test_workers):
        placement = placements[i]
        workload_id = new_id("wl")
        if not await scheduler.allocate(session, gpus=placement.gpus, workload_id=workload_id):
            continue
        return await _start_new(session, clock, endpoint, group, placement, workload_id, report_url)
    return None


async def _measured(session: AsyncSession, group: orm.Workergroup) -> list[MeasuredWorker]:
    """The group's live workers: their host, GPU type and measured perf (0: not yet)."""
    rows = await session.execute(
        select(
            orm.ServerlessWorker.pk,
            orm.ServerlessWorker.host_id,
            orm.Gpu.gpu_key,
            orm.ServerlessWorker.max_perf,
        )
        .join(orm.Gpu, orm.Gpu.workload_id == orm.ServerlessWorker.workload_id)
        .where(orm.ServerlessWorker.workergroup_id == group.id)
        .distinct()  # one row per worker and GPU type, however many GPUs it holds
    )
    return [MeasuredWorker(str(h), str(k), float(p)) for _, h, k, p in rows.all() if h is not None]


async def _start_new(
    session: AsyncSession,
    clock: Clock,
    endpoint: orm.Endpoint,
    group: orm.Workergroup,
    placement: scheduler.Placement,
    workload_id: str,
    report_url: str,
) -> orm.ServerlessWorker:
    now = clock.now()
    worker = orm.ServerlessWorker(
        org_id=group.org_id,
        endpoint_id=endpoint.id,
        workergroup_id=group.id,
        workload_id=workload_id,
        host_id=placement.host.id,
        status=WorkerState.CREATING.value,
        status_at=now,
        mtoken=secrets.token_urlsafe(24),
        created_at=now,
        updated_at=now,
    )
    session.add(worker)
    await session.flush()  # its number is its CONTAINER_ID
    port = group.port or DEFAULT_WORKER_PORT
    env = dict(group.env)
    env.update(
        REPORT_ADDR=report_url,
        MASTER_TOKEN=worker.mtoken,
        CONTAINER_ID=str(worker.pk),
        WORKER_PORT=str(port),
        PUBLIC_IPADDR=placement.host.address,
    )
    spec = WorkloadSpec(
        id=workload_id,
        kind=WorkloadKind.WORKER,
        image=group.image,
        command=_prelude(port) + group.command if group.command else None,
        env=env,
        gpu_indices=[g.index for g in placement.gpus],
        gpu_uuids=[g.uuid for g in placement.gpus],
        port=port,
        # A sandboxed process host relays one loopback port to its server and names it here.
        labels={
            "gpuyard.endpoint": endpoint.id,
            "gpuyard.workergroup": group.id,
            SERVER_RELAY_LABEL: "REPORT_ADDR",
        },
    )
    row = workloads.new_workload(
        spec=spec,
        org_id=group.org_id,
        host_id=placement.host.id,
        owner_id=endpoint.id,
        desired=Desired.RUNNING.value,
        now=now,
    )
    session.add(row)
    wakeups.tell_host(session, placement.host.id)
    await session.flush()
    await offers.refresh_host(session, host=placement.host)
    await _event(session, clock, worker, "placed", f"on host {placement.host.name}")
    return worker


async def release(session: AsyncSession, *, workload: orm.Workload, host: orm.Host | None) -> None:
    """A stopped worker's GPUs are free again (its files stay on the host)."""
    freed = await workloads.release_gpus(session, workload_id=workload.id)
    if freed:
        if host is not None:
            await offers.refresh_host(session, host=host)
        await workloads.wake_clusters_waiting_for_room(session, gpu_keys=freed)


async def retake(session: AsyncSession, *, workload: orm.Workload, host: orm.Host | None) -> bool:
    """Take a stopped worker's own GPUs again, on its host, to start it: False when the host
    cannot run it now or any of them is taken (nothing taken then)."""
    usable = (
        host is not None
        and host.status == HostStatus.READY
        and not host.cordoned
        and not host.draining
    )
    if not usable:
        return False
    spec = WorkloadSpec.model_validate(workload.spec)
    gpus = list(
        await session.scalars(
            select(orm.Gpu).where(
                orm.Gpu.host_id == workload.host_id, orm.Gpu.uuid.in_(spec.gpu_uuids)
            )
        )
    )
    held = [g for g in gpus if g.workload_id == workload.id]
    if len(gpus) != len(spec.gpu_uuids):
        return False
    if len(held) == len(gpus):  # never let go (stopped before this release existed)
        return True
    if not await scheduler.allocate(
        session, gpus=[g for g in gpus if g.workload_id != workload.id], workload_id=workload.id
    ):
        return False
    assert host is not None
    await offers.refresh_host(session, host=host)
    return True


async def set_desired(
    session: AsyncSession,
    *,
    clock: Clock,
    worker: orm.ServerlessWorker,
    workload: orm.Workload | None,
    state: WorkerState,
    why: str,
) -> None:
    """Start (``starting``), stop (``stopping``) or destroy (``destroying``) a worker."""
    desired = {
        WorkerState.STARTING: Desired.RUNNING,
        WorkerState.STOPPING: Desired.STOPPED,
        WorkerState.DESTROYING: Desired.REMOVED,
    }[state]
    now = clock.now()
    set_status(worker, state, now)
    if workload is not None:
        if desired is Desired.RUNNING and workload.state in ("exited", "failed", "stopped"):
            workloads.respec(workload, WorkloadSpec.model_validate(workload.spec), now)
        workload.desired = desired.value
        workload.ready = False
        workload.updated_at = now
        wakeups.tell_host(session, workload.host_id)
    await _event(session, clock, worker, state.value, why)


def set_status(worker: orm.ServerlessWorker, state: WorkerState, now: datetime) -> None:
    if worker.status != state.value:
        worker.status, worker.status_at = state.value, now
    worker.updated_at = now


def observed(
    worker: orm.ServerlessWorker, workload: orm.Workload | None, host: orm.Host | None
) -> tuple[WorkerState, str | None]:
    """The worker's state from what its host reports (and why, for an error)."""
    state = WorkerState(worker.status)
    if workload is None:
        return (WorkerState.DESTROYING if state == WorkerState.DESTROYING else state), None
    if state == WorkerState.DESTROYING:
        return state, None
    if host is not None and host.status in (HostStatus.OFFLINE, HostStatus.REMOVED):
        return WorkerState.ERROR, "host lost"
    if workload.state in ("exited", "failed") and workload.desired == Desired.RUNNING:
        tail = (workload.log_tail or "").strip().splitlines()[-5:]
        why = workload.message or f"exited ({workload.exit_code})"
        return WorkerState.ERROR, why + (": " + " | ".join(tail) if tail else "")
    if state == WorkerState.CREATING and workload.state == "running":
        return WorkerState.LOADING, None
    if state == WorkerState.STOPPING and workload.state in ("stopped", "exited"):
        return WorkerState.STOPPED, None
    return state, None


async def _event(
    session: AsyncSession, clock: Clock, worker: orm.ServerlessWorker, what: str, why: str
) -> None:
    await events.record(
        session,
        clock=clock,
        org_id=worker.org_id,
        type=f"worker.{what}",
        subject_id=worker.workergroup_id,
        data={"worker_id": worker.pk, "reason": why},
    )


async def worker_event(
    session: AsyncSession, *, clock: Clock, worker: orm.ServerlessWorker, what: str, why: str
) -> None:
    await _event(session, clock, worker, what, why)
