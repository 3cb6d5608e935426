"""The reconciler base: claim due rows under a lease, act outside any transaction, apply guarded.

A controller is level-triggered: ``due(now)`` says which rows need work, whatever happened before.

1. ``fetch`` claims up to ``batch_size`` due rows that no one holds: in one short write transaction
   it selects them (``FOR UPDATE SKIP LOCKED`` on Postgres; SQLite has one writer) and stamps each
   with a fresh lease token, this replica as owner, and an expiry.
2. ``process`` does the slow or external work for one claimed row, outside any transaction.
3. ``apply`` writes the outcome in a new transaction, but only if the row still carries our token;
   a lease that expired and was claimed by someone else makes our result void (counted as "lost").

``TemporaryError(delay)`` from ``process`` parks the row for ``delay`` seconds; ``PermanentError``
calls ``fail``; anything else is logged and retried after ``retry_delay``. ``hint()`` wakes the loop
so a service that changed desired state need not wait for the next poll. Tests call ``step()``
with a manual clock instead of running the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.core.clock import Clock
from gpuyard.core.errors import PermanentError, TemporaryError
from gpuyard.server.db import write_session
from gpuyard.server.metrics import Metrics

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
BACKOFF_TOKEN = "backoff"


@dataclass(frozen=True, slots=True)
class Claim(Generic[ItemT]):
    pk: int
    token: str
    item: ItemT


class Reconciler(ABC, Generic[ItemT, ResultT]):
    name: ClassVar[str]
    model: ClassVar[Any]  # an ORM class with ``pk`` and the LeaseColumns
    batch_size: ClassVar[int] = 20
    lease: ClassVar[timedelta] = timedelta(seconds=60)
    retry_delay: ClassVar[float] = 10.0

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        owner: str,
        metrics: Metrics | None = None,
        poll_seconds: float = 5.0,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.owner = owner
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    # --- what a controller defines -------------------------------------------------------------

    @abstractmethod
    def due(self) -> ColumnElement[bool]:
        """SQL condition for rows that need work now (read ``self.clock``)."""

    @abstractmethod
    def snapshot(self, row: Any) -> ItemT:
        """A plain copy of what ``process`` needs; rows do not leave the transaction."""

    async def load(self, session: AsyncSession, row: Any) -> ItemT:
        """The snapshot of a claimed row, read in the claiming transaction; override when it
        needs more than the row itself (related rows). Default: ``snapshot(row)``."""
        return self.snapshot(row)

    async def process(self, item: ItemT) -> ResultT:
        """The work outside any transaction. Default: nothing to do outside the database."""
        return None  # type: ignore[return-value]

    @abstractmethod
    async def apply(self, session: AsyncSession, row: Any, item: ItemT, result: ResultT) -> None:
        """Write the outcome; ``row`` is locked and still leased by us."""

    async def fail(self, session: AsyncSession, row: Any, item: ItemT, reason: str) -> None:
        """Record that ``row`` can never be reconciled as asked. Default: log only."""
        log.error("%s: %s failed permanently: %s", self.name, item, reason)

    # --- the machinery ------------------------------------------------------------------------

    async def fetch(self) -> list[Claim[ItemT]]:
        model = self.model
        now = self.clock.now()
        token = secrets.token_hex(16)
        async with write_session(self.sessions) as session:
            pks = list(
                (
                    await session.scalars(
                        select(model.pk)
                        .where(
                            self.due(),
                            or_(model.lease_expires_at.is_(None), model.lease_expires_at <= now),
                        )
                        .order_by(model.pk)
                        .limit(self.batch_size)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
            )
            if not pks:
                return []
            await session.execute(
                update(model)
                .where(model.pk.in_(pks))
                .values(
                    lease_token=token, lease_owner=self.owner, lease_expires_at=now + self.lease
                )
            )
            rows = (await session.scalars(select(model).where(model.pk.in_(pks)))).all()
            return [
                Claim(pk=row.pk, token=token, item=await self.load(session, row)) for row in rows
            ]

    async def step(self) -> int:
        """Claim one batch and reconcile each row; the number of rows claimed."""
        claims = await self.fetch()
        for claim in claims:
            await self._reconcile(claim)
        return len(claims)

    async def _reconcile(self, claim: Claim[ItemT]) -> None:
        try:
            result = await self.process(claim.item)
        except TemporaryError as exc:
            log.info("%s: %s retry in %ss: %s", self.name, claim.item, exc.delay, exc.reason)
            await self._park(claim, exc.delay)
            self._count("retry")
            return
        except PermanentError as exc:
            reason = exc.reason
            await self._guarded(claim, lambda s, row: self.fail(s, row, claim.item, reason))
            self._count("failed")
            return
        except Exception:
            log.exception("%s: processing %s crashed; will retry", self.name, claim.item)
            await self._park(claim, self.retry_delay)
            self._count("error")
            return
        applied = await self._guarded(claim, lambda s, row: self.apply(s, row, claim.item, result))
        self._count("applied" if applied else "lost")

    async def _guarded(self, claim: Claim[ItemT], write: Any) -> bool:
        model = self.model
        async with write_session(self.sessions) as session:
            row = await session.scalar(
                select(model)
                .where(model.pk == claim.pk, model.lease_token == claim.token)
                .with_for_update()
            )
            if row is None:
                log.warning("%s: lease on %s was lost; result dropped", self.name, claim.item)
                return False
            await write(session, row)
            row.lease_token = None
            row.lease_owner = None
            row.lease_expires_at = None
            return True

    async def _park(self, claim: Claim[ItemT], delay: float) -> None:
        model = self.model
        async with write_session(self.sessions) as session:
            await session.execute(
                update(model)
                .where(model.pk == claim.pk, model.lease_token == claim.token)
                .values(
                    lease_token=BACKOFF_TOKEN,
                    lease_owner=None,
                    lease_expires_at=self.clock.now() + timedelta(seconds=delay),
                )
            )

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.controller_runs.labels(self.name, outcome).inc()

    def hint(self) -> None:
        """Run now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Loop until cancelled: step, then wait for a hint or the poll interval."""
        while True:
            try:
                claimed = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: step failed", self.name)
                claimed = 0
            if claimed:
                log.info("%s: owner %s processed %d rows", self.name, self.owner, claimed)
            if claimed >= self.batch_size:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
