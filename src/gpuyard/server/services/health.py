"""Readiness: the database answers, its schema is at the newest migration, and nothing the
process waits for at start (``StartupGates``, e.g. ``gpuyard up``'s local host joining) is
still pending."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gpuyard.server.migrate import current_revision, head_revision


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    database: str
    schema_revision: str | None
    expected_revision: str | None


async def readiness(engine: AsyncEngine) -> Readiness:
    expected = head_revision()
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        current = await current_revision(engine)
    except Exception as exc:
        return Readiness(False, f"unreachable: {type(exc).__name__}", None, expected)
    return Readiness(current == expected, "ok", current, expected)


class StartupGates:
    """What a process waits for before it calls itself ready: named events. ``gpuyard up``
    waits for ``local host``, set once its local agent's first heartbeat has been answered, so
    a script that waits for ``/readyz`` can create a cluster on that host at once."""

    def __init__(self) -> None:
        self._gates: dict[str, asyncio.Event] = {}

    def wait_for(self, name: str, event: asyncio.Event) -> None:
        self._gates[name] = event

    @property
    def waiting_for(self) -> list[str]:
        return sorted(name for name, event in self._gates.items() if not event.is_set())
