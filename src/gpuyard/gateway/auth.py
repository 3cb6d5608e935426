"""API keys for inference, checked without holding a database transaction open for the whole
(possibly long, streamed) request: each key's principal is cached for ``ttl`` seconds, so a
revoked key stops working within that time."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.core.clock import Clock
from gpuyard.core.credentials import hash_secret
from gpuyard.core.errors import GpuyardError
from gpuyard.core.principal import Principal
from gpuyard.server.services import auth

MAX_ENTRIES = 10_000


class PrincipalCache:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        ttl: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._ttl = ttl
        self._monotonic = monotonic
        self._entries: dict[str, tuple[float, Principal | GpuyardError]] = {}

    async def principal(self, secret: str | None) -> Principal:
        key = hash_secret(secret or "")
        now = self._monotonic()
        hit = self._entries.get(key)
        if hit is None or now - hit[0] >= self._ttl:
            try:
                async with self._sessions() as session:
                    found: Principal | GpuyardError = (
                        await auth.authenticate(session, clock=self._clock, secret=secret)
                    )[0]
            except GpuyardError as exc:
                found = exc
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            hit = (now, found)
            self._entries[key] = hit
        if isinstance(hit[1], GpuyardError):
            raise hit[1]
        return hit[1]

    def forget(self) -> None:
        self._entries.clear()
