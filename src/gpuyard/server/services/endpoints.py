"""Serverless endpoints: create, read, change and delete. The autoscaler
(controllers/autoscaler.py) brings their workers up and down.

An endpoint is named by its opaque id (``ep_…``) or, in the Vast dialect, its integer number.
Its own ``api_key`` (``ep-…``) is what ``/route/`` takes, so a client that only routes never
holds an org key. Deleting an endpoint marks it deleting; the autoscaler drains its workers
(no new requests, the ones in flight finish) and removes them, then the row stays as deleted.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, fields, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.autoscaling import EndpointKnobs
from gpuyard.core.clock import Clock
from gpuyard.core.errors import Conflict, InvalidRequest, NotFound
from gpuyard.core.ids import new_id
from gpuyard.core.pagination import Page
from gpuyard.core.serverless import Endpoint, EndpointState, check_knobs
from gpuyard.server import orm
from gpuyard.server.services import events, wakeups
from gpuyard.server.services.pagination import paginate
from gpuyard.server.services.refs import by_ref

KNOB_NAMES = tuple(f.name for f in fields(EndpointKnobs))
MAX_NAME = 200


def to_domain(row: orm.Endpoint) -> Endpoint:
    return Endpoint(
        id=row.id,
        number=row.pk,
        org_id=row.org_id,
        name=row.name,
        api_key=row.api_key,
        knobs=EndpointKnobs(**{name: getattr(row, name) for name in KNOB_NAMES}),
        state=EndpointState(row.state),
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_request_at=row.last_request_at,
        deleting=row.deleted_at is not None,
    )


def _check_name(name: str | None) -> str:
    if name is None or not name.strip():
        raise InvalidRequest("endpoint_name is required", param="endpoint_name")
    if len(name) > MAX_NAME or any(not c.isprintable() for c in name):
        raise InvalidRequest(
            f"endpoint_name must be 1-{MAX_NAME} printable characters", param="endpoint_name"
        )
    return name


def _state(value: object) -> EndpointState:
    try:
        return EndpointState(str(value))
    except ValueError:
        raise InvalidRequest(
            "endpoint_state must be one of active, suspended, stopped", param="endpoint_state"
        ) from None


async def _name_free(session: AsyncSession, org_id: str, name: str, but: str | None) -> None:
    taken = await session.scalar(
        select(orm.Endpoint.id).where(
            orm.Endpoint.org_id == org_id,
            orm.Endpoint.name == name,
            orm.Endpoint.deleted_at.is_(None),
        )
    )
    if taken and taken != but:
        raise Conflict(
            f"an endpoint named {name!r} exists ({taken})",
            code="endpoint_name_taken",
            param="endpoint_name",
        )


async def row_of(
    session: AsyncSession, *, org_id: str, ref: str | int, lock: bool = False
) -> orm.Endpoint:
    """The live endpoint ``ref`` names in ``org_id`` (404 otherwise, another org's too)."""
    cond = by_ref(orm.Endpoint, str(ref), "ep")
    row = None
    if cond is not None:
        stmt = select(orm.Endpoint).where(
            cond, orm.Endpoint.org_id == org_id, orm.Endpoint.deleted_at.is_(None)
        )
        row = await session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise NotFound(f"endpoint {ref} not found", code="endpoint_not_found")
    return row


async def row_named(session: AsyncSession, *, org_id: str, name: str) -> orm.Endpoint:
    row = await session.scalar(
        select(orm.Endpoint).where(
            orm.Endpoint.org_id == org_id,
            orm.Endpoint.name == name,
            orm.Endpoint.deleted_at.is_(None),
        )
    )
    if row is None:
        raise NotFound(f"no endpoint named {name!r}", code="endpoint_not_found")
    return row


async def create_endpoint(
    session: AsyncSession, *, clock: Clock, org_id: str, name: str | None, knobs: EndpointKnobs
) -> Endpoint:
    name = _check_name(name)
    check_knobs(knobs)
    await _name_free(session, org_id, name, None)
    now = clock.now()
    row = orm.Endpoint(
        id=new_id("ep"),
        org_id=org_id,
        name=name,
        api_key="ep-" + secrets.token_urlsafe(24),
        state=EndpointState.ACTIVE.value,
        created_at=now,
        updated_at=now,
        **asdict(knobs),
    )
    session.add(row)
    wakeups.wake(session, row)
    await session.flush()
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="endpoint.created",
        subject_id=row.id,
        data={"name": name, **asdict(knobs)},
    )
    return to_domain(row)


async def get_endpoint(session: AsyncSession, *, org_id: str, ref: str | int) -> Endpoint:
    return to_domain(await row_of(session, org_id=org_id, ref=ref))


async def list_endpoints(
    session: AsyncSession, *, org_id: str, limit: int, cursor: str | None
) -> Page[Endpoint]:
    stmt = select(orm.Endpoint).where(
        orm.Endpoint.org_id == org_id, orm.Endpoint.deleted_at.is_(None)
    )
    return await paginate(
        session, stmt, model=orm.Endpoint, limit=limit, cursor=cursor, convert=to_domain
    )


async def update_endpoint(
    session: AsyncSession, *, clock: Clock, org_id: str, ref: str | int, changes: dict[str, Any]
) -> Endpoint:
    """Change what ``changes`` names (a ``None`` value means unchanged, as Vast's PUT)."""
    row = await row_of(session, org_id=org_id, ref=ref, lock=True)
    given = {k: v for k, v in changes.items() if v is not None}
    current = to_domain(row)
    knobs = replace(current.knobs, **{k: v for k, v in given.items() if k in KNOB_NAMES})
    check_knobs(knobs)
    if "endpoint_name" in given and given["endpoint_name"] != row.name:
        row.name = _check_name(given["endpoint_name"])
        await _name_free(session, org_id, row.name, row.id)
    if "endpoint_state" in given:
        row.state = _state(given["endpoint_state"]).value
    for name, value in asdict(knobs).items():
        setattr(row, name, value)
    row.updated_at = clock.now()
    wakeups.wake(session, row)
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="endpoint.updated",
        subject_id=row.id,
        data={"changed": sorted(given)},
    )
    return to_domain(row)


async def delete_endpoint(
    session: AsyncSession, *, clock: Clock, org_id: str, ref: str | int
) -> Endpoint:
    """The endpoint and its workergroups are gone for clients at once; its workers drain."""
    row = await row_of(session, org_id=org_id, ref=ref, lock=True)
    now = clock.now()
    row.deleted_at = row.updated_at = now
    groups = await session.scalars(
        select(orm.Workergroup).where(
            orm.Workergroup.endpoint_id == row.id, orm.Workergroup.deleted_at.is_(None)
        )
    )
    for group in groups:
        group.deleted_at = group.updated_at = now
    wakeups.wake(session, row)
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="endpoint.deleting",
        subject_id=row.id,
        data={"name": row.name},
    )
    return to_domain(row)
