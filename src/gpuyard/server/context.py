"""The composition root's product: everything a request or controller needs, wired once."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gpuyard.core.clock import Clock
from gpuyard.gateway.service import Gateway
from gpuyard.server.metrics import Metrics
from gpuyard.server.services.health import StartupGates
from gpuyard.server.services.heard import HeardFrom
from gpuyard.server.services.wakeups import Wakeups
from gpuyard.server.settings import Settings
from gpuyard.server.vector_ports import DatabaseSearch
from gpuyard.vectorstore.service import VectorStore


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    gateway: Gateway
    vectors: VectorStore
    vector_search: DatabaseSearch  # pgvector or the in-process indexes, chosen at start-up
    metrics: Metrics = field(default_factory=Metrics)
    heard: HeardFrom = field(default_factory=HeardFrom)  # heartbeats not yet written
    wakeups: Wakeups = field(default_factory=Wakeups)  # controllers to wake after a commit
    startup: StartupGates = field(default_factory=StartupGates)  # /readyz waits for these
