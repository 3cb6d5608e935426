"""Stored first responses for ``Idempotency-Key`` requests.

A record is reserved in the same transaction as the request's own changes and completed with the
response before that transaction commits, so a stored response exists exactly when the change
committed. A concurrent duplicate waits on the unique (scope, key) index and then replays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import InvalidRequest
from gpuyard.server import orm

TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: str
    status_code: int | None
    headers: dict[str, str]
    body: bytes


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters",
            code="invalid_idempotency_key",
            param="Idempotency-Key",
        )
    return key


async def reserve(
    session: AsyncSession,
    *,
    clock: Clock,
    scope: str,
    key: str,
    method: str,
    path: str,
    request_hash: str,
) -> None:
    """Insert the pending record; raises IntegrityError when (scope, key) exists."""
    now = clock.now()
    session.add(
        orm.IdempotencyRecord(
            scope=scope,
            key=key,
            method=method,
            path=path,
            request_hash=request_hash,
            created_at=now,
            expires_at=now + TTL,
        )
    )
    await session.flush()


async def lookup(session: AsyncSession, *, scope: str, key: str) -> StoredResponse | None:
    row = await session.scalar(
        select(orm.IdempotencyRecord).where(
            orm.IdempotencyRecord.scope == scope, orm.IdempotencyRecord.key == key
        )
    )
    if row is None:
        return None
    return StoredResponse(
        request_hash=row.request_hash,
        status_code=row.status_code,
        headers=dict(row.response_headers or {}),
        body=row.response_body or b"",
    )


async def complete(
    session: AsyncSession,
    *,
    scope: str,
    key: str,
    status_code: int,
    headers: dict[str, str],
    body: bytes,
) -> None:
    await session.execute(
        update(orm.IdempotencyRecord)
        .where(orm.IdempotencyRecord.scope == scope, orm.IdempotencyRecord.key == key)
        .values(status_code=status_code, response_headers=headers, response_body=body)
    )


async def purge_expired(session: AsyncSession, *, clock: Clock) -> int:
    result = await session.execute(
        delete(orm.IdempotencyRecord).where(orm.IdempotencyRecord.expires_at <= clock.now())
    )
    return int(getattr(result, "rowcount", 0) or 0)
