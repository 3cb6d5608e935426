"""Deletes what has outlived its retention: expired idempotency records (more to come)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.core.clock import Clock
from gpuyard.server.db import write_session
from gpuyard.server.services import idempotency, rate_limits

log = logging.getLogger(__name__)


class RetentionSweeper:
    """An idempotent sweep: any replica may run it at any time; deleting twice is harmless."""

    name = "retention"
    watches: str | None = None  # runs on its own schedule; no row wakes it

    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], clock: Clock, poll_seconds: float
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.poll_seconds = poll_seconds

    async def step(self) -> int:
        async with write_session(self.sessions) as session:
            removed = await idempotency.purge_expired(session, clock=self.clock)
            return removed + await rate_limits.purge_old(session, now=self.clock.now())

    def hint(self) -> None:
        pass

    async def run(self) -> None:
        while True:
            try:
                removed = await self.step()
                if removed:
                    log.info("retention: removed %d expired idempotency records", removed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention sweep failed")
            await asyncio.sleep(max(self.poll_seconds, 60.0))
