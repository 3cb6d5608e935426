"""API keys for inference, checked without holding a database transaction open for the whole
(possibly long, streamed) request: each key's principal (or refusal), as ``Keys`` (ports.py)
tells it, is cached for ``ttl`` seconds. The first
use of a key after that is answered from the cache while the key is read again in the
background, so no request but a key's first waits for the query, and a revoked key stops
working within ``ttl`` and the time of one query."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gpuyard.core.credentials import hash_secret
from gpuyard.core.errors import GpuyardError
from gpuyard.core.principal import Principal
from gpuyard.gateway.ports import Keys

log = logging.getLogger(__name__)
MAX_ENTRIES = 10_000
Found = Principal | GpuyardError


class PrincipalCache:
    def __init__(
        self,
        keys: Keys,
        *,
        ttl: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._ttl = ttl
        self._monotonic = monotonic
        self._entries: dict[str, tuple[float, Found]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}

    async def principal(self, secret: str | None) -> Principal:
        key = hash_secret(secret or "")
        hit = self._entries.get(key)
        if hit is None:
            found = await self._read(key, secret)
        else:
            found = hit[1]
            if self._monotonic() - hit[0] >= self._ttl and key not in self._refreshing:
                self._refreshing[key] = asyncio.create_task(self._read_again(key, secret))
        if isinstance(found, GpuyardError):
            raise found
        return found

    async def _read(self, key: str, secret: str | None) -> Found:
        taken_at = self._monotonic()
        found: Found
        try:
            found = await self._keys.principal(secret)
        except GpuyardError as exc:
            found = exc
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (taken_at, found)
        return found

    async def _read_again(self, key: str, secret: str | None) -> None:
        try:
            await self._read(key, secret)
        except Exception:  # the cached answer stands until a read succeeds
            log.exception("could not check an API key again")
        finally:
            self._refreshing.pop(key, None)

    async def close(self) -> None:
        for task in list(self._refreshing.values()):
            task.cancel()
        await asyncio.gather(*self._refreshing.values(), return_exceptions=True)
