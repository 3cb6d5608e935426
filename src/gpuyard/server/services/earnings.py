"""What the fleet's GPU hosts earned (``vastai show earnings``), from the ledger's usage entries.

Every host belongs to the operator, so only the operator org has earnings: what the other orgs
were charged for GPU time and for disk kept (``usage`` entries; the operator's own use is money
it would pay itself, and token charges are not a machine's), by UTC day and by machine (the
host's integer id, which each workload's charge records: instances, cluster replicas and
serverless workers alike). Charges without a machine (those of replicas and workers that ended
before charges recorded it) are earned by the fleet as a whole (``unattributed``), in the totals
and the days but in no machine's line.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.errors import InvalidRequest, NotFound
from gpuyard.server import orm
from gpuyard.server.services import orgs

DISK_KINDS = ("instance_disk", "worker_disk")
MAX_DAYS = 3660  # ten years in one report


@dataclass(slots=True)
class Earned:
    gpu_cents: int = 0
    disk_cents: int = 0

    def add(self, resource_kind: str, cents: int) -> None:
        if resource_kind in DISK_KINDS:
            self.disk_cents += cents
        else:
            self.gpu_cents += cents


@dataclass(frozen=True, slots=True)
class Earnings:
    first_day: date
    last_day: date
    total: Earned = field(default_factory=Earned)
    per_machine: dict[int, Earned] = field(default_factory=dict)  # by host number, ascending
    per_day: dict[date, Earned] = field(default_factory=dict)  # ascending
    unattributed: Earned = field(default_factory=Earned)  # charges that recorded no machine


def _window(first_day: date, last_day: date) -> tuple[datetime, datetime]:
    if first_day > last_day:
        raise InvalidRequest("the start day must not be after the end day", param="sday")
    if (last_day - first_day).days >= MAX_DAYS:
        raise InvalidRequest(f"a report covers at most {MAX_DAYS} days", param="sday")
    start = datetime.combine(first_day, time(), tzinfo=UTC)
    return start, datetime.combine(last_day, time(), tzinfo=UTC) + timedelta(days=1)


async def earnings(
    session: AsyncSession,
    *,
    org_id: str,
    first_day: date,
    last_day: date,
    machine: int | None = None,
) -> Earnings:
    """The org's hosts' earnings over the UTC days ``first_day``..``last_day`` (both included),
    of every machine or of ``machine`` only (404 for a machine the org does not have)."""
    since, until = _window(first_day, last_day)
    org = await orgs.get_org(session, org_id=org_id)
    if machine is not None:
        host = None
        if org.is_operator and 0 < machine < 2**63:
            host = await session.scalar(select(orm.Host.pk).where(orm.Host.pk == machine))
        if host is None:
            raise NotFound(f"machine {machine} not found", code="machine_not_found")
    found = Earnings(first_day, last_day)
    if not org.is_operator:
        return found  # it has no hosts
    e = orm.LedgerEntry
    payers = select(orm.Org.id).where(orm.Org.is_operator.is_(False))
    stmt = (
        select(e.day, e.resource_kind, e.machine_id, func.sum(e.amount_cents))
        .where(
            e.org_id.in_(payers),
            e.kind == "usage",
            e.created_at >= since,
            e.created_at < until,
        )
        .group_by(e.day, e.resource_kind, e.machine_id)
    )
    if machine is not None:
        stmt = stmt.where(e.machine_id == machine)
    machines: dict[int, Earned] = defaultdict(Earned)
    days: dict[date, Earned] = defaultdict(Earned)
    for day, kind, number, charged in (await session.execute(stmt)).all():
        cents = -int(charged or 0)
        if not cents:
            continue
        found.total.add(kind or "", cents)
        days[date.fromisoformat(day)].add(kind or "", cents)
        if number is None:
            found.unattributed.add(kind or "", cents)
        else:
            machines[int(number)].add(kind or "", cents)
    found.per_machine.update(sorted(machines.items()))
    found.per_day.update(sorted(days.items()))
    return found
