"""Fan-out of events to webhook endpoints, inside the transaction that records the event: a
delivery row exists exactly when its event committed, so none is lost and none is sent for a
change that rolled back. The dispatcher (controllers/webhook_dispatch.py) sends them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.event_types import matches
from gpuyard.core.ids import new_id
from gpuyard.server import orm
from gpuyard.server.services import wakeups


async def fan_out(
    session: AsyncSession,
    *,
    org_id: str,
    event_id: str,
    event_type: str,
    now: datetime,
    only_endpoint: str | None = None,
) -> int:
    """A pending delivery of the event for each enabled endpoint of the org that wants it."""
    stmt = select(orm.WebhookEndpoint.id, orm.WebhookEndpoint.event_types).where(
        orm.WebhookEndpoint.org_id == org_id, orm.WebhookEndpoint.enabled.is_(True)
    )
    if only_endpoint is not None:
        stmt = stmt.where(orm.WebhookEndpoint.id == only_endpoint)
    rows = [
        {
            "id": new_id("dlv"),
            "org_id": org_id,
            "endpoint_id": endpoint_id,
            "event_id": event_id,
            "event_type": event_type,
            "status": "pending",
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for endpoint_id, filters in (await session.execute(stmt)).all()
        if only_endpoint is not None or matches(list(filters or []), event_type)
    ]
    if rows:
        await session.execute(insert(orm.WebhookDelivery), rows)
        wakeups.note_table(session, orm.WebhookDelivery)
    return len(rows)
