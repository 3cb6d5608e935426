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

from sqlalchemy import ColumnElement, exists, or_, select, update
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
    exclude_hosts: frozenset[str] = frozenset(),
) -> Placement | None:
    """The best host for a new workload with ``count`` GPUs of ``gpu_key``; None when none fits."""
    found = await candidates(
        session,
        gpu_key=gpu_key,
        count=count,
        owner_id=owner_id,
        org_id=org_id,
        exclude_hosts=exclude_hosts,
    )
    return found[0] if found else None


async def candidates(
    session: AsyncSession,
    *,
    gpu_key: str,
    count: int,
    owner_id: str,
    org_id: str,
    exclude_hosts: frozenset[str] = frozenset(),
) -> list[Placement]:
    """Every host that fits, best first (spread, binpack, older), each with the GPUs it gives."""
    hosts = {
        h.id: h
        for h in await session.scalars(
            select(orm.Host).where(
                orm.Host.status == HostStatus.READY,
                orm.Host.cordoned.is_(False),
                orm.Host.draining.is_(False),
                takes_org(org_id),
            )
        )
        if h.id not in exclude_hosts
    }
    if not hosts:
        return []
    free: dict[str, list[orm.Gpu]] = defaultdict(list)
    for gpu in await session.scalars(
        select(orm.Gpu).where(
            orm.Gpu.host_id.in_(list(hosts)),
            orm.Gpu.gpu_key == gpu_key,
            orm.Gpu.workload_id.is_(None),
        )
    ):
        free[gpu.host_id].append(gpu)
    same_owner = Counter(
        (
            await session.scalars(
                select(orm.Workload.host_id).where(
                    orm.Workload.owner_id == owner_id, orm.Workload.desired != "removed"
                )
            )
        ).all()
    )
    fits = [h for h in hosts.values() if len(free[h.id]) >= count]
    ordered = sorted(fits, key=lambda h: (same_owner[h.id], len(free[h.id]) - count, h.pk))
    return [
        Placement(host=h, gpus=sorted(free[h.id], key=lambda g: g.index)[:count]) for h in ordered
    ]


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
