"""Marks API keys whose ``expires_at`` has passed as expired, with one ``api_key.expired`` event.

Authentication already refuses a key past its expiry; this controller makes the state explicit
(``expired_at``) and tells the org, exactly once, even with several server replicas.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.server import orm
from gpuyard.server.controllers.base import Reconciler
from gpuyard.server.services import events


@dataclass(frozen=True, slots=True)
class ExpiringKey:
    id: str
    org_id: str
    name: str


class KeyExpiryController(Reconciler[orm.ApiKey, ExpiringKey, None]):
    name = "key-expiry"
    model = orm.ApiKey

    def due(self) -> ColumnElement[bool]:
        return and_(
            orm.ApiKey.expires_at <= self.clock.now(),
            orm.ApiKey.expired_at.is_(None),
            orm.ApiKey.revoked_at.is_(None),
        )

    def snapshot(self, row: orm.ApiKey) -> ExpiringKey:
        return ExpiringKey(id=row.id, org_id=row.org_id, name=row.name)

    async def apply(
        self, session: AsyncSession, row: orm.ApiKey, item: ExpiringKey, result: None
    ) -> None:
        row.expired_at = self.clock.now()
        await events.record(
            session,
            clock=self.clock,
            org_id=item.org_id,
            type="api_key.expired",
            subject_id=item.id,
            data={"name": item.name, "expires_at": _iso(row.expires_at)},
        )


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()
