"""An org's SSH public keys; they are given to every instance the org starts afterwards."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import Conflict, NotFound
from gpuyard.core.ids import new_id
from gpuyard.core.pagination import Page
from gpuyard.core.ssh_keys import SshKey, parse_public_key
from gpuyard.server import orm
from gpuyard.server.services import events
from gpuyard.server.services.pagination import paginate
from gpuyard.server.services.refs import by_ref


def to_domain(row: orm.SshKey) -> SshKey:
    return SshKey(
        id=row.id,
        number=row.pk,
        org_id=row.org_id,
        name=row.name,
        public_key=row.public_key,
        fingerprint=row.fingerprint,
        created_at=row.created_at,
    )


async def create_key(
    session: AsyncSession, *, clock: Clock, org_id: str, public_key: str, name: str | None
) -> SshKey:
    parsed = parse_public_key(public_key)
    exists = await session.scalar(
        select(orm.SshKey.id).where(
            orm.SshKey.org_id == org_id, orm.SshKey.fingerprint == parsed.fingerprint
        )
    )
    if exists:
        raise Conflict(f"this key is already registered as {exists}", code="ssh_key_exists")
    row = orm.SshKey(
        id=new_id("ssh"),
        org_id=org_id,
        name=(name or parsed.comment or parsed.type).strip()[:200],
        public_key=parsed.line,
        fingerprint=parsed.fingerprint,
        created_at=clock.now(),
    )
    session.add(row)
    await session.flush()
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="ssh_key.created",
        subject_id=row.id,
        data={"name": row.name, "fingerprint": row.fingerprint},
    )
    return to_domain(row)


async def _row(session: AsyncSession, org_id: str, key_ref: str) -> orm.SshKey:
    """By id (``ssh_…``) or, for the Vast dialect, by integer number."""
    cond = by_ref(orm.SshKey, key_ref, "ssh")
    row = None
    if cond is not None:
        row = await session.scalar(select(orm.SshKey).where(cond, orm.SshKey.org_id == org_id))
    if row is None:
        raise NotFound(f"SSH key {key_ref} not found", code="ssh_key_not_found")
    return row


async def get_key(session: AsyncSession, *, org_id: str, key_ref: str) -> SshKey:
    return to_domain(await _row(session, org_id, key_ref))


async def list_keys(
    session: AsyncSession, *, org_id: str, limit: int, cursor: str | None
) -> Page[SshKey]:
    stmt = select(orm.SshKey).where(orm.SshKey.org_id == org_id)
    return await paginate(
        session, stmt, model=orm.SshKey, limit=limit, cursor=cursor, convert=to_domain
    )


async def all_public_keys(session: AsyncSession, *, org_id: str) -> list[str]:
    rows = await session.scalars(
        select(orm.SshKey.public_key).where(orm.SshKey.org_id == org_id).order_by(orm.SshKey.pk)
    )
    return list(rows.all())


async def delete_key(session: AsyncSession, *, clock: Clock, org_id: str, key_ref: str) -> SshKey:
    row = await _row(session, org_id, key_ref)
    key = to_domain(row)
    await session.delete(row)
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="ssh_key.deleted",
        subject_id=row.id,
        data={"name": row.name, "fingerprint": row.fingerprint},
    )
    return key
