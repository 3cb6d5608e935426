"""Writes the buffered heard-from times (services/heard.py) every second in a running server.

The heartbeat path already flushes once the buffer is a second old, but only while heartbeats
keep coming; this loop bounds the lag when they stop. Tests call ``step()`` instead.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.server.services.heard import HeardFrom


class HeardFlush:
    name = "heard-from"
    watches: str | None = None  # runs on its own schedule; no row wakes it

    def __init__(self, *, heard: HeardFrom, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.heard = heard
        self.sessions = sessions

    async def step(self) -> int:
        return await self.heard.flush(self.sessions)

    def hint(self) -> None:
        pass

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.heard.every.total_seconds())
            await self.heard.flush_or_log(self.sessions)
