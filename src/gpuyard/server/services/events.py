"""The event log. ``record`` is the one way to write an event: call it inside the transaction that
makes the change, so an event exists exactly when its change committed (the outbox that webhook
delivery reads)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import InvalidRequest
from gpuyard.core.ids import new_id
from gpuyard.core.pagination import Page
from gpuyard.core.tenancy import Event
from gpuyard.server import orm
from gpuyard.server.services import webhook_outbox
from gpuyard.server.services.pagination import paginate


async def record(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    type: str,
    subject_id: str | None = None,
    data: dict[str, Any] | None = None,
    deliver_to: str | None = None,
) -> Event:
    """Record an event; every webhook endpoint of the org that wants it gets a delivery in this
    transaction (``deliver_to``: that endpoint only, whatever its filters: a test event)."""
    row = orm.Event(
        id=new_id("evt"),
        org_id=org_id,
        type=type,
        subject_id=subject_id,
        data=data or {},
        created_at=clock.now(),
    )
    session.add(row)
    await session.flush()
    await webhook_outbox.fan_out(
        session,
        org_id=org_id,
        event_id=row.id,
        event_type=type,
        now=row.created_at,
        only_endpoint=deliver_to,
    )
    return to_domain(row)


def to_domain(row: orm.Event) -> Event:
    return Event(
        id=row.id,
        org_id=row.org_id,
        type=row.type,
        subject_id=row.subject_id,
        data=dict(row.data),
        created_at=row.created_at,
    )


async def list_events(
    session: AsyncSession,
    *,
    org_id: str,
    types: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int,
    cursor: str | None,
) -> Page[Event]:
    if since and until and since > until:
        raise InvalidRequest("since must not be after until", param="since")
    stmt = select(orm.Event).where(orm.Event.org_id == org_id)
    if types:
        stmt = stmt.where(orm.Event.type.in_(types))
    if since:
        stmt = stmt.where(orm.Event.created_at >= since)
    if until:
        stmt = stmt.where(orm.Event.created_at < until)
    return await paginate(
        session, stmt, model=orm.Event, limit=limit, cursor=cursor, convert=to_domain
    )
