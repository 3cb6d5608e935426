"""The reconciler base: claim due rows fairly under a lease, act outside any transaction, apply
guarded.

A controller is level-triggered: ``due()`` says which rows need work, whatever happened before.
Each controlled row also carries a schedule, ``next_run_at`` (orm.LeaseColumns): empty means "as
soon as ``due()`` holds", a time means "not before then".

1. ``fetch`` claims up to ``batch_size`` rows that are due, whose next-run time has come and that
   no one holds, **oldest-due first** (empty next-run times first: new and hinted rows), in one
   short write transaction (``FOR UPDATE SKIP LOCKED`` on Postgres; SQLite has one writer), and
   stamps each with a fresh lease token, this replica as owner, and an expiry.
2. ``process`` does the slow or external work for every claimed row, concurrently, outside any
   transaction. While it runs the lease is renewed (every third of its length), so a long act
   keeps its rows; a replica that dies stops renewing and its rows are taken over once the lease
   expires.
3. ``apply`` writes each outcome in a new transaction, but only if the row still carries our token
   (a result whose lease was lost is dropped and counted as ``lost``). Before ``apply`` runs, the
   row's next-run time is set to ``now + revisit`` (or emptied when the controller has no
   ``revisit``); ``apply`` may set another. The lease is cleared.

``TemporaryError(delay)`` from ``process`` schedules the row ``delay`` seconds on;
``PermanentError`` calls ``fail`` (and looks again after ``retry_delay``); anything else, in
``process`` or in ``apply``, is logged and retried after ``retry_delay``, and the rest of the
batch goes on. Since every handled row moves its next-run time forward or stops being due, one
pass over the table (``step()`` until it claims nothing) handles every due row exactly once,
whatever the table's size.

``hint()`` wakes the loop: services make a row due now and hint its controller after their commit
(services/wakeups.py). Tests call ``step()`` with a manual clock instead of running the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, Generic, Protocol, TypeVar

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped

from gpuyard.core.clock import Clock
from gpuyard.core.errors import PermanentError, TemporaryError
from gpuyard.core.tasks import cancel_and_wait
from gpuyard.server.db import read_session, write_session
from gpuyard.server.metrics import Metrics

log = logging.getLogger(__name__)

MIN_IDLE_SECONDS = 0.05  # the shortest wait between passes when a row is due very soon


class Controlled(Protocol):
    """A row a reconciler can schedule and claim: a table, a key, a next-run time and a lease."""

    __tablename__: str
    pk: Mapped[int]
    next_run_at: Mapped[datetime | None]
    lease_token: Mapped[str | None]
    lease_owner: Mapped[str | None]
    lease_expires_at: Mapped[datetime | None]


RowT = TypeVar("RowT", bound=Controlled)
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True, slots=True)
class Claim(Generic[ItemT]):
    pk: int
    token: str
    item: ItemT


@dataclass(frozen=True, slots=True)
class _Outcome(Generic[ResultT]):
    result: ResultT | None = None
    retry_in: float | None = None  # park for this long
    failure: str | None = None  # permanent: call ``fail``
    counted: str = "applied"


class Reconciler(ABC, Generic[RowT, ItemT, ResultT]):
    name: ClassVar[str]
    model: type[RowT]
    batch_size: ClassVar[int] = 20
    lease: ClassVar[timedelta] = timedelta(seconds=60)
    retry_delay: ClassVar[float] = 10.0
    revisit: ClassVar[float | None] = None  # look again this long after an apply (None: when due)
    # Write a batch's results in one transaction (many small rows: webhook attempts) rather than
    # one each; a batch whose transaction fails is written again one row at a time.
    apply_together: ClassVar[bool] = False

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
        self._stop_requested = False

    @property
    def watches(self) -> str:
        """A wakeup for a row of this table (``services/wakeups.py``) hints this controller."""
        return self.model.__tablename__

    # --- what a controller defines -------------------------------------------------------------

    @abstractmethod
    def due(self) -> ColumnElement[bool]:
        """SQL condition for rows that need work (read ``self.clock``); the schedule and the lease
        are checked by the base."""

    @abstractmethod
    def snapshot(self, row: RowT) -> ItemT:
        """A plain copy of what ``process`` needs; rows do not leave the transaction."""

    async def load(self, session: AsyncSession, row: RowT) -> ItemT:
        """The snapshot of a claimed row, read in the claiming transaction; override when it
        needs more than the row itself (related rows). Default: ``snapshot(row)``."""
        return self.snapshot(row)

    async def load_all(self, session: AsyncSession, rows: list[RowT]) -> list[ItemT]:
        """A claimed batch's snapshots, in order; override to read related rows at once."""
        return [await self.load(session, row) for row in rows]

    async def process(self, item: ItemT) -> ResultT:
        """The work outside any transaction. Default: nothing to do outside the database."""
        return None  # type: ignore[return-value]

    @abstractmethod
    async def apply(self, session: AsyncSession, row: RowT, item: ItemT, result: ResultT) -> None:
        """Write the outcome; ``row`` is locked and still leased by us."""

    async def apply_all(
        self, session: AsyncSession, applies: list[tuple[RowT, ItemT, ResultT]]
    ) -> None:
        """Write a batch's outcomes in one transaction (``apply_together``); override to write
        them in bulk. Default: ``apply`` each."""
        for row, item, result in applies:
            await self.apply(session, row, item, result)

    async def fail(self, session: AsyncSession, row: RowT, item: ItemT, reason: str) -> None:
        """Record that ``row`` can never be reconciled as asked. Default: log only."""
        log.error("%s: %s failed permanently: %s", self.name, item, reason)

    # --- the machinery ------------------------------------------------------------------------

    def _ready(self, now: datetime) -> tuple[ColumnElement[bool], ...]:
        """Due, its time come, and held by no one."""
        model = self.model
        return (
            self.due(),
            or_(model.next_run_at.is_(None), model.next_run_at <= now),
            or_(model.lease_expires_at.is_(None), model.lease_expires_at <= now),
        )

    async def fetch(self) -> list[Claim[ItemT]]:
        model = self.model
        now = self.clock.now()
        token = secrets.token_hex(16)
        async with write_session(self.sessions) as session:
            pks = list(
                (
                    await session.scalars(
                        select(model.pk)
                        .where(*self._ready(now))
                        .order_by(model.next_run_at.asc().nulls_first(), model.pk)
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
                .execution_options(synchronize_session=False)
            )
            rows = dict(
                (await session.execute(select(model.pk, model).where(model.pk.in_(pks)))).all()
            )
            items = await self.load_all(session, [rows[pk] for pk in pks])
            return [Claim(pk, token, item) for pk, item in zip(pks, items, strict=True)]

    async def renew(self, token: str) -> int:
        """Extend the lease of every row still held under ``token``; how many were."""
        model = self.model
        async with write_session(self.sessions) as session:
            result = await session.execute(
                update(model)
                .where(model.lease_token == token)
                .values(lease_expires_at=self.clock.now() + self.lease)
                .execution_options(synchronize_session=False)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def step(self) -> int:
        """Claim one batch and reconcile every row of it; the number of rows claimed."""
        claims = await self.fetch()
        if not claims:
            return 0
        async with self._renewing(claims[0].token):
            outcomes = await asyncio.gather(*(self._process(c) for c in claims))
            if self.apply_together and await self._settle_together(claims, outcomes):
                return len(claims)
            for claim, outcome in zip(claims, outcomes, strict=True):
                await self._settle(claim, outcome)
        return len(claims)

    async def _settle_together(
        self, claims: list[Claim[ItemT]], outcomes: list[_Outcome[ResultT]]
    ) -> bool:
        """Apply every result of a batch in one transaction, locked with one read; False (nothing
        written) when a row failed permanently or the transaction failed: settle each alone."""
        if any(o.failure is not None for o in outcomes):
            return False
        counted: list[str] = []
        releases: dict[float | None, list[Claim[ItemT]]] = {}
        applies: list[tuple[RowT, ItemT, ResultT | None]] = []
        try:
            async with write_session(self.sessions) as session:
                rows = await self._held(session, claims)
                for claim, outcome in zip(claims, outcomes, strict=True):
                    if outcome.retry_in is None and claim.pk not in rows:
                        counted.append(self._lost(claim))
                        continue
                    then = self.revisit if outcome.retry_in is None else outcome.retry_in
                    releases.setdefault(then, []).append(claim)
                    counted.append(outcome.counted)
                    if outcome.retry_in is None:
                        applies.append((rows[claim.pk], claim.item, outcome.result))
                for then, released in releases.items():
                    await self._release(session, released, then=then)
                await self.apply_all(session, applies)  # type: ignore[arg-type]
        except Exception:
            log.exception("%s: applying a batch together failed; one by one", self.name)
            return False
        for outcome_name in counted:
            self._count(outcome_name)
        return True

    async def _held(self, session: AsyncSession, claims: list[Claim[ItemT]]) -> dict[int, RowT]:
        """The claimed rows (one token) that still carry our lease, locked, by key."""
        model = self.model
        found = select(model.pk, model).where(
            model.pk.in_([c.pk for c in claims]), model.lease_token == claims[0].token
        )
        return dict((await session.execute(found.with_for_update())).all())

    def _lost(self, claim: Claim[ItemT]) -> str:
        log.warning("%s: lease on %s was lost; result dropped", self.name, claim.item)
        return "lost"

    async def _release(
        self, session: AsyncSession, claims: list[Claim[ItemT]], *, then: float | None
    ) -> None:
        """Clear the lease of claims (one token) and set their next-run time; loaded rows follow."""
        model = self.model
        await session.execute(
            update(model)
            .where(model.pk.in_([c.pk for c in claims]), model.lease_token == claims[0].token)
            .values(
                next_run_at=None if then is None else self._after(then),
                lease_token=None,
                lease_owner=None,
                lease_expires_at=None,
            )
        )

    async def _reconcile(self, claim: Claim[ItemT]) -> None:
        """Process and settle one claimed row (tests drive single claims with it)."""
        await self._settle(claim, await self._process(claim))

    async def _process(self, claim: Claim[ItemT]) -> _Outcome[ResultT]:
        try:
            return _Outcome(result=await self.process(claim.item))
        except TemporaryError as exc:
            log.info("%s: %s retry in %ss: %s", self.name, claim.item, exc.delay, exc.reason)
            return _Outcome(retry_in=exc.delay, counted="retry")
        except PermanentError as exc:
            return _Outcome(failure=exc.reason, counted="failed")
        except Exception:
            log.exception("%s: processing %s crashed; will retry", self.name, claim.item)
            return _Outcome(retry_in=self.retry_delay, counted="error")

    async def _settle(self, claim: Claim[ItemT], outcome: _Outcome[ResultT]) -> None:
        counted = outcome.counted
        try:
            if outcome.retry_in is not None:
                await self._park(claim, outcome.retry_in)
            elif outcome.failure is not None:
                reason = outcome.failure
                await self._guarded(
                    claim,
                    lambda s, row: self.fail(s, row, claim.item, reason),
                    then=self.retry_delay,
                )
            else:
                result: ResultT = outcome.result  # type: ignore[assignment]
                applied = await self._guarded(
                    claim, lambda s, row: self.apply(s, row, claim.item, result), then=self.revisit
                )
                counted = "applied" if applied else "lost"
        except Exception:
            log.exception("%s: applying %s crashed; will retry", self.name, claim.item)
            await self._park(claim, self.retry_delay)
            counted = "error"
        self._count(counted)

    async def _guarded(
        self,
        claim: Claim[ItemT],
        write: Callable[[AsyncSession, RowT], Awaitable[None]],
        *,
        then: float | None,
    ) -> bool:
        async with write_session(self.sessions) as session:
            row = (await self._held(session, [claim])).get(claim.pk)
            if row is None:
                self._lost(claim)
                return False
            # Released and rescheduled first (the loaded row follows), so ``write`` may still
            # choose another next-run time.
            await self._release(session, [claim], then=then)
            await write(session, row)
            return True

    async def _park(self, claim: Claim[ItemT], delay: float) -> None:
        async with write_session(self.sessions) as session:
            await self._release(session, [claim], then=delay)

    def _after(self, seconds: float) -> datetime:
        return self.clock.now() + timedelta(seconds=seconds)

    @contextlib.asynccontextmanager
    async def _renewing(self, token: str) -> AsyncIterator[None]:
        """Renew the batch's lease every third of its length while the body runs."""

        async def renew_forever() -> None:
            while True:
                await asyncio.sleep(self.lease.total_seconds() / 3)
                try:
                    await self.renew(token)
                except Exception:
                    log.warning("%s: renewing a lease failed", self.name, exc_info=True)

        task = asyncio.create_task(renew_forever(), name=f"lease:{self.name}")
        try:
            yield
        finally:
            await cancel_and_wait(task)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.controller_runs.labels(self.name, outcome).inc()

    async def next_due_in(self) -> float | None:
        """Seconds until the soonest scheduled row is due (None: none is scheduled)."""
        model = self.model
        now = self.clock.now()
        async with read_session(self.sessions) as session:
            soonest = await session.scalar(
                select(func.min(model.next_run_at)).where(self.due(), model.next_run_at > now)
            )
        return None if soonest is None else (soonest - now).total_seconds()

    def hint(self) -> None:
        """Run now rather than at the next poll."""
        self._wake.set()

    def stop_soon(self) -> None:
        """End ``run`` at its next idle point (never in the middle of a transaction)."""
        self._stop_requested = True
        self._wake.set()

    async def run(self) -> None:
        """Loop until cancelled: step until a batch comes back short, then wait for a hint, the
        soonest scheduled row or the poll interval, whichever comes first."""
        while not self._stop_requested:
            self._wake.clear()  # a hint that arrives during the step is kept for the wait
            try:
                claimed = await self.step()
                if claimed:
                    log.info("%s: owner %s processed %d rows", self.name, self.owner, claimed)
                if claimed >= self.batch_size:
                    continue
                wait = self.poll_seconds
                soonest = await self.next_due_in()
                if soonest is not None:
                    wait = max(MIN_IDLE_SECONDS, min(wait, soonest))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: step failed", self.name)
                wait = self.poll_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
