"""Join tokens: single-use secrets the operator hands to a new host's agent."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.agent_protocol import JOIN_TOKEN_PREFIX
from gpuyard.core.clock import Clock
from gpuyard.core.credentials import hash_secret
from gpuyard.core.errors import InvalidRequest, NotFound, Unauthenticated
from gpuyard.core.hosts import JoinToken, NewJoinToken
from gpuyard.core.ids import is_id, new_id
from gpuyard.core.pagination import Page
from gpuyard.server import orm
from gpuyard.server.services.pagination import paginate


def _status(row: orm.JoinToken, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.used_at is not None:
        return "used"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def to_domain(row: orm.JoinToken, now: datetime) -> JoinToken:
    return JoinToken(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        status=_status(row, now),
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
        used_by_host=row.used_by_host,
        revoked_at=row.revoked_at,
    )


async def create(
    session: AsyncSession, *, clock: Clock, name: str, expires_at: datetime | None
) -> NewJoinToken:
    now = clock.now()
    if expires_at is not None and expires_at <= now:
        raise InvalidRequest("expires_at must be in the future", param="expires_at")
    secret = JOIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = orm.JoinToken(
        id=new_id("jt"),
        name=name.strip() or "host",
        token_hash=hash_secret(secret),
        prefix=secret[:12],
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return NewJoinToken(token=to_domain(row, now), secret=secret)


async def list_tokens(
    session: AsyncSession, *, clock: Clock, limit: int, cursor: str | None
) -> Page[JoinToken]:
    now = clock.now()
    return await paginate(
        session,
        select(orm.JoinToken),
        model=orm.JoinToken,
        limit=limit,
        cursor=cursor,
        convert=lambda r: to_domain(r, now),
    )


async def revoke(session: AsyncSession, *, clock: Clock, token_id: str) -> JoinToken:
    row = None
    if is_id(token_id, "jt"):
        row = await session.scalar(select(orm.JoinToken).where(orm.JoinToken.id == token_id))
    if row is None:
        raise NotFound(f"join token {token_id} not found", code="join_token_not_found")
    if row.revoked_at is None and row.used_at is None:
        row.revoked_at = clock.now()
    return to_domain(row, clock.now())


async def consume(session: AsyncSession, *, clock: Clock, secret: str, host_id: str) -> None:
    """Spend a token for ``host_id``; a clear 401 when it cannot be used."""
    row = await session.scalar(
        select(orm.JoinToken)
        .where(orm.JoinToken.token_hash == hash_secret(secret))
        .with_for_update()
    )
    now = clock.now()
    if row is None:
        raise Unauthenticated("unknown join token", code="invalid_join_token")
    status = _status(row, now)
    if status != "active":
        raise Unauthenticated(
            f"join token {row.id} is {status}; ask the operator for a new one",
            code=f"join_token_{status}",
        )
    row.used_at = now
    row.used_by_host = host_id
