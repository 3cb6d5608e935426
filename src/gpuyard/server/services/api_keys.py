"""API keys: issue, list, read and revoke. Secrets are shown once and stored as SHA-256."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.credentials import display_prefix, hash_secret, looks_like_api_key, new_api_key
from gpuyard.core.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from gpuyard.core.ids import new_id
from gpuyard.core.key_strength import weakness
from gpuyard.core.pagination import Page
from gpuyard.core.principal import Principal, Scope, granted
from gpuyard.core.tenancy import ApiKey, ApiKeyStatus, NewApiKey
from gpuyard.server import orm
from gpuyard.server.services import events
from gpuyard.server.services.pagination import paginate
from gpuyard.server.services.refs import by_ref


def key_status(row: orm.ApiKey, now: datetime | None = None) -> ApiKeyStatus:
    if row.revoked_at is not None:
        return ApiKeyStatus.REVOKED
    if row.expired_at is not None or (
        now is not None and row.expires_at is not None and row.expires_at <= now
    ):
        return ApiKeyStatus.EXPIRED
    return ApiKeyStatus.ACTIVE


def to_domain(row: orm.ApiKey, now: datetime | None = None) -> ApiKey:
    return ApiKey(
        id=row.id,
        number=row.pk,
        org_id=row.org_id,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(Scope(s) for s in row.scopes),
        status=key_status(row, now),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
    )


async def create_key(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    name: str,
    scopes: list[Scope],
    expires_at: datetime | None = None,
    created_by: Principal | None = None,
    secret: str | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
) -> NewApiKey:
    """Issue a key. ``created_by`` None means the system (bootstrap, operator first key)."""
    org = await session.scalar(select(orm.Org).where(orm.Org.id == org_id))
    if org is None:
        raise NotFound(f"organization {org_id} not found", code="org_not_found")
    wanted = frozenset(scopes)
    if not wanted:
        raise InvalidRequest("scopes must name at least one scope", param="scopes")
    if Scope.OPERATOR in wanted and not org.is_operator:
        raise InvalidRequest(
            "the operator scope exists only in the operator organization", param="scopes"
        )
    if created_by is not None and not wanted <= granted(created_by.scopes):
        raise PermissionDenied(
            "a key can only grant scopes it holds itself", code="scope_escalation"
        )
    now = clock.now()
    if expires_at is not None and expires_at <= now:
        raise InvalidRequest("expires_at must be in the future", param="expires_at")
    if secret is None:
        secret = new_api_key()
    elif not looks_like_api_key(secret):
        raise InvalidRequest("a key must be vl_ followed by at least 43 url-safe characters")
    elif (problem := weakness(secret)) is not None:
        raise InvalidRequest(f"a chosen key must be as random as a generated one: {problem}")
    digest = hash_secret(secret)
    if await session.scalar(select(orm.ApiKey.pk).where(orm.ApiKey.secret_hash == digest)):
        raise Conflict("that key is already in use", code="key_exists")
    row = orm.ApiKey(
        id=new_id("key"),
        org_id=org_id,
        name=name.strip() or "unnamed",
        prefix=display_prefix(secret),
        secret_hash=digest,
        scopes=sorted(s.value for s in wanted),
        created_at=now,
        created_by=created_by.key_id if created_by else None,
        expires_at=expires_at,
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
    )
    session.add(row)
    await session.flush()
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="api_key.created",
        subject_id=row.id,
        data={"name": row.name, "scopes": row.scopes, "prefix": row.prefix},
    )
    return NewApiKey(key=to_domain(row, now), secret=secret)


async def _row(session: AsyncSession, org_id: str, key_id: str) -> orm.ApiKey:
    """By id (``key_…``) or, for the Vast dialect, by integer number."""
    cond = by_ref(orm.ApiKey, key_id, "key")
    row = None
    if cond is not None:
        row = await session.scalar(select(orm.ApiKey).where(cond, orm.ApiKey.org_id == org_id))
    if row is None:
        raise NotFound(f"API key {key_id} not found", code="api_key_not_found")
    return row


async def get_key(session: AsyncSession, *, clock: Clock, org_id: str, key_id: str) -> ApiKey:
    return to_domain(await _row(session, org_id, key_id), clock.now())


async def list_keys(
    session: AsyncSession, *, clock: Clock, org_id: str, limit: int, cursor: str | None
) -> Page[ApiKey]:
    now = clock.now()
    stmt = select(orm.ApiKey).where(orm.ApiKey.org_id == org_id)
    return await paginate(
        session,
        stmt,
        model=orm.ApiKey,
        limit=limit,
        cursor=cursor,
        convert=lambda row: to_domain(row, now),
    )


async def revoke_key(session: AsyncSession, *, clock: Clock, org_id: str, key_id: str) -> ApiKey:
    """Revoke a key; revoking a revoked key changes nothing and answers the same."""
    row = await _row(session, org_id, key_id)
    now = clock.now()
    if row.revoked_at is not None:
        return to_domain(row, now)
    if Scope.OPERATOR in row.scopes and await _last_operator_key(session, row, now):
        raise Conflict(
            "this is the last active operator key; create another before revoking it",
            code="last_operator_key",
        )
    row.revoked_at = now
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="api_key.revoked",
        subject_id=row.id,
        data={"name": row.name, "prefix": row.prefix},
    )
    return to_domain(row, now)


async def _last_operator_key(session: AsyncSession, row: orm.ApiKey, now: datetime) -> bool:
    others = await session.scalars(
        select(orm.ApiKey).where(
            orm.ApiKey.org_id == row.org_id,
            orm.ApiKey.id != row.id,
            orm.ApiKey.revoked_at.is_(None),
        )
    )
    return not any(
        Scope.OPERATOR in k.scopes and key_status(k, now) is ApiKeyStatus.ACTIVE for k in others
    )
