"""First start: make sure the operator org and an operator key exist."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.credentials import hash_secret
from gpuyard.core.principal import Scope
from gpuyard.core.tenancy import Org
from gpuyard.server import orm
from gpuyard.server.services import api_keys, orgs

OPERATOR_ORG_NAME = "Operator"


@dataclass(frozen=True, slots=True)
class Bootstrap:
    org: Org
    new_key: str | None  # the operator key secret, when this call created one


async def ensure_operator(
    session: AsyncSession, *, clock: Clock, admin_key: str | None
) -> Bootstrap:
    row = await session.scalar(select(orm.Org).where(orm.Org.is_operator.is_(True)))
    if row is None:
        org = await orgs.create_org(
            session, clock=clock, name=OPERATOR_ORG_NAME, slug="operator", is_operator=True
        )
    else:
        org = orgs.to_domain(row)
        if admin_key is None:
            return Bootstrap(org=org, new_key=None)
        existing = await session.scalar(
            select(orm.ApiKey).where(orm.ApiKey.secret_hash == hash_secret(admin_key))
        )
        if existing is not None:
            return Bootstrap(org=org, new_key=None)
    issued = await api_keys.create_key(
        session,
        clock=clock,
        org_id=org.id,
        name="operator (GPUYARD_ADMIN_KEY)" if admin_key else "operator",
        scopes=[Scope.OPERATOR],
        secret=admin_key,
    )
    return Bootstrap(org=org, new_key=issued.secret)
