"""Instances: rent an offer's GPUs, then start, stop, restart, label, read logs and destroy.

Renting is one transaction: lock the host row, take the offer's GPUs only if they are still free
(a conditional update counted row by row), write the instance, its workload and an event, and
rebuild the host's offers. Two rentals of the last free GPU therefore give one instance and one
409 ``offer_unavailable``, on SQLite (one writer) and on Postgres (the host row lock).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core import gpu_names
from gpuyard.core.agent_protocol import Desired, HostStatus
from gpuyard.core.clock import Clock
from gpuyard.core.errors import Conflict, InvalidRequest, NotFound
from gpuyard.core.hosts import takes_org
from gpuyard.core.ids import new_id
from gpuyard.core.instances import Instance, actual_status
from gpuyard.core.log_tail import LogSlice, read_tail
from gpuyard.core.offers import bundle_sizes, decode_offer_id
from gpuyard.core.pagination import Page
from gpuyard.core.workload import WorkloadKind, WorkloadSpec
from gpuyard.server import orm
from gpuyard.server.services import events, offers, price_book, ssh_keys, wakeups, workloads
from gpuyard.server.services.pagination import paginate
from gpuyard.server.services.refs import by_ref

DEFAULT_PORT = 8080
"""The port an instance's workload listens on unless told otherwise. The host publishes it on a
port of its range (the process runtime passes that one as PORT)."""


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """What to run on the rented GPUs (see docs/agent-runtimes.md for how it becomes a command)."""

    image: str | None = None
    command: str | None = None
    onstart: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    label: str | None = None
    disk_gb: float | None = None
    runtype: str | None = None
    start: bool = True


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_OFFER_ID = 2**63 - 1  # offer ids are BIGINT


def _check_launch(launch: LaunchSpec) -> None:
    for name in launch.env:
        if not _ENV_NAME.match(name):
            raise InvalidRequest(
                f"env: {name!r} is not a valid environment variable name "
                "(letters, digits and '_', not starting with a digit)",
                param="env",
            )


async def _takes(session: AsyncSession, host: orm.Host, org_id: str) -> bool:
    """Whether ``host`` may run ``org_id``'s workloads; an offer it may not rent is no offer."""
    is_operator = await session.scalar(select(orm.Org.is_operator).where(orm.Org.id == org_id))
    return takes_org(
        facts=host.facts or {}, trusted=host.trusted, org_is_operator=bool(is_operator)
    )


def _unavailable(offer_id: int, why: str) -> Conflict:
    return Conflict(f"offer {offer_id} is no longer available: {why}", code="offer_unavailable")


async def create_instance(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    offer_id: int,
    launch: LaunchSpec,
) -> Instance:
    _check_launch(launch)
    ref = decode_offer_id(offer_id) if offer_id <= _MAX_OFFER_ID else None
    if ref is None:
        raise NotFound(f"no offer {offer_id}", code="no_such_ask")
    host = await session.scalar(
        select(orm.Host).where(orm.Host.pk == ref.machine_id).with_for_update()
    )
    if host is None or not await _takes(session, host, org_id):
        raise NotFound(f"no offer {offer_id}", code="no_such_ask")
    if host.status != HostStatus.READY or host.cordoned or host.draining:
        raise _unavailable(offer_id, f"host is {'cordoned' if host.cordoned else host.status}")
    host_gpus = list(
        (await session.scalars(select(orm.Gpu).where(orm.Gpu.host_id == host.id))).all()
    )
    first = next((g for g in host_gpus if g.index == ref.first_index), None)
    if first is None:
        raise NotFound(f"no offer {offer_id}", code="no_such_ask")
    typed = sorted((g for g in host_gpus if g.gpu_key == first.gpu_key), key=lambda g: g.index)
    if typed[0].index != ref.first_index:
        raise NotFound(f"no offer {offer_id}", code="no_such_ask")
    free = [g for g in typed if g.workload_id is None]
    if ref.num_gpus not in bundle_sizes(len(free)):
        raise _unavailable(offer_id, f"{len(free)} of its GPUs are free, it needs {ref.num_gpus}")
    chosen = free[: ref.num_gpus]
    workload_id = new_id("wl")
    taken = await session.execute(
        update(orm.Gpu)
        .where(orm.Gpu.pk.in_([g.pk for g in chosen]), orm.Gpu.workload_id.is_(None))
        .values(workload_id=workload_id)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != len(chosen):  # type: ignore[attr-defined]
        raise _unavailable(offer_id, "its GPUs were just rented by someone else")
    for gpu in chosen:
        gpu.workload_id = workload_id
    book = await price_book.load(session)
    now = clock.now()
    instance_id = new_id("vm")
    spec = WorkloadSpec(
        id=workload_id,
        kind=WorkloadKind.INSTANCE,
        image=launch.image,
        command=launch.command,
        onstart=launch.onstart,
        args=launch.args,
        env=launch.env,
        gpu_indices=[g.index for g in chosen],
        gpu_uuids=[g.uuid for g in chosen],
        port=launch.port or DEFAULT_PORT,
        ssh_authorized_keys=await ssh_keys.all_public_keys(session, org_id=org_id),
        labels={"gpuyard.instance": instance_id, "gpuyard.org": org_id, "generation": "1"},
    )
    desired = Desired.RUNNING if launch.start else Desired.STOPPED
    wakeups.tell_host(session, host.id)
    session.add(
        workloads.new_workload(
            spec=spec,
            org_id=org_id,
            host_id=host.id,
            owner_id=instance_id,
            desired=desired,
            now=now,
        )
    )
    row = orm.Instance(
        id=instance_id,
        org_id=org_id,
        host_id=host.id,
        workload_id=workload_id,
        offer_id=offer_id,
        gpu_name=gpu_names.display_name(first.name),
        num_gpus=ref.num_gpus,
        cents_per_hour=book.cents_per_gpu_hour(first.gpu_key) * ref.num_gpus,
        image=launch.image,
        label=launch.label,
        disk_gb=launch.disk_gb,
        runtype=launch.runtype,
        intended_status=desired.value,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    await offers.refresh_host(session, host=host)
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="instance.created",
        subject_id=instance_id,
        data={
            "offer_id": offer_id,
            "host_id": host.id,
            "gpu_name": row.gpu_name,
            "num_gpus": row.num_gpus,
            "cents_per_hour": row.cents_per_hour,
        },
    )
    return await get_instance(session, org_id=org_id, instance_ref=instance_id)


_JOINED = (
    select(orm.Instance, orm.Workload, orm.Host, orm.Gpu.vram_mb)
    .join(orm.Host, orm.Host.id == orm.Instance.host_id)
    .outerjoin(orm.Workload, orm.Workload.id == orm.Instance.workload_id)
    .outerjoin(
        orm.Gpu,
        (orm.Gpu.workload_id == orm.Instance.workload_id) & (orm.Gpu.host_id == orm.Host.id),
    )
)


def _to_domain(
    inst: orm.Instance, wl: orm.Workload | None, host: orm.Host, vram: int | None
) -> Instance:
    state = wl.state if wl is not None else None
    spec: dict[str, Any] = wl.spec if wl is not None else {}
    return Instance(
        id=inst.id,
        number=inst.pk,
        org_id=inst.org_id,
        host_id=inst.host_id,
        machine_id=host.pk,
        offer_id=inst.offer_id,
        gpu_name=inst.gpu_name,
        num_gpus=inst.num_gpus,
        gpu_ram_mb=vram,
        cents_per_hour=inst.cents_per_hour,
        image=inst.image,
        label=inst.label,
        intended_status=inst.intended_status,
        actual_status=actual_status(state, host.status) if inst.destroyed_at is None else None,
        state=state,
        status_msg=(wl.message if wl is not None else None)
        or ("host is offline" if host.status == HostStatus.OFFLINE else None),
        exit_code=wl.exit_code if wl is not None else None,
        host_status=host.status,
        public_ipaddr=host.address,
        host_port=wl.host_port if wl is not None else None,
        log_tail=wl.log_tail if wl is not None else None,
        log_size=wl.log_size if wl is not None else None,
        created_at=inst.created_at,
        updated_at=inst.updated_at,
        started_at=wl.started_at if wl is not None else None,
        destroyed_at=inst.destroyed_at,
        port=spec.get("port"),
        command=spec.get("command"),
        onstart=spec.get("onstart"),
        args=tuple(spec.get("args") or ()),
        env=tuple((spec.get("env") or {}).items()),
        disk_gb=inst.disk_gb,
        runtype=inst.runtype,
        geolocation=host.geolocation,
        inet_up=host.inet_up_mbps,
        inet_down=host.inet_down_mbps,
        host_verified=host.verified,
    )


async def get_instance(session: AsyncSession, *, org_id: str, instance_ref: str) -> Instance:
    cond = by_ref(orm.Instance, instance_ref, "vm")
    found = None
    if cond is not None:
        stmt = _JOINED.where(
            cond, orm.Instance.org_id == org_id, orm.Instance.destroyed_at.is_(None)
        )
        found = (await session.execute(stmt.limit(1))).first()
    if found is None:
        raise NotFound(f"instance {instance_ref} not found", code="instance_not_found")
    return _to_domain(*found)


async def list_instances(
    session: AsyncSession, *, org_id: str, limit: int, cursor: str | None
) -> Page[Instance]:
    stmt = select(orm.Instance).where(
        orm.Instance.org_id == org_id, orm.Instance.destroyed_at.is_(None)
    )
    page = await paginate(
        session, stmt, model=orm.Instance, limit=limit, cursor=cursor, convert=lambda r: r.id
    )
    # One query for the whole page; an instance with several GPUs joins to several rows.
    found: dict[str, Instance] = {}
    if page.items:
        for row in await session.execute(_JOINED.where(orm.Instance.id.in_(page.items))):
            found.setdefault(row[0].id, _to_domain(*row))
    items = [found[i] for i in page.items]
    return Page(items=items, has_more=page.has_more, next_cursor=page.next_cursor)


async def _locked(
    session: AsyncSession, org_id: str, instance_ref: str
) -> tuple[orm.Instance, orm.Workload]:
    cond = by_ref(orm.Instance, instance_ref, "vm")
    inst = None
    if cond is not None:
        inst = await session.scalar(
            select(orm.Instance)
            .where(cond, orm.Instance.org_id == org_id, orm.Instance.destroyed_at.is_(None))
            .with_for_update()
        )
    if inst is None:
        raise NotFound(f"instance {instance_ref} not found", code="instance_not_found")
    wl = await session.scalar(
        select(orm.Workload).where(orm.Workload.id == inst.workload_id).with_for_update()
    )
    if wl is None:
        raise Conflict(f"instance {instance_ref} has no workload", code="instance_broken")
    return inst, wl


async def set_state(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    instance_ref: str,
    running: bool,
    restart: bool = False,
) -> Instance:
    """Ask for running or stopped. Starting an instance whose command ended, or ``restart``,
    runs it again from the start (a new generation of its spec)."""
    inst, wl = await _locked(session, org_id, instance_ref)
    now = clock.now()
    desired = Desired.RUNNING if running else Desired.STOPPED
    ended = wl.state in ("exited", "failed", "stopped")
    if running and (restart or ended):
        spec = WorkloadSpec.model_validate(wl.spec)
        labels = dict(spec.labels)
        labels["generation"] = str(int(labels.get("generation", "1")) + 1)
        workloads.respec(wl, spec.model_copy(update={"labels": labels}), now)
        wakeups.tell_host(session, wl.host_id)
    if inst.intended_status != desired.value or restart:
        inst.intended_status = desired.value
        inst.updated_at = now
        wl.desired = desired.value
        wl.updated_at = now
        wakeups.tell_host(session, wl.host_id)
        kind = "restart" if restart else ("start" if running else "stop")
        await events.record(
            session,
            clock=clock,
            org_id=org_id,
            type=f"instance.{kind}_requested",
            subject_id=inst.id,
            data={"intended_status": desired.value},
        )
    return await get_instance(session, org_id=org_id, instance_ref=inst.id)


async def set_label(
    session: AsyncSession, *, clock: Clock, org_id: str, instance_ref: str, label: str | None
) -> Instance:
    inst, _ = await _locked(session, org_id, instance_ref)
    if label is not None and len(label) > 200:
        raise InvalidRequest("label must be at most 200 characters", param="label")
    inst.label = label
    inst.updated_at = clock.now()
    return await get_instance(session, org_id=org_id, instance_ref=inst.id)


async def destroy(
    session: AsyncSession, *, clock: Clock, org_id: str, instance_ref: str
) -> Instance:
    """Destroy: the agent stops and removes the workload; its GPUs are freed once it confirms."""
    inst, wl = await _locked(session, org_id, instance_ref)
    before = await get_instance(session, org_id=org_id, instance_ref=inst.id)
    now = clock.now()
    inst.destroyed_at = now
    inst.intended_status = "destroyed"
    inst.updated_at = now
    wl.desired = Desired.REMOVED.value
    wl.updated_at = now
    wakeups.tell_host(session, wl.host_id)
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="instance.destroyed",
        subject_id=inst.id,
        data={"host_id": inst.host_id},
    )
    return before


async def logs(
    session: AsyncSession, *, org_id: str, instance_ref: str, tail: int, after: int | None = None
) -> tuple[LogSlice, Instance]:
    """The instance's output as its host last reported it (a running one's about every
    heartbeat): its last ``tail`` lines, or what came after byte ``after`` (see core/log_tail)."""
    inst = await get_instance(session, org_id=org_id, instance_ref=instance_ref)
    return read_tail(inst.log_tail or "", inst.log_size, lines=tail, after=after), inst
