"""Turn a presented API key into a Principal, or say exactly why not."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.credentials import hash_secret, looks_like_api_key
from gpuyard.core.errors import PermissionDenied, Unauthenticated
from gpuyard.core.principal import Principal, Scope
from gpuyard.core.tenancy import ApiKeyStatus, OrgStatus
from gpuyard.server import orm
from gpuyard.server.services.api_keys import key_status

LAST_USED_RESOLUTION = timedelta(minutes=1)


async def authenticate(
    session: AsyncSession, *, clock: Clock, secret: str | None
) -> tuple[Principal, bool]:
    """The principal for ``secret`` and whether its ``last_used_at`` is stale enough to touch."""
    if not secret:
        raise Unauthenticated(
            "missing API key: send 'Authorization: Bearer vl_…'", code="missing_api_key"
        )
    if not looks_like_api_key(secret):
        raise Unauthenticated(
            "malformed API key: keys look like vl_ followed by 43 or more characters",
            code="invalid_api_key",
        )
    row = await session.execute(
        select(orm.ApiKey, orm.Org.status, orm.Org.status_reason)
        .join(orm.Org, orm.Org.id == orm.ApiKey.org_id)
        .where(orm.ApiKey.secret_hash == hash_secret(secret))
    )
    found = row.first()
    if found is None:
        raise Unauthenticated("invalid API key", code="invalid_api_key")
    key, org_status, reason = found
    now = clock.now()
    status = key_status(key, now)
    if status is ApiKeyStatus.REVOKED:
        raise Unauthenticated(f"API key {key.id} has been revoked", code="api_key_revoked")
    if status is ApiKeyStatus.EXPIRED:
        raise Unauthenticated(f"API key {key.id} has expired", code="api_key_expired")
    if org_status == OrgStatus.SUSPENDED:
        detail = f": {reason}" if reason else ""
        raise PermissionDenied(
            f"organization {key.org_id} is suspended{detail}; contact the operator",
            code="org_suspended",
        )
    principal = Principal(
        key_id=key.id,
        org_id=key.org_id,
        scopes=frozenset(Scope(s) for s in key.scopes),
        secret_hash=key.secret_hash,
        rpm_limit=key.rpm_limit,
        tpm_limit=key.tpm_limit,
    )
    stale = key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION
    return principal, stale


async def touch_last_used(session: AsyncSession, *, clock: Clock, key_id: str) -> None:
    await session.execute(
        update(orm.ApiKey).where(orm.ApiKey.id == key_id).values(last_used_at=clock.now())
    )
