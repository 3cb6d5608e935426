"""The offers table (derived from hosts and GPUs) and offer search over it.

``refresh_host`` rebuilds one host's offers inside the transaction that changed its GPUs, status,
isolation, trust or prices, so search is a plain indexed query (see core/offers.py for how
bundles are formed).
Search translates an :class:`OfferQuery` to SQL; a value a host does not report is NULL and
matches no filter, as in the in-memory evaluator. Fields no host ever reports (``UNREPORTED`` in
core/offer_fields.py) have no column: a filter on one is false (true only for ``eq null``) and
ordering by one is skipped.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import ColumnElement, case, delete, false, insert, not_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core import gpu_names
from gpuyard.core.agent_protocol import HostStatus
from gpuyard.core.errors import InvalidRequest
from gpuyard.core.hosts import takes_org
from gpuyard.core.offer_fields import comparable, resolve_field
from gpuyard.core.offer_query import Direction, Filter, OfferQuery, Op
from gpuyard.core.offers import Offer, OfferRef, bundle_sizes, encode_offer_id
from gpuyard.server import orm
from gpuyard.server.services import price_book
from gpuyard.server.services.price_book import PriceBook

DEFAULT_LIMIT = 64
MAX_LIMIT = 1000
_INSERT_BATCH = 2000

_COLUMNS: dict[str, Any] = {
    "id": orm.Offer.id,
    "gpu_name": orm.Offer.gpu_key,
    "num_gpus": orm.Offer.num_gpus,
    "gpu_ram": orm.Offer.gpu_ram,
    "gpu_total_ram": orm.Offer.gpu_total_ram,
    "cpu_ram": orm.Offer.cpu_ram,
    "cpu_cores": orm.Offer.cpu_cores,
    "disk_space": orm.Offer.disk_space,
    "dph_total": orm.Offer.dph_total,
    "reliability": orm.Offer.reliability,
    "inet_up": orm.Offer.inet_up,
    "inet_down": orm.Offer.inet_down,
    "geolocation": orm.Offer.geolocation,
    "cuda_max_good": orm.Offer.cuda_max_good,
    "compute_cap": orm.Offer.compute_cap,
    "verified": orm.Offer.verified,
    "rentable": orm.Offer.rentable,
    "rented": orm.Offer.rented,
    "direct_port_count": orm.Offer.direct_port_count,
    "host_id": orm.Offer.machine_id,
    "machine_id": orm.Offer.machine_id,
    "dlperf": orm.Offer.dlperf,
    "score": orm.Offer.score,
    "cpu_cores_effective": orm.Offer.cpu_cores,
    "verification": case((orm.Offer.verified, "verified"), else_="unverified"),
}


def host_offers(host: orm.Host, gpus: list[orm.Gpu], book: PriceBook) -> list[dict[str, Any]]:
    """The offer rows of one host (empty unless it is ready, uncordoned and not draining)."""
    if host.status != HostStatus.READY or host.cordoned or host.draining or not gpus:
        return []
    facts = host.facts or {}
    open_to_all = takes_org(facts=facts, trusted=host.trusted, org_is_operator=False)
    total = len(gpus)
    by_type: dict[str, list[orm.Gpu]] = defaultdict(list)
    for gpu in gpus:
        by_type[gpu.gpu_key].append(gpu)
    cuda = _float(facts.get("cuda_version"))
    port_range = facts.get("port_range") or {}
    ports = (port_range.get("end", 0) - port_range.get("start", 0) + 1) if port_range else None
    rows = []
    for key, typed in by_type.items():
        typed.sort(key=lambda g: g.index)
        free = [g for g in typed if g.workload_id is None]
        price = book.cents_per_gpu_hour(key)
        sample = typed[0]
        vram = (
            sample.vram_mb if sample.vram_mb is not None else gpu_names.known_vram_mb(sample.name)
        )
        for n in bundle_sizes(len(free)):
            share = n / total
            cents = price * n
            rows.append(
                {
                    "id": encode_offer_id(
                        OfferRef(machine_id=host.pk, first_index=typed[0].index, num_gpus=n)
                    ),
                    "host_id": host.id,
                    "machine_id": host.pk,
                    "gpu_key": key,
                    "gpu_name": gpu_names.display_name(sample.name),
                    "num_gpus": n,
                    "gpu_ram": vram,
                    "gpu_total_ram": vram * n if vram is not None else None,
                    "cpu_cores": round(facts.get("cpu_cores", 0) * share, 2) or None,
                    "cpu_ram": int(facts.get("ram_mb", 0) * share) or None,
                    "disk_space": round(facts.get("disk_free_mb", 0) / 1024 * share, 1) or None,
                    "cents_per_hour": cents,
                    "dph_total": cents / 100,
                    "reliability": None,
                    "inet_up": host.inet_up_mbps,
                    "inet_down": host.inet_down_mbps,
                    "geolocation": host.geolocation,
                    "cuda_max_good": cuda,
                    "compute_cap": gpu_names.compute_cap(sample.name),
                    "driver_version": facts.get("driver_version"),
                    "verified": host.verified,
                    "rentable": True,
                    "rented": False,
                    "direct_port_count": ports,
                    "dlperf": None,
                    "score": None,
                    "public_ipaddr": host.address,
                    "open_to_all": open_to_all,
                }
            )
    return rows


def _float(value: object) -> float | None:
    try:
        return float(str(value)) if value is not None else None
    except ValueError:
        return None


async def refresh_host(session: AsyncSession, *, host: orm.Host) -> None:
    await session.execute(delete(orm.Offer).where(orm.Offer.host_id == host.id))
    gpus = list((await session.scalars(select(orm.Gpu).where(orm.Gpu.host_id == host.id))).all())
    rows = host_offers(host, gpus, await price_book.load(session))
    if rows:
        await session.execute(insert(orm.Offer), rows)


async def refresh_all(session: AsyncSession) -> None:
    """Rebuild every host's offers (after a price change), in bulk: one read of the hosts and
    one of the GPUs, one delete, batched inserts. (Host by host it was three statements per host,
    about 50 s for 10,000 hosts inside one write transaction; see bench/README.md.)"""
    book = await price_book.load(session)
    gpus: dict[str, list[orm.Gpu]] = defaultdict(list)
    for gpu in await session.scalars(select(orm.Gpu)):
        gpus[gpu.host_id].append(gpu)
    rows = [
        row
        for host in await session.scalars(select(orm.Host))
        for row in host_offers(host, gpus[host.id], book)
    ]
    await session.execute(delete(orm.Offer))
    for start in range(0, len(rows), _INSERT_BATCH):
        await session.execute(insert(orm.Offer), rows[start : start + _INSERT_BATCH])


def _condition(f: Filter) -> ColumnElement[bool]:
    spec = resolve_field(f.field)
    if not spec.reported:  # always NULL: only `eq null` holds
        return true() if f.value is None and f.op is Op.EQ else false()
    column = _COLUMNS[spec.name]
    if f.value is None:
        null_check: ColumnElement[bool] = column.is_(None) if f.op is Op.EQ else column.is_not(None)
        return null_check
    if isinstance(f.value, tuple):
        values = [comparable(spec, v) for v in f.value]
        values = [bool(v) if spec.kind.value == "bool" else v for v in values]
        clause: ColumnElement[bool] = column.in_(values)
        return clause if f.op is Op.IN else (column.is_not(None) & not_(clause))
    value: Any = comparable(spec, f.value)
    if spec.kind.value == "bool":
        value = bool(f.value)
    match f.op:
        case Op.EQ:
            return column == value  # type: ignore[no-any-return]
        case Op.NEQ:
            return column != value  # type: ignore[no-any-return]
        case Op.GT:
            return column > value  # type: ignore[no-any-return]
        case Op.GTE:
            return column >= value  # type: ignore[no-any-return]
        case Op.LT:
            return column < value  # type: ignore[no-any-return]
        case Op.LTE:
            return column <= value  # type: ignore[no-any-return]
    raise InvalidRequest(f"operator {f.op} is not supported for {f.field}", param=f.field)


def to_domain(row: orm.Offer) -> Offer:
    return Offer(**{f: getattr(row, f) for f in Offer.__slots__})


async def search(session: AsyncSession, *, query: OfferQuery, org_id: str) -> list[Offer]:
    """Offers ``org_id`` may rent: those of a host that cannot isolate (and is not trusted) are
    the operator's only (``core.hosts.takes_org``; ``open_to_all`` is that rule, kept per row)."""
    limit = query.limit if query.limit is not None else DEFAULT_LIMIT
    if limit > MAX_LIMIT:
        raise InvalidRequest(f"limit must be at most {MAX_LIMIT}", param="limit")
    stmt = select(orm.Offer)
    operator = await session.scalar(select(orm.Org.is_operator).where(orm.Org.id == org_id))
    if not operator:
        stmt = stmt.where(orm.Offer.open_to_all.is_(True))
    for f in query.filters:
        stmt = stmt.where(_condition(f))
    for order in query.order:
        spec = resolve_field(order.field)
        if not spec.reported:
            continue
        column = _COLUMNS[spec.name]
        ordered = column.desc() if order.direction is Direction.DESC else column.asc()
        stmt = stmt.order_by(ordered.nulls_last())
    stmt = stmt.order_by(orm.Offer.dph_total, orm.Offer.id).limit(limit)
    return [to_domain(row) for row in await session.scalars(stmt)]
