"""Load for the key-expiry controller: many API keys of one new org, made due in one statement.

Shared by the tests that run several server processes over one database and count which
process handled each key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.core.credentials import hash_secret, new_api_key
from gpuyard.core.ids import new_id
from gpuyard.server import orm


async def seed_keys(sessions: async_sessionmaker[AsyncSession], count: int) -> str:
    """A new org with ``count`` read-only keys that expire in a day; the org's id."""
    now = datetime.now(UTC)
    org_id = new_id("org")
    async with sessions() as s, s.begin():
        await s.execute(
            insert(orm.Org).values(
                id=org_id,
                name="Load",
                slug=f"load-{org_id[-6:]}",
                status="active",
                is_operator=False,
                created_at=now,
                updated_at=now,
            )
        )
        await s.execute(
            insert(orm.ApiKey),
            [
                {
                    "id": new_id("key"),
                    "org_id": org_id,
                    "name": f"k{i}",
                    "prefix": "vl_x",
                    "secret_hash": hash_secret(new_api_key()),
                    "scopes": ["org:read"],
                    "created_at": now,
                    "expires_at": now + timedelta(days=1),
                }
                for i in range(count)
            ],
        )
    return org_id


async def expire_keys(sessions: async_sessionmaker[AsyncSession], org_id: str) -> None:
    """Every key of the org expired a second ago: all due at the same moment."""
    async with sessions() as s, s.begin():
        await s.execute(
            update(orm.ApiKey)
            .where(orm.ApiKey.org_id == org_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
