"""Which replicas serve which model, for whom: a snapshot of the database refreshed at most once
per ``ttl`` seconds (and at once on ``invalidate()``), so routing a request costs no query.
Once a snapshot is ``ttl`` old, the next request starts a refresh in the background and is
routed on the snapshot it has: no request waits for the query, except the first and those after
``invalidate()``.

A miss is checked against the database before it is answered: a request whose model (or
cluster endpoint) has no ready replica in the snapshot waits for a snapshot loaded after it
arrived (``fresh()``), so a cluster that the API already reports ``healthy`` is routed at once
rather than answered 404 for up to ``ttl``. Misses share loads: one runs at a time, and every
miss that arrived while it ran takes the next one.

A model is served by the ready replicas (running, healthy, on a ready host) of the caller's own
clusters that name it (explicitly, or as discovered from the replica's ``/v1/models``), and of
clusters the operator publishes to every org.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.core.agent_protocol import HostStatus
from gpuyard.server import orm

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    replica_id: str
    cluster_id: str
    org_id: str
    public: bool
    url: str  # http://address:port


@dataclass(frozen=True, slots=True)
class Snapshot:
    by_model: dict[str, list[Target]]
    by_slug: dict[str, list[Target]]
    cluster_org: dict[str, tuple[str, bool]]  # slug -> (org, public), ready or not
    created: dict[str, float]  # model -> when its cluster was created (for /v1/models)


class ModelDirectory:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._monotonic = monotonic
        self._snapshot: Snapshot | None = None
        self._taken_at = 0.0
        self._generation = 0  # bumped by invalidate(): a snapshot of an older one is not reused
        self._loaded_generation = -1
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None
        self._loads = 0  # loads begun so far

    def invalidate(self) -> None:
        self._snapshot = None
        self._generation += 1

    async def snapshot(self) -> Snapshot:
        snap = self._snapshot
        if snap is None:
            return await self._refresh()
        if self._monotonic() - self._taken_at >= self._ttl and self._refreshing is None:
            self._refreshing = asyncio.create_task(self._refresh_in_background())
        return snap

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refreshing

    async def fresh(self) -> Snapshot:
        """A snapshot loaded after this call began: it sees every change committed before."""
        asked = self._loads
        async with self._lock:
            if self._loads > asked and self._snapshot is not None:
                return self._snapshot  # one began after we asked, while we waited for the lock
            return await self._load_locked()

    async def _refresh(self) -> Snapshot:
        async with self._lock:  # one query at a time; who waited gets the fresh one
            if (
                self._snapshot is None
                or self._loaded_generation != self._generation
                or self._monotonic() - self._taken_at >= self._ttl
            ):
                return await self._load_locked()
            return self._snapshot

    async def _load_locked(self) -> Snapshot:
        started, generation = self._monotonic(), self._generation
        self._loads += 1
        snap = await self._load()
        self._taken_at, self._loaded_generation = started, generation
        if self._generation == generation:  # else invalidated while loading
            self._snapshot = snap
        return snap

    async def _refresh_in_background(self) -> None:
        try:
            await self._refresh()
        except Exception:  # routed on the last snapshot until a refresh succeeds
            log.exception("could not refresh the model directory")
        finally:
            self._refreshing = None

    async def _load(self) -> Snapshot:
        by_model: dict[str, list[Target]] = defaultdict(list)
        by_slug: dict[str, list[Target]] = defaultdict(list)
        cluster_org: dict[str, tuple[str, bool]] = {}
        created: dict[str, float] = {}
        async with self._sessions() as session:
            clusters = {
                c.id: c
                for c in await session.scalars(
                    select(orm.Cluster).where(orm.Cluster.deleted_at.is_(None))
                )
            }
            for cl in clusters.values():
                cluster_org[cl.slug] = (cl.org_id, cl.public)
                for model in cl.models:
                    created.setdefault(model, cl.created_at.timestamp())
            rows = await session.execute(
                select(orm.Workload, orm.Host.address)
                .join(orm.Host, orm.Host.id == orm.Workload.host_id)
                .where(
                    orm.Workload.kind == "replica",
                    orm.Workload.ready.is_(True),
                    orm.Workload.desired == "running",
                    orm.Workload.state == "running",
                    orm.Host.status == HostStatus.READY,
                )
            )
            for w, address in rows.all():
                c = clusters.get(w.owner_id)
                if c is None or w.host_port is None:
                    continue
                target = Target(
                    replica_id=w.id,
                    cluster_id=c.id,
                    org_id=c.org_id,
                    public=c.public,
                    url=f"http://{address}:{w.host_port}",
                )
                by_slug[c.slug].append(target)
                for model in c.models or (w.served_models or []):
                    by_model[model].append(target)
                    created.setdefault(model, c.created_at.timestamp())
        return Snapshot(dict(by_model), dict(by_slug), cluster_org, created)

    async def resolve(self, org_id: str, model: str) -> list[Target]:
        found = _serving(await self.snapshot(), org_id, model)
        if not found:  # a miss: maybe ready since the snapshot was taken
            found = _serving(await self.fresh(), org_id, model)
        return found

    async def models(self, org_id: str) -> dict[str, float]:
        """The models the org can call now, with a creation time each."""
        snap = await self.snapshot()
        return {
            m: snap.created.get(m, 0.0)
            for m, targets in snap.by_model.items()
            if any(t.org_id == org_id or t.public for t in targets)
        }

    async def endpoint(self, org_id: str, slug: str) -> list[Target] | None:
        """Ready replicas of the cluster with ``slug`` if the org may use it; None if it may not
        (or no such cluster), [] if it may but none is ready."""
        found = _endpoint(await self.snapshot(), org_id, slug)
        if not found:
            found = _endpoint(await self.fresh(), org_id, slug)
        return found


def _serving(snap: Snapshot, org_id: str, model: str) -> list[Target]:
    return [t for t in snap.by_model.get(model, []) if t.org_id == org_id or t.public]


def _endpoint(snap: Snapshot, org_id: str, slug: str) -> list[Target] | None:
    owner = snap.cluster_org.get(slug)
    if owner is None or (owner[0] != org_id and not owner[1]):
        return None
    return snap.by_slug.get(slug, [])
