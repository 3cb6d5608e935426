"""Webhook endpoints of an org: create (the secret shown once), list, get, update, delete, rotate
the secret (the old one signs too for a grace period), send a test event; their deliveries and
attempts; redeliver one event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import InvalidRequest, NotFound
from gpuyard.core.event_types import check_filter
from gpuyard.core.ids import new_id
from gpuyard.core.pagination import Page
from gpuyard.core.webhook_signing import new_secret
from gpuyard.server import orm
from gpuyard.server.services import events, wakeups
from gpuyard.server.services.pagination import paginate
from gpuyard.server.services.refs import by_ref
from gpuyard.server.services.webhook_targets import check_target

MAX_ENDPOINTS = 20
MAX_FILTERS = 50
ROTATION_GRACE = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    org_id: str
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    secret: str | None = None  # only when just made or rotated


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    status_code: int | None
    error: str | None
    duration_ms: int
    created_at: datetime


def _endpoint(row: orm.WebhookEndpoint, *, secret: str | None = None) -> Endpoint:
    return Endpoint(
        id=row.id,
        org_id=row.org_id,
        url=row.url,
        description=row.description,
        event_types=list(row.event_types or []),
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        secret=secret,
    )


def _delivery(row: orm.WebhookDelivery) -> Delivery:
    return Delivery(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=row.event_type,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_run_at if row.status == "pending" else None,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


def check_filters(event_types: list[str]) -> list[str]:
    if len(event_types) > MAX_FILTERS:
        raise InvalidRequest(f"at most {MAX_FILTERS} event types", param="event_types")
    for value in event_types:
        if (why := check_filter(value)) is not None:
            raise InvalidRequest(why, code="unknown_event_type", param="event_types")
    return sorted(set(event_types))


async def _row(session: AsyncSession, org_id: str, ref: str) -> orm.WebhookEndpoint:
    cond = by_ref(orm.WebhookEndpoint, ref, "wh")
    row = None
    if cond is not None:
        row = await session.scalar(
            select(orm.WebhookEndpoint).where(cond, orm.WebhookEndpoint.org_id == org_id)
        )
    if row is None:
        raise NotFound(f"webhook endpoint {ref} not found", code="webhook_not_found")
    return row


async def create_endpoint(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    url: str,
    event_types: list[str],
    description: str | None,
    allow_private: bool,
) -> Endpoint:
    filters = check_filters(event_types)
    await check_target(url, allow_private=allow_private)
    count = len(
        (
            await session.scalars(
                select(orm.WebhookEndpoint.pk).where(orm.WebhookEndpoint.org_id == org_id)
            )
        ).all()
    )
    if count >= MAX_ENDPOINTS:
        raise InvalidRequest(f"an org has at most {MAX_ENDPOINTS} webhook endpoints")
    now = clock.now()
    secret = new_secret()
    row = orm.WebhookEndpoint(
        id=new_id("wh"),
        org_id=org_id,
        url=url,
        description=description,
        event_types=filters,
        secret=secret,
        enabled=True,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return _endpoint(row, secret=secret)


async def list_endpoints(
    session: AsyncSession, *, org_id: str, limit: int, cursor: str | None
) -> Page[Endpoint]:
    stmt = select(orm.WebhookEndpoint).where(orm.WebhookEndpoint.org_id == org_id)
    return await paginate(
        session, stmt, model=orm.WebhookEndpoint, limit=limit, cursor=cursor, convert=_endpoint
    )


async def get_endpoint(session: AsyncSession, *, org_id: str, ref: str) -> Endpoint:
    return _endpoint(await _row(session, org_id, ref))


async def update_endpoint(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    ref: str,
    changes: dict[str, Any],
    allow_private: bool,
) -> Endpoint:
    """Change url, event_types, description or enabled; enabling again clears the failure
    record, and the endpoint receives events from then on."""
    row = await _row(session, org_id, ref)
    if "url" in changes:
        await check_target(changes["url"], allow_private=allow_private)
        row.url = changes["url"]
    if "event_types" in changes:
        row.event_types = check_filters(changes["event_types"])
    if "description" in changes:
        row.description = changes["description"]
    if "enabled" in changes and changes["enabled"] != row.enabled:
        row.enabled = changes["enabled"]
        row.disabled_reason = None if row.enabled else "disabled by the org"
        row.failing_since = None
    row.updated_at = clock.now()
    await session.flush()
    return _endpoint(row)


async def delete_endpoint(session: AsyncSession, *, org_id: str, ref: str) -> None:
    row = await _row(session, org_id, ref)
    deliveries = select(orm.WebhookDelivery.id).where(orm.WebhookDelivery.endpoint_id == row.id)
    await session.execute(
        delete(orm.WebhookAttempt).where(orm.WebhookAttempt.delivery_id.in_(deliveries))
    )
    await session.execute(
        delete(orm.WebhookDelivery).where(orm.WebhookDelivery.endpoint_id == row.id)
    )
    await session.execute(delete(orm.WebhookEndpoint).where(orm.WebhookEndpoint.pk == row.pk))


async def rotate_secret(session: AsyncSession, *, clock: Clock, org_id: str, ref: str) -> Endpoint:
    """A new secret; the old one still signs (both signatures sent) for ``ROTATION_GRACE``."""
    row = await _row(session, org_id, ref)
    now = clock.now()
    secret = new_secret()
    row.previous_secret = row.secret
    row.previous_secret_until = now + ROTATION_GRACE
    row.secret = secret
    row.updated_at = now
    await session.flush()
    return _endpoint(row, secret=secret)


async def send_test(session: AsyncSession, *, clock: Clock, org_id: str, ref: str) -> Delivery:
    """A ``webhook.test`` event, delivered to this endpoint only (whatever its filters)."""
    row = await _row(session, org_id, ref)
    event = await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="webhook.test",
        subject_id=row.id,
        data={"endpoint_id": row.id, "message": "a test event from gpuyard"},
        deliver_to=row.id,
    )
    found = await session.scalar(
        select(orm.WebhookDelivery).where(orm.WebhookDelivery.event_id == event.id)
    )
    assert found is not None
    return _delivery(found)


async def list_deliveries(
    session: AsyncSession,
    *,
    org_id: str,
    ref: str,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> Page[Delivery]:
    row = await _row(session, org_id, ref)
    stmt = select(orm.WebhookDelivery).where(orm.WebhookDelivery.endpoint_id == row.id)
    if status is not None:
        stmt = stmt.where(orm.WebhookDelivery.status == status)
    return await paginate(
        session, stmt, model=orm.WebhookDelivery, limit=limit, cursor=cursor, convert=_delivery
    )


async def _delivery_row(
    session: AsyncSession, org_id: str, ref: str, delivery_id: str
) -> orm.WebhookDelivery:
    endpoint = await _row(session, org_id, ref)
    row = await session.scalar(
        select(orm.WebhookDelivery).where(
            orm.WebhookDelivery.id == delivery_id,
            orm.WebhookDelivery.endpoint_id == endpoint.id,
        )
    )
    if row is None:
        raise NotFound(f"delivery {delivery_id} not found", code="delivery_not_found")
    return row


async def list_attempts(
    session: AsyncSession, *, org_id: str, ref: str, delivery_id: str
) -> tuple[Delivery, list[Attempt]]:
    row = await _delivery_row(session, org_id, ref, delivery_id)
    found = await session.scalars(
        select(orm.WebhookAttempt)
        .where(orm.WebhookAttempt.delivery_id == row.id)
        .order_by(orm.WebhookAttempt.created_at, orm.WebhookAttempt.pk)
    )
    return _delivery(row), [
        Attempt(a.number, a.status_code, a.error, a.duration_ms, a.created_at) for a in found
    ]


async def redeliver(
    session: AsyncSession, *, clock: Clock, org_id: str, ref: str, delivery_id: str
) -> Delivery:
    """Send the event again now, with a fresh schedule (same ``webhook-id``: the receiver can
    tell it is the same event)."""
    row = await _delivery_row(session, org_id, ref, delivery_id)
    row.status = "pending"
    row.attempts = 0
    row.updated_at = clock.now()
    wakeups.wake(session, row)
    await session.flush()
    return _delivery(row)
