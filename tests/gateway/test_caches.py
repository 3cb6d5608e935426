"""The gateway's caches in front of its ports: the model directory and the API-key cache answer
from memory, refresh in the background once stale (no request waits for the source but the
first, and one the snapshot cannot route), and the request-log writer keeps rows in the order
the requests ended."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from gpuyard.core.errors import Unauthenticated
from gpuyard.gateway.auth import PrincipalCache
from gpuyard.gateway.directory import ModelDirectory, Snapshot
from gpuyard.gateway.logs import RequestLogWriter
from gpuyard.gateway.ports import ReadyReplica, RequestLogRow, Routable, RoutableCluster
from gpuyard.server import orm
from gpuyard.server.gateway_ports import DatabaseKeys, DatabaseLogs
from tests.harness import Api


@dataclass
class Ticks:
    """A monotonic clock the test moves."""

    now: float = 100.0

    def __call__(self) -> float:
        return self.now


class NumberedReplicas:
    """A ``ReplicaSource`` whose n-th load serves one model, ``model-n``, on one replica; a load
    can be held open, or fail."""

    def __init__(self) -> None:
        self.loads = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def load(self) -> Routable:
        self.loads += 1
        number = self.loads
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("database away")
        cluster = RoutableCluster("cl_1", "org_1", "one", False, (f"model-{number}",), 0.0)
        return Routable([cluster], [ReadyReplica("rep_1", "cl_1", "http://127.0.0.1:9", ())])


class CountingDirectory(ModelDirectory):
    def __init__(self, ticks: Ticks) -> None:
        self.replicas = NumberedReplicas()
        super().__init__(self.replicas, ttl=1.0, monotonic=ticks)

    @property
    def loads(self) -> int:
        return self.replicas.loads

    @property
    def gate(self) -> asyncio.Event | None:
        return self.replicas.gate

    @gate.setter
    def gate(self, gate: asyncio.Event | None) -> None:
        self.replicas.gate = gate

    @property
    def fail(self) -> bool:
        return self.replicas.fail

    @fail.setter
    def fail(self, fail: bool) -> None:
        self.replicas.fail = fail


def models(snap: Snapshot) -> list[str]:
    return list(snap.by_model)


async def settle(directory: ModelDirectory) -> None:
    task = directory._refreshing
    if task is not None:
        await task


async def test_a_stale_directory_answers_at_once_and_refreshes_behind() -> None:
    ticks = Ticks()
    d = CountingDirectory(ticks)
    assert models(await d.snapshot()) == ["model-1"]  # the first request waits for the load
    ticks.now += 0.5
    assert models(await d.snapshot()) == ["model-1"] and d.loads == 1

    ticks.now += 0.6  # stale: answered from what it has, one refresh started
    d.gate = asyncio.Event()
    assert models(await d.snapshot()) == ["model-1"]
    assert models(await d.snapshot()) == ["model-1"]
    await asyncio.sleep(0)  # the refresh task starts and waits at the gate
    assert d.loads == 2  # one refresh for both requests
    d.gate.set()
    await settle(d)
    assert models(await d.snapshot()) == ["model-2"] and d.loads == 2


async def test_a_model_the_snapshot_lacks_is_looked_up_in_a_newer_one() -> None:
    ticks = Ticks()
    d = CountingDirectory(ticks)
    assert models(await d.snapshot()) == ["model-1"]
    ticks.now += 0.1  # fresh: routing answers from the snapshot, no load ...
    assert [t.replica_id for t in await d.resolve("org_1", "model-1")] == ["rep_1"]
    assert d.loads == 1
    # ... but a model it does not know may be ready since: one load begun after the request
    assert [t.replica_id for t in await d.resolve("org_1", "model-2")] == ["rep_1"]
    assert d.loads == 2
    assert await d.resolve("org_2", "model-2") == []  # another org's: still not routed
    assert d.loads == 3


async def test_requests_waiting_for_a_newer_snapshot_share_one_load() -> None:
    ticks = Ticks()
    d = CountingDirectory(ticks)
    await d.snapshot()
    d.gate = asyncio.Event()
    ticks.now += 0.1
    first = asyncio.create_task(d.refresh())  # load 2 starts, held at the gate
    await asyncio.sleep(0)
    ticks.now += 0.1
    waiting = [asyncio.create_task(d.refresh()) for _ in range(5)]  # asked after it began
    await asyncio.sleep(0)
    d.gate.set()
    assert models(await first) == ["model-2"]
    assert {tuple(models(await w)) for w in waiting} == {("model-3",)}  # one more load, shared
    assert d.loads == 3


async def test_a_miss_waits_for_a_snapshot_loaded_after_it_and_misses_share_loads() -> None:
    ticks = Ticks()
    d = CountingDirectory(ticks)
    assert await d.resolve("org_a", "model-1") == []  # model-1 has no ready replica: a miss
    assert d.loads == 2  # the first snapshot, then one loaded after the miss
    d.gate = asyncio.Event()
    held = asyncio.create_task(d.refresh())  # load 3 begins and waits at the gate
    await asyncio.sleep(0)
    assert d.loads == 3
    misses = [asyncio.create_task(d.resolve("org_a", "gone")) for _ in range(5)]
    await asyncio.sleep(0)
    d.gate.set()
    await held
    assert await asyncio.gather(*misses) == [[]] * 5
    assert d.loads == 4  # load 3 began before they asked; one more load served all five
    assert models(await d.snapshot()) == ["model-4"]


async def test_a_failed_refresh_keeps_the_last_snapshot(caplog: pytest.LogCaptureFixture) -> None:
    ticks = Ticks()
    d = CountingDirectory(ticks)
    await d.snapshot()
    ticks.now += 2
    d.fail = True
    assert models(await d.snapshot()) == ["model-1"]
    await settle(d)
    assert "could not refresh the model directory" in caplog.text
    assert models(await d.snapshot()) == ["model-1"]  # and the next stale request tries again
    await settle(d)
    assert d.loads == 3
    await d.close()


async def test_a_key_revoked_elsewhere_stops_working_within_a_second(api: Api) -> None:
    """``cache`` stands for another replica's: the revocation reaches it only through the
    database."""
    t = await api.tenant()
    url = f"/v1/orgs/{t.org_id}/api-keys"
    key = (await t.client.post(url, json={"name": "short-lived"})).json()
    ticks = Ticks()
    cache = PrincipalCache(DatabaseKeys(api.ctx.sessions, api.clock), monotonic=ticks)
    assert (await cache.principal(key["key"])).key_id == key["id"]

    assert (await t.client.delete(f"{url}/{key['id']}")).status_code == 200
    ticks.now += 0.4
    assert (await cache.principal(key["key"])).key_id == key["id"]  # cached, no query
    assert not cache._refreshing

    ticks.now += 0.2  # past ttl: this request is answered from the cache, the key read again
    assert (await cache.principal(key["key"])).key_id == key["id"]
    await asyncio.gather(*cache._refreshing.values())
    with pytest.raises(Unauthenticated) as refused:
        await cache.principal(key["key"])
    assert refused.value.code == "api_key_revoked"
    await cache.close()


async def test_an_answer_a_second_old_is_never_used(api: Api) -> None:
    """A key not used for a while: its first use after the revocation waits for a fresh read
    instead of being let through once more."""
    t = await api.tenant()
    url = f"/v1/orgs/{t.org_id}/api-keys"
    key = (await t.client.post(url, json={"name": "idle"})).json()
    ticks = Ticks()
    cache = PrincipalCache(DatabaseKeys(api.ctx.sessions, api.clock), monotonic=ticks)
    assert (await cache.principal(key["key"])).key_id == key["id"]
    assert (await t.client.delete(f"{url}/{key['id']}")).status_code == 200

    ticks.now += 1.0  # the cached answer is a second old: not used, not even once more
    with pytest.raises(Unauthenticated) as refused:
        await cache.principal(key["key"])
    assert refused.value.code == "api_key_revoked"
    await cache.close()


async def test_forget_drops_a_read_in_flight(api: Api) -> None:
    t = await api.tenant()
    ticks = Ticks()
    cache = PrincipalCache(DatabaseKeys(api.ctx.sessions, api.clock), monotonic=ticks)
    reading = asyncio.create_task(cache.principal(t.key))
    await asyncio.sleep(0)  # the read has begun
    cache.forget()
    assert (await reading).org_id == t.org_id  # it answers its own request ...
    assert not cache._entries  # ... but is not kept: it may predate what forget() is for
    await cache.principal(t.key)
    assert len(cache._entries) == 1
    await cache.close()


async def test_an_unknown_key_is_refused_from_the_first_read(api: Api) -> None:
    cache = PrincipalCache(DatabaseKeys(api.ctx.sessions, api.clock), monotonic=Ticks())
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await cache.principal("vl_" + "x" * 43)


async def test_request_log_rows_keep_their_order(api: Api) -> None:
    async with api.ctx.sessions() as s:
        key_id = (await s.scalars(select(orm.ApiKey.id))).first()
    assert key_id is not None
    writer = RequestLogWriter(DatabaseLogs(api.ctx.sessions), interval=0)
    for n in range(5):
        writer.submit(
            RequestLogRow(
                id=f"req_{n}",
                created_at=api.clock.now(),
                org_id=api.operator_org,
                key_id=key_id,
                endpoint=f"e{n}",
                model=None,
                cluster_id=None,
                replica_id=None,
                stream=False,
                status=200,
                latency_ms=1.0,
                prompt_tokens=None,
                completion_tokens=None,
                error=None,
            )
        )
    writer.start()
    for _ in range(100):  # event-loop turns, until the background task has taken the batch ...
        if writer._queue.empty():
            break
        await asyncio.sleep(0)
    assert writer._queue.empty()
    await writer.stop()  # ... and it is stopped while writing it: nothing is lost
    async with api.ctx.sessions() as s:
        rows = (await s.scalars(select(orm.RequestLog).order_by(orm.RequestLog.pk))).all()
    assert [r.endpoint for r in rows] == [f"e{n}" for n in range(5)]
