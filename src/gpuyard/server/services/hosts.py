"""Hosts as the operator sees them: list, read, cordon, drain, remove, and fleet GPU types."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core import gpu_names
from gpuyard.core.agent_protocol import HostStatus
from gpuyard.core.clock import Clock
from gpuyard.core.errors import Conflict, NotFound
from gpuyard.core.hosts import Gpu, GpuType, Host, isolates
from gpuyard.core.ids import is_id
from gpuyard.core.pagination import Page
from gpuyard.server import orm
from gpuyard.server.services import events, offers, price_book, workloads
from gpuyard.server.services.pagination import paginate


async def operator_org_id(session: AsyncSession) -> str:
    org_id = await session.scalar(select(orm.Org.id).where(orm.Org.is_operator.is_(True)))
    if org_id is None:
        raise RuntimeError("no operator organization: the server was not bootstrapped")
    return org_id


def to_domain(row: orm.Host, gpus: list[orm.Gpu]) -> Host:
    return Host(
        id=row.id,
        number=row.pk,
        name=row.name,
        status=row.status,
        cordoned=row.cordoned,
        draining=row.draining,
        verified=row.verified,
        trusted=row.trusted,
        address=row.address,
        geolocation=row.geolocation,
        inet_up_mbps=row.inet_up_mbps,
        inet_down_mbps=row.inet_down_mbps,
        gpus=tuple(
            Gpu(
                index=g.index,
                uuid=g.uuid,
                name=g.name,
                vram_mb=g.vram_mb,
                workload_id=g.workload_id,
            )
            for g in sorted(gpus, key=lambda g: g.index)
        ),
        facts=dict(row.facts or {}),
        created_at=row.created_at,
        last_heartbeat_at=row.last_heartbeat_at,
        status_changed_at=row.status_changed_at,
    )


async def _gpus(session: AsyncSession, host_ids: list[str]) -> dict[str, list[orm.Gpu]]:
    out: dict[str, list[orm.Gpu]] = defaultdict(list)
    if host_ids:
        for gpu in await session.scalars(select(orm.Gpu).where(orm.Gpu.host_id.in_(host_ids))):
            out[gpu.host_id].append(gpu)
    return out


async def host_row(session: AsyncSession, host_id: str, *, for_update: bool = False) -> orm.Host:
    row = None
    if is_id(host_id, "host"):
        stmt = select(orm.Host).where(orm.Host.id == host_id)
        row = await session.scalar(stmt.with_for_update() if for_update else stmt)
    if row is None:
        raise NotFound(f"host {host_id} not found", code="host_not_found")
    return row


async def get_host(session: AsyncSession, *, host_id: str) -> Host:
    row = await host_row(session, host_id)
    return to_domain(row, (await _gpus(session, [row.id]))[row.id])


async def list_hosts(
    session: AsyncSession, *, status: str | None, limit: int, cursor: str | None
) -> Page[Host]:
    stmt = select(orm.Host)
    if status is not None:
        stmt = stmt.where(orm.Host.status == status)
    page = await paginate(
        session, stmt, model=orm.Host, limit=limit, cursor=cursor, convert=lambda r: r
    )
    gpus = await _gpus(session, [r.id for r in page.items])
    return Page(
        items=[to_domain(r, gpus[r.id]) for r in page.items],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


async def update_host(
    session: AsyncSession,
    *,
    clock: Clock,
    host_id: str,
    changes: dict[str, object],
) -> Host:
    """Operator-set fields: name, geolocation, inet_up_mbps, inet_down_mbps, verified, trusted.

    A change of ``trusted`` is an event (``host.trusted``, ``host.untrusted``): it decides whose
    workloads a host that cannot isolate may run. Untrusting a host stops nothing that runs.
    """
    row = await host_row(session, host_id, for_update=True)
    allowed = {"name", "geolocation", "inet_up_mbps", "inet_down_mbps", "verified", "trusted"}
    trusted = changes.get("trusted")
    if isinstance(trusted, bool) and trusted != row.trusted:
        await events.record(
            session,
            clock=clock,
            org_id=await operator_org_id(session),
            type="host.trusted" if trusted else "host.untrusted",
            subject_id=row.id,
            data={"name": row.name, "isolates": isolates(row.facts or {})},
        )
        await workloads.wake_clusters_waiting_for_room(session)
    for key, value in changes.items():
        if key in allowed:
            if key == "geolocation" and isinstance(value, str):
                value = value.rsplit(",", 1)[-1].strip().upper() or None
            setattr(row, key, value)
    row.updated_at = clock.now()
    await offers.refresh_host(session, host=row)
    return await get_host(session, host_id=host_id)


async def set_cordon(
    session: AsyncSession,
    *,
    clock: Clock,
    host_id: str,
    cordoned: bool,
    draining: bool = False,
) -> Host:
    row = await host_row(session, host_id, for_update=True)
    if row.status == HostStatus.REMOVED:
        raise Conflict(f"host {host_id} was removed", code="host_removed")
    if (row.cordoned, row.draining) != (cordoned, draining):
        row.cordoned, row.draining = cordoned, draining
        row.updated_at = clock.now()
        kind = "host.draining" if draining else ("host.cordoned" if cordoned else "host.uncordoned")
        await events.record(
            session,
            clock=clock,
            org_id=await operator_org_id(session),
            type=kind,
            subject_id=row.id,
            data={"name": row.name},
        )
        await offers.refresh_host(session, host=row)
        await workloads.wake_clusters_on(session, host_id=row.id)
        if not cordoned:
            await workloads.wake_clusters_waiting_for_room(session)
    return await get_host(session, host_id=host_id)


async def remove_host(session: AsyncSession, *, clock: Clock, host_id: str, force: bool) -> Host:
    """Retire a host: its credential stops working and it offers nothing. Refused while it still
    runs workloads, unless ``force`` (they are then lost)."""
    row = await host_row(session, host_id, for_update=True)
    active = (
        await session.scalars(
            select(orm.Workload.id).where(
                orm.Workload.host_id == row.id, orm.Workload.desired != "removed"
            )
        )
    ).all()
    if active and not force:
        raise Conflict(
            f"host {host_id} still has {len(active)} workload(s); drain it and destroy them, "
            "or remove with force=true",
            code="host_busy",
        )
    row.status = HostStatus.REMOVED
    row.cordoned = True
    row.status_changed_at = row.updated_at = clock.now()
    row.credential_hash = f"removed:{row.id}"
    await session.execute(update(orm.Gpu).where(orm.Gpu.host_id == row.id).values(workload_id=None))
    await offers.refresh_host(session, host=row)
    await workloads.wake_clusters_on(session, host_id=row.id)
    await events.record(
        session,
        clock=clock,
        org_id=await operator_org_id(session),
        type="host.removed",
        subject_id=row.id,
        data={"name": row.name, "lost_workloads": list(active)},
    )
    return await get_host(session, host_id=host_id)


async def gpu_types(session: AsyncSession) -> list[GpuType]:
    """Every GPU type on hosts that are not removed, or priced by the operator, with how many
    exist, how many are free to rent now, and the price per GPU-hour."""
    rows = await session.execute(
        select(orm.Gpu, orm.Host.status, orm.Host.cordoned, orm.Host.draining)
        .join(orm.Host, orm.Host.id == orm.Gpu.host_id)
        .where(orm.Host.status != HostStatus.REMOVED)
    )
    book = await price_book.load(session)
    names: dict[str, str] = {
        p.gpu_key: p.name
        for p in await session.scalars(select(orm.GpuPrice))
        if book.is_priced(p.gpu_key)
    }
    vram: dict[str, int | None] = {}
    total: dict[str, int] = defaultdict(int)
    free: dict[str, int] = defaultdict(int)
    for gpu, status, cordoned, draining in rows.all():
        names.setdefault(gpu.gpu_key, gpu_names.display_name(gpu.name))
        vram.setdefault(gpu.gpu_key, gpu.vram_mb)
        total[gpu.gpu_key] += 1
        usable = status == HostStatus.READY and not cordoned and not draining
        free[gpu.gpu_key] += int(usable and gpu.workload_id is None)
    out = []
    for key in sorted(names):
        price = book.cents_per_gpu_hour(key)
        out.append(
            GpuType(
                key=key,
                name=names[key],
                vram_mb=vram.get(key) or gpu_names.known_vram_mb(names[key]),
                total=total[key],
                free=free[key],
                min_cents_per_hour=price,
                max_cents_per_hour=price,
            )
        )
    return out
