"""Organizations: create, read, rename, suspend and reactivate."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import Conflict, InvalidRequest, NotFound
from gpuyard.core.ids import is_id, new_id
from gpuyard.core.pagination import Page
from gpuyard.core.tenancy import Org, OrgStatus
from gpuyard.server import orm
from gpuyard.server.services import events
from gpuyard.server.services.pagination import paginate

_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def to_domain(row: orm.Org) -> Org:
    return Org(
        id=row.id,
        number=row.pk,
        name=row.name,
        slug=row.slug,
        status=OrgStatus(row.status),
        status_reason=row.status_reason,
        is_operator=row.is_operator,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].strip("-")
    return slug or "org"


async def _row(session: AsyncSession, org_id: str, *, for_update: bool = False) -> orm.Org:
    if not is_id(org_id, "org"):
        raise NotFound(f"organization {org_id} not found", code="org_not_found")
    stmt = select(orm.Org).where(orm.Org.id == org_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise NotFound(f"organization {org_id} not found", code="org_not_found")
    return row


async def create_org(
    session: AsyncSession,
    *,
    clock: Clock,
    name: str,
    slug: str | None = None,
    is_operator: bool = False,
) -> Org:
    name = name.strip()
    if not name:
        raise InvalidRequest("name must not be blank", param="name")
    if slug is not None and not _SLUG_RE.match(slug):
        raise InvalidRequest(
            "slug must be 1-64 lowercase letters, digits or '-', not starting or ending with '-'",
            param="slug",
        )
    wanted = slug or slugify(name)
    if await session.scalar(select(orm.Org.pk).where(orm.Org.slug == wanted)) is not None:
        if slug is not None:
            raise Conflict(f"slug {slug!r} is taken", code="slug_taken", param="slug")
        wanted = f"{wanted[:56]}-{new_id('org')[-6:]}"
    now = clock.now()
    row = orm.Org(
        id=new_id("org"),
        name=name,
        slug=wanted,
        status=OrgStatus.ACTIVE,
        is_operator=is_operator,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    await events.record(
        session,
        clock=clock,
        org_id=row.id,
        type="org.created",
        subject_id=row.id,
        data={"name": row.name, "slug": row.slug},
    )
    return to_domain(row)


async def get_org(session: AsyncSession, *, org_id: str) -> Org:
    return to_domain(await _row(session, org_id))


async def list_orgs(
    session: AsyncSession, *, status: OrgStatus | None, limit: int, cursor: str | None
) -> Page[Org]:
    stmt = select(orm.Org)
    if status is not None:
        stmt = stmt.where(orm.Org.status == status)
    return await paginate(
        session, stmt, model=orm.Org, limit=limit, cursor=cursor, convert=to_domain
    )


async def rename_org(session: AsyncSession, *, clock: Clock, org_id: str, name: str) -> Org:
    row = await _row(session, org_id, for_update=True)
    name = name.strip()
    if not name:
        raise InvalidRequest("name must not be blank", param="name")
    if name != row.name:
        row.name = name
        row.updated_at = clock.now()
        await events.record(
            session,
            clock=clock,
            org_id=row.id,
            type="org.updated",
            subject_id=row.id,
            data={"name": name},
        )
    return to_domain(row)


async def set_status(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    status: OrgStatus,
    reason: str | None = None,
) -> Org:
    row = await _row(session, org_id, for_update=True)
    if row.is_operator and status is OrgStatus.SUSPENDED:
        raise Conflict("the operator organization cannot be suspended", code="org_is_operator")
    if row.status != status:
        row.status = status
        row.status_reason = reason if status is OrgStatus.SUSPENDED else None
        row.updated_at = clock.now()
        kind = "org.suspended" if status is OrgStatus.SUSPENDED else "org.reactivated"
        await events.record(
            session,
            clock=clock,
            org_id=row.id,
            type=kind,
            subject_id=row.id,
            data={"reason": reason} if reason else {},
        )
    return to_domain(row)
