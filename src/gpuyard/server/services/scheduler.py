"""Where a new replica runs: filter hosts, score them, and take GPUs atomically.

Filter: the host is ready, not cordoned or draining, may run the org's workloads (tenancy, below),
and has ``count`` free GPUs of the wanted type (names normalised). Score: first spread (fewest
replicas of the same deployment on the host), then binpack (fewest free GPUs left after
placing), then the older host. Allocation is a conditional update that only takes GPUs that are
still free; if another placement won a race, the caller gets ``None`` and tries again on its
next pass.

Tenancy (``core.hosts.takes_org``): a host whose agent reports that it isolates its workloads
(``facts.isolation.isolates``) runs every org's; one that does not runs only the operator org's,
unless the operator marked it ``trusted``. ``takes_org`` here is the same rule as SQL, which
offer search and instance creation use too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.agent_protocol import HostStatus
from gpuyard.server import orm


def takes_org(org_id: str) -> ColumnElement[bool]:
    """Hosts that may run ``org_id``'s workloads (``core.hosts.takes_org``, over ``orm.Host``)."""
    isolating = orm.Host.facts["isolation"]["isolates"].as_boolean().is_(True)
    operator = exists().where(orm.Org.id == org_id, orm.Org.is_operator.is_(True))
    return or_(orm.Host.trusted.is_(True), isolating, operator)


@dataclass(frozen=True, slots=True)
class Placement:
    host: orm.Host
    gpus: list[orm.Gpu]


async def place(
    session: AsyncSession,
    *,
    gpu_key: str,
    count: int,
    owner_id: str,
    org_id: str,
) -> Placement | None:
    """The best host for a new workload with ``count`` GPUs of ``gpu_key``; None when none fits.
    Only the chosen host and the GPUs it gives are loaded."""
    ranked = await _ranked(session, gpu_key=gpu_key, count=count, owner_id=owner_id, org_id=org_id)
    if not ranked:
        return None
    host = await session.get_one(orm.Host, ranked[0].pk)
    gpus = list(
        await session.scalars(
            _free_gpus(gpu_key)
            .where(orm.Gpu.host_id == host.id)
            .order_by(orm.Gpu.index)
            .limit(count)
        )
    )
    if len(gpus) < count:  # taken since they were counted (Postgres reads each statement anew)
        return None
    return Placement(host=host, gpus=gpus)


async def candidates(
    session: AsyncSession,
    *,
    gpu_key: str,
    count: int,
    owner_id: str,
    org_id: str,
) -> list[Placement]:
    """Every host that fits, best first (spread, binpack, older), each with the GPUs it gives."""
    ranked = await _ranked(session, gpu_key=gpu_key, count=count, owner_id=owner_id, org_id=org_id)
    if not ranked:
        return []
    ids = [r.id for r in ranked]
    hosts = {h.id: h for h in await session.scalars(select(orm.Host).where(orm.Host.id.in_(ids)))}
    free: dict[str, list[orm.Gpu]] = defaultdict(list)
    for gpu in await session.scalars(
        _free_gpus(gpu_key).where(orm.Gpu.host_id.in_(ids)).order_by(orm.Gpu.index)
    ):
        free[gpu.host_id].append(gpu)
    return [Placement(host=hosts[i], gpus=free[i][:count]) for i in ids if len(free[i]) >= count]


@dataclass(frozen=True, slots=True)
class _Fit:
    id: str
    pk: int
    free: int


def _free(gpu_key: str) -> tuple[ColumnElement[bool], ...]:
    """GPUs of ``gpu_key`` that no workload holds."""
    return (orm.Gpu.gpu_key == gpu_key, orm.Gpu.workload_id.is_(None))


def _free_gpus(gpu_key: str) -> Select[orm.Gpu]:
    return select(orm.Gpu).where(*_free(gpu_key))


async def _ranked(
    session: AsyncSession,
    *,
    gpu_key: str,
    count: int,
    owner_id: str,
    org_id: str,
) -> list[_Fit]:
    """The hosts that fit, best first: counted in the database (one row a host, however many
    GPUs it has), then ordered by spread, binpack and age."""
    free = func.count(orm.Gpu.pk)
    rows = await session.execute(
        select(orm.Host.id, orm.Host.pk, free)
        .join(orm.Gpu, orm.Gpu.host_id == orm.Host.id)
        .where(
            orm.Host.status == HostStatus.READY,
            orm.Host.cordoned.is_(False),
            orm.Host.draining.is_(False),
            takes_org(org_id),
            *_free(gpu_key),
        )
        .group_by(orm.Host.id, orm.Host.pk)
        .having(free >= count)
    )
    fits = [_Fit(i, pk, n) for i, pk, n in rows.all()]
    if not fits:
        return []
    same_owner = Counter(
        (
            await session.scalars(
                select(orm.Workload.host_id).where(
                    orm.Workload.owner_id == owner_id, orm.Workload.desired != "removed"
                )
            )
        ).all()
    )
    return sorted(fits, key=lambda f: (same_owner[f.id], f.free - count, f.pk))


async def allocate(session: AsyncSession, *, gpus: list[orm.Gpu], workload_id: str) -> bool:
    """Take ``gpus`` for ``workload_id`` if all are still free; False when any was taken."""
    result = await session.execute(
        update(orm.Gpu)
        .where(orm.Gpu.pk.in_([g.pk for g in gpus]), orm.Gpu.workload_id.is_(None))
        .values(workload_id=workload_id)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != len(gpus):  # type: ignore[attr-defined]
        await session.execute(  # undo the part that did go through
            update(orm.Gpu).where(orm.Gpu.workload_id == workload_id).values(workload_id=None)
        )
        return False
    for gpu in gpus:
        gpu.workload_id = workload_id
    return True
