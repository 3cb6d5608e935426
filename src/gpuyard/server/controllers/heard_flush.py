"""Writes the buffered heard-from times (services/heard.py) every second in a running server.

The heartbeat path already flushes once the buffer is a second old, but only while heartbeats
keep coming; this loop bounds the lag when they stop. Tests call ``step()`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.server.services.heard import HeardFrom


class HeardFlush:
    name = "heard-from"
    watches: str | None = None  # runs on its own schedule; no row wakes it

    def __init__(self, *, heard: HeardFrom, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.heard = heard
        self.sessions = sessions
        self._stop = asyncio.Event()

    async def step(self) -> int:
        return await self.heard.flush(self.sessions)

    def hint(self) -> None:
        pass

    def stop_soon(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.heard.every.total_seconds())
            await self.heard.flush_or_log(self.sessions)  # once more when stopping
