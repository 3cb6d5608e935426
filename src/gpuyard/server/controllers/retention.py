"""Deletes what has outlived its retention: expired idempotency records, old rate-limit windows
and kept chat completions past ``GPUYARD_COMPLETION_RETENTION_DAYS``."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.core.clock import Clock
from gpuyard.server.db import write_session
from gpuyard.server.services import completions, idempotency, rate_limits

log = logging.getLogger(__name__)


class RetentionSweeper:
    """An idempotent sweep: any replica may run it at any time; deleting twice is harmless."""

    name = "retention"
    watches: str | None = None  # runs on its own schedule; no row wakes it

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        poll_seconds: float,
        completion_retention_days: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.completion_retention_days = completion_retention_days
        self._stop = asyncio.Event()

    async def step(self) -> int:
        async with write_session(self.sessions) as session:
            now = self.clock.now()
            removed = await idempotency.purge_expired(session, clock=self.clock)
            removed += await completions.purge_before(
                session, before=completions.cutoff(now, self.completion_retention_days)
            )
            return removed + await rate_limits.purge_old(session, now=now)

    def hint(self) -> None:
        pass

    def stop_soon(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                removed = await self.step()
                if removed:
                    log.info("retention: removed %d expired rows", removed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=max(self.poll_seconds, 60.0))
