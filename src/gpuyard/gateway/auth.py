"""API keys for inference, checked without holding a database transaction open for the whole
(possibly long, streamed) request: each key's principal (or refusal), as ``Keys`` (ports.py)
tells it, is cached. A use of a key more than ``ttl`` seconds after it was read is answered from
the cache while the key is read again in the background, so a key in use never waits for the
query; an answer read more than ``max_age`` seconds ago is never used (the request waits for a
fresh read). So a key revoked on another replica stops working here within ``max_age`` of the
revocation (an answer's age counts from before its query began). ``forget()``, which the replica
that revokes a key calls once the revocation is committed, makes it stop at once: every later
request reads its key again, and a read that began before ``forget()`` is not kept."""

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
        ttl: float = 0.5,
        max_age: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._ttl = ttl
        self._max_age = max(ttl, max_age)
        self._monotonic = monotonic
        self._entries: dict[str, tuple[float, Found]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._generation = 0  # forget() moves it on; a read of an older generation is dropped

    async def principal(self, secret: str | None) -> Principal:
        key = hash_secret(secret or "")
        hit = self._entries.get(key)
        age = self._monotonic() - hit[0] if hit is not None else self._max_age
        if hit is None or age >= self._max_age:
            found = await self._read(key, secret)
        else:
            found = hit[1]
            if age >= self._ttl and key not in self._refreshing:
                self._refreshing[key] = asyncio.create_task(self._read_again(key, secret))
        if isinstance(found, GpuyardError):
            raise found
        return found

    async def _read(self, key: str, secret: str | None) -> Found:
        taken_at, generation = self._monotonic(), self._generation
        found: Found
        try:
            found = await self._keys.principal(secret)
        except GpuyardError as exc:
            found = exc
        if generation != self._generation:
            return found  # answers this request, but may predate a revocation: not kept
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

    def forget(self) -> None:
        """Drop every cached answer, and any read now in flight: a key revoked (or an org
        suspended) in a transaction that has committed stops working at once."""
        self._generation += 1
        self._entries.clear()

    async def close(self) -> None:
        for task in list(self._refreshing.values()):
            task.cancel()
        await asyncio.gather(*self._refreshing.values(), return_exceptions=True)
