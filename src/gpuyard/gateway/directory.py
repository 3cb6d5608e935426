"""Which replicas serve which model, for whom: a snapshot of the routable clusters and their
ready replicas (from the ``ReplicaSource``, ports.py), refreshed at most once per ``ttl``
seconds, so routing a request costs no query. Once a snapshot is ``ttl`` old, the next request
starts a refresh in the background and is routed on the snapshot it has: no request waits for
the source, except the first, and one the snapshot cannot route.

A request for a model (or an endpoint) the snapshot does not know, or knows without a ready
replica, is looked up again in a snapshot loaded after it asked (``refresh``): a cluster
reported healthy is routable at once, not a second later. Such requests share loads, one at a
time.

A model is served by the ready replicas of the caller's own clusters that name it (explicitly,
or as discovered from the replica's ``/v1/models``), and of clusters the operator publishes to
every org. What a cluster's models do (chat, embeddings, …) is what its owner declared
(``task``): ``task_models`` lists them by it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gpuyard.core.tasks import cancel_and_wait
from gpuyard.gateway.ports import ReplicaSource, Routable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    replica_id: str
    cluster_id: str
    org_id: str
    public: bool
    url: str  # http://address:port
    task: str | None = None  # its cluster's declared task


@dataclass(frozen=True, slots=True)
class Snapshot:
    by_model: dict[str, list[Target]]
    by_slug: dict[str, list[Target]]
    cluster_org: dict[str, tuple[str, bool]]  # slug -> (org, public), ready or not
    created: dict[str, float]  # model -> when its cluster was created (for /v1/models)
    cluster_ids: dict[str, str]  # slug -> cluster id


class ModelDirectory:
    def __init__(
        self,
        source: ReplicaSource,
        *,
        ttl: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self._ttl = ttl
        self._monotonic = monotonic
        self._snapshot: Snapshot | None = None
        self._taken_at = 0.0  # when the load of ``_snapshot`` began
        self._begun = 0  # loads begun so far
        self._loaded = 0  # which of them ``_snapshot`` comes from
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None

    async def snapshot(self) -> Snapshot:
        snap = self._snapshot
        if snap is None:
            return await self._load_unless(lambda: self._snapshot is not None)
        if self._monotonic() - self._taken_at >= self._ttl and self._refreshing is None:
            self._refreshing = asyncio.create_task(self._refresh_in_background())
        return snap

    async def refresh(self) -> Snapshot:
        """A snapshot whose load began after this call: what a request that the snapshot it
        had could not route gets. Callers waiting together share one load."""
        begun = self._begun
        return await self._load_unless(lambda: self._loaded > begun)

    async def close(self) -> None:
        await cancel_and_wait(self._refreshing)

    async def _load_unless(self, fresh_enough: Callable[[], bool]) -> Snapshot:
        async with self._lock:  # one load at a time; who waited may find a fresh one
            if fresh_enough():
                assert self._snapshot is not None
                return self._snapshot
            self._begun += 1
            number, started = self._begun, self._monotonic()
            snap = index(await self.source.load())
            self._snapshot, self._taken_at, self._loaded = snap, started, number
            return snap

    async def _refresh_in_background(self) -> None:
        try:
            await self.refresh()
        except Exception:  # routed on the last snapshot until a refresh succeeds
            log.exception("could not refresh the model directory")
        finally:
            self._refreshing = None

    async def health(self, org_id: str) -> tuple[int, int]:
        """Of the clusters the org may route to (its own and the published ones), how many
        there are and how many have a ready replica, in a snapshot loaded now."""
        snap = await self.refresh()
        reachable = [
            s for s, (owner, public) in snap.cluster_org.items() if owner == org_id or public
        ]
        return len(reachable), sum(1 for s in reachable if snap.by_slug.get(s))

    async def resolve(self, org_id: str, model: str) -> list[Target]:
        found = _allowed((await self.snapshot()).by_model.get(model, ()), org_id)
        if not found:  # perhaps ready since the snapshot was taken
            found = _allowed((await self.refresh()).by_model.get(model, ()), org_id)
        return found

    async def models(self, org_id: str) -> dict[str, float]:
        """The models the org can call now, with a creation time each."""
        snap = await self.snapshot()
        return {
            m: snap.created.get(m, 0.0)
            for m, targets in snap.by_model.items()
            if any(t.org_id == org_id or t.public for t in targets)
        }

    def cluster_id(self, slug: str) -> str | None:
        """The id of the cluster with ``slug`` in the current snapshot (None: not known)."""
        return self._snapshot.cluster_ids.get(slug) if self._snapshot else None

    async def task_models(self, org_id: str, task: str) -> tuple[list[str], list[str]]:
        """The models of clusters declared to do ``task`` that the org can call now: those the
        operator publishes to every org, and the org's own (private) ones; each sorted."""
        snap = await self.snapshot()
        published, private = set(), set()
        for model, targets in snap.by_model.items():
            for t in targets:
                if t.task != task:
                    continue
                if t.public:
                    published.add(model)
                elif t.org_id == org_id:
                    private.add(model)
        return sorted(published), sorted(private)

    async def endpoint(self, org_id: str, slug: str) -> list[Target] | None:
        """Ready replicas of the cluster with ``slug`` if the org may use it; None if it may not
        (or no such cluster), [] if it may but none is ready."""
        found = _endpoint(await self.snapshot(), org_id, slug)
        if not found:  # perhaps created, or ready, since the snapshot was taken
            found = _endpoint(await self.refresh(), org_id, slug)
        return found


def _allowed(targets: Iterable[Target], org_id: str) -> list[Target]:
    return [t for t in targets if t.org_id == org_id or t.public]


def _endpoint(snap: Snapshot, org_id: str, slug: str) -> list[Target] | None:
    owner = snap.cluster_org.get(slug)
    if owner is None or (owner[0] != org_id and not owner[1]):
        return None
    return snap.by_slug.get(slug, [])


def index(routable: Routable) -> Snapshot:
    """The snapshot of what ``routable`` lists: targets by model and by cluster slug."""
    by_model: dict[str, list[Target]] = defaultdict(list)
    by_slug: dict[str, list[Target]] = defaultdict(list)
    cluster_org: dict[str, tuple[str, bool]] = {}
    created: dict[str, float] = {}
    cluster_ids: dict[str, str] = {}
    clusters = {c.id: c for c in routable.clusters}
    for cl in routable.clusters:
        cluster_org[cl.slug] = (cl.org_id, cl.public)
        cluster_ids[cl.slug] = cl.id
        for model in cl.models:
            created.setdefault(model, cl.created_at)
    for replica in routable.replicas:
        c = clusters.get(replica.cluster_id)
        if c is None:
            continue
        target = Target(
            replica_id=replica.id,
            cluster_id=c.id,
            org_id=c.org_id,
            public=c.public,
            url=replica.url,
            task=c.task,
        )
        by_slug[c.slug].append(target)
        for model in c.models or replica.served_models:
            by_model[model].append(target)
            created.setdefault(model, c.created_at)
    return Snapshot(dict(by_model), dict(by_slug), cluster_org, created, cluster_ids)
