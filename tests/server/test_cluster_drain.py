"""Replicas drain before they go: out of routing first, still running for the drain period, then
removed. Scale down, rolling updates, deletion, lost hosts and hosts the operator drains.

The controller is driven step by step on the manual clock, with the injected prober of
test_clusters.py; the last test runs real fake model servers behind the real gateway.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Any

import openai
from sqlalchemy import select

from gpuyard.core.clusters import DEFAULT_DRAIN_SECONDS
from gpuyard.server import orm
from gpuyard.server.controllers.hosts import HostHealthController
from tests.gateway.kit import deploy
from tests.gateway.upstream import fake_model_server
from tests.harness import Api, Tenant, serve_app
from tests.server.market import FakeHost, join_host
from tests.server.test_clusters import RTX, Health, controller, run_replicas

DRAIN = DEFAULT_DRAIN_SECONDS


async def routed(api: Api, org_id: str, model: str = "demo-embed") -> set[str]:
    """The replicas the gateway routes ``model`` to now (a snapshot newer than the call)."""
    snapshot = await api.ctx.gateway.directory.refresh()
    return {t.replica_id for t in snapshot.by_model.get(model, []) if t.org_id == org_id}


async def desired(host: FakeHost) -> dict[str, str]:
    return {a["spec"]["id"]: a["desired"] for a in (await host.beat())["workloads"]}


async def gpu_holders(api: Api, host: FakeHost) -> list[str | None]:
    r = await api.client.get(f"/v1/admin/hosts/{host.host_id}")
    return [g["workload_id"] for g in r.json()["gpus"]]


async def replica_events(t: Tenant, cluster_id: str) -> list[tuple[str, str, str]]:
    r = await t.client.get(f"/v1/orgs/{t.org_id}/events", params={"limit": 100})
    return [
        (e["type"], e["data"]["workload_id"], e["data"]["reason"])
        for e in r.json()["data"]
        if e["subject_id"] == cluster_id and e["type"] in ("replica.draining", "replica.removed")
    ]


async def cluster_types(t: Tenant, cluster_id: str) -> list[str]:
    r = await t.client.get(f"/v1/orgs/{t.org_id}/events", params={"limit": 100})
    return [
        e["type"]
        for e in r.json()["data"]
        if e["subject_id"] == cluster_id and e["type"].startswith("cluster.")
    ]


async def cluster_status(api: Api, cluster_id: str) -> str:
    async with api.ctx.sessions() as s:
        status = await s.scalar(select(orm.Cluster.status).where(orm.Cluster.id == cluster_id))
    assert status is not None
    return status


def host_health(api: Api) -> HostHealthController:
    return HostHealthController(
        sessions=api.ctx.sessions,
        heard=api.ctx.heard,
        clock=api.clock,
        owner="t",
        unreachable_after=api.ctx.settings.host_unreachable_seconds,
        offline_after=api.ctx.settings.host_offline_seconds,
    )


async def create(t: Tenant, name: str, replicas: int) -> dict[str, Any]:
    body = {"name": name, "gpu_type": "rtx-4090", "replicas": replicas, "container": "v1"}
    r = await t.client.post("/v1/clusters", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_scale_down_drains_then_removes_then_frees_the_gpu(api: Api) -> None:
    host = await join_host(api, [RTX, RTX])
    t = await api.tenant()
    health = Health()
    ctl = controller(api, health)
    c = await create(t, "down", 2)
    await ctl.step()
    first, extra = await run_replicas(host, health)
    await ctl.step()
    assert await routed(api, t.org_id) == {first, extra}

    await t.client.patch(f"/v1/clusters/{c['id']}", json={"replicas": 1})
    await ctl.step()
    assert await routed(api, t.org_id) == {first}  # out of routing at once
    assert await desired(host) == {first: "running", extra: "running"}  # still serving
    await ctl.step()  # its health check still passes: it is not probed back to ready
    assert await routed(api, t.org_id) == {first}
    got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
    assert got["status"] == "healthy"
    assert {d["id"]: d["ready"] for d in got["replica_details"]} == {first: True, extra: False}
    assert {d["id"]: d["draining"] for d in got["replica_details"]} == {first: False, extra: True}

    api.clock.advance(DRAIN - 1)
    await ctl.step()
    assert await desired(host) == {first: "running", extra: "running"}
    api.clock.advance(1)
    await ctl.step()
    assert await desired(host) == {first: "running", extra: "removed"}
    assert extra in await gpu_holders(api, host)  # held until the host confirms it stopped
    host.forget(extra)
    await host.beat()
    assert set(await gpu_holders(api, host)) == {first, None}
    assert await replica_events(t, c["id"]) == [
        ("replica.draining", extra, "scaled down"),
        ("replica.removed", extra, "drained"),
    ]


async def test_rolling_update_keeps_replicas_routed_and_drains_the_old(api: Api) -> None:
    host = await join_host(api, [RTX] * 4)
    t = await api.tenant()
    health = Health()
    ctl = controller(api, health)
    c = await create(t, "roll", 2)
    await ctl.step()
    old = set(await run_replicas(host, health))
    await ctl.step()
    assert await routed(api, t.org_id) == old

    await t.client.patch(f"/v1/clusters/{c['id']}", json={"container": "v2"})
    drain_started: dict[str, datetime] = {}
    for _ in range(12):
        await ctl.step()
        now_routed = await routed(api, t.org_id)
        assert len(now_routed) >= 2, "capacity dropped"
        details = (await t.client.get(f"/v1/clusters/{c['id']}")).json()["replica_details"]
        for d in details:
            if d["id"] in old and not d["ready"] and d["id"] not in drain_started:
                # a new replica was ready before this old one left routing
                assert now_routed - old, "an old replica drained before a new one was ready"
                drain_started[d["id"]] = api.clock.now()
        for wid, want in (await desired(host)).items():
            if want == "removed" and wid in host.statuses:
                assert api.clock.now() - drain_started[wid] >= timedelta(seconds=DRAIN)
                host.forget(wid)
            elif want == "running" and wid not in host.statuses:
                host.report(wid, "running", host_port=41100 + len(host.statuses))
                health.healthy.add(wid)
        await host.beat()
        assert len(await routed(api, t.org_id)) >= 2, "capacity dropped"
        if not host.statuses.keys() & old and len(details) == 2:
            break
        api.clock.advance(5)
    got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
    assert got["status"] == "healthy" and got["container"] == "v2"
    assert {d["generation"] for d in got["replica_details"]} == {2}
    assert set(drain_started) == old
    assert not (await routed(api, t.org_id)) & old
    reasons = await replica_events(t, c["id"])
    assert sorted(w for kind, w, _ in reasons if kind == "replica.draining") == sorted(old)
    assert {why for kind, _, why in reasons if kind == "replica.draining"} == {"rolling update"}


async def test_delete_drains_every_replica_then_removes_them(api: Api) -> None:
    host = await join_host(api, [RTX, RTX])
    t = await api.tenant()
    health = Health()
    ctl = controller(api, health)
    c = await create(t, "gone", 2)
    await ctl.step()
    ids = await run_replicas(host, health)
    await ctl.step()
    assert (await t.client.delete(f"/v1/clusters/{c['id']}")).json()["status"] == "deleting"
    await ctl.step()
    assert await routed(api, t.org_id) == set()
    assert await desired(host) == dict.fromkeys(ids, "running")  # finishing what they were sent
    assert await cluster_status(api, c["id"]) == "deleting"
    api.clock.advance(DRAIN)
    await ctl.step()
    assert await desired(host) == dict.fromkeys(ids, "removed")
    assert await cluster_status(api, c["id"]) == "deleting"  # until the host has stopped them
    for wid in ids:
        host.forget(wid)
    await host.beat()
    await ctl.step()
    assert await cluster_status(api, c["id"]) == "deleted"
    assert await gpu_holders(api, host) == [None, None]
    assert await ctl.step() == 0  # no longer due
    assert await cluster_types(t, c["id"]) == [
        "cluster.created",
        "cluster.healthy",
        "cluster.deleting",
        "cluster.deleted",
    ]
    events = await replica_events(t, c["id"])
    assert [kind for kind, _, _ in events] == ["replica.draining"] * 2 + ["replica.removed"] * 2
    assert sorted(events) == sorted(
        [("replica.draining", w, "cluster deleted") for w in ids]
        + [("replica.removed", w, "drained") for w in ids]
    )


async def test_replicas_of_an_offline_host_are_replaced_elsewhere(api: Api) -> None:
    a = await join_host(api, [RTX], name="a")
    b = await join_host(api, [RTX], name="b")
    t = await api.tenant()
    health = Health()
    ctl = controller(api, health)
    c = await create(t, "moves", 1)
    await ctl.step()
    [lost] = await run_replicas(a, health)
    await ctl.step()

    api.clock.advance(api.ctx.settings.host_offline_seconds)
    await b.beat()  # b keeps in touch, a went silent
    assert await host_health(api).step() == 1
    assert (await api.client.get(f"/v1/admin/hosts/{a.host_id}")).json()["status"] == "offline"
    await ctl.step()  # nothing to drain on a lost host: removed at once, replaced on b
    [new] = await run_replicas(b, health)
    assert new != lost
    await ctl.step()
    got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
    assert got["status"] == "healthy" and got["status_reason"] is None
    assert [(d["id"], d["host_id"]) for d in got["replica_details"]] == [(new, b.host_id)]
    assert await routed(api, t.org_id) == {new}
    assert await replica_events(t, c["id"]) == [("replica.removed", lost, "host lost")]
    assert "cluster.failed" not in await cluster_types(t, c["id"])


async def test_a_drained_host_hands_its_replicas_over_before_they_stop(api: Api) -> None:
    a = await join_host(api, [RTX], name="a")
    b = await join_host(api, [RTX], name="b")
    t = await api.tenant()
    health = Health()
    ctl = controller(api, health)
    c = await create(t, "evict", 1)
    await ctl.step()
    [old] = await run_replicas(a, health)
    await ctl.step()

    r = await api.client.post(f"/v1/admin/hosts/{a.host_id}/drain")
    assert r.status_code == 200 and r.json()["draining"] is True
    await ctl.step()  # a replacement on b; the old one keeps serving meanwhile
    assert await routed(api, t.org_id) == {old}
    [new] = await run_replicas(b, health)
    await ctl.step()  # the new one is ready: now the old one drains
    assert await routed(api, t.org_id) == {new}
    assert await desired(a) == {old: "running"}
    api.clock.advance(DRAIN)
    await ctl.step()
    assert await desired(a) == {old: "removed"}
    a.forget(old)
    await a.beat()
    assert await gpu_holders(api, a) == [None]  # the host is empty
    got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
    assert got["status"] == "healthy"
    assert await replica_events(t, c["id"]) == [
        ("replica.draining", old, "host drained"),
        ("replica.removed", old, "drained"),
    ]


async def test_a_drained_host_empties_even_when_no_other_host_has_room(api: Api) -> None:
    a = await join_host(api, [RTX], name="a")
    t = await api.tenant()
    health = Health()
    ctl = controller(api, health)
    c = await create(t, "stuck", 1)
    await ctl.step()
    [old] = await run_replicas(a, health)
    await ctl.step()
    await api.client.post(f"/v1/admin/hosts/{a.host_id}/drain")
    await ctl.step()  # no room anywhere: the operator's drain wins, the replica drains
    assert await routed(api, t.org_id) == set()
    assert await desired(a) == {old: "running"}
    got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
    assert got["status"] == "failed" and "no ready host has 1 free RTX 4090" in got["status_reason"]
    api.clock.advance(DRAIN)
    await ctl.step()
    assert await desired(a) == {old: "removed"}


async def test_a_replica_that_ends_while_draining_is_removed_at_once(api: Api) -> None:
    host = await join_host(api, [RTX, RTX])
    t = await api.tenant()
    health = Health()
    ctl = controller(api, health)
    c = await create(t, "ends", 2)
    await ctl.step()
    _, extra = await run_replicas(host, health)
    await ctl.step()
    await t.client.patch(f"/v1/clusters/{c['id']}", json={"replicas": 1})
    await ctl.step()
    host.report(extra, "exited", exit_code=0)
    await host.beat()
    await ctl.step()  # no need to wait out the drain, and not a failure of the cluster
    assert (await desired(host))[extra] == "removed"
    got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
    assert got["status"] == "healthy" and got["status_reason"] is None


class Replicas:
    """Fake model servers on loopback ports, started and stopped one by one as a host would.
    Each counts the requests it is answering right now; a request with an ``x-test-hold``
    header is held until ``release`` is set (a long request still running during a roll)."""

    def __init__(self) -> None:
        self._stacks: dict[int, AsyncExitStack] = {}
        self.in_flight: dict[int, int] = {}
        self.served: dict[int, int] = {}
        self.holding: int | None = None  # the port of the replica holding the request
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def start(self) -> int:
        stack = AsyncExitStack()
        url = await stack.enter_async_context(serve_app(self._counted(fake_model_server())))
        port = int(url.rsplit(":", 1)[1])
        self._stacks[port] = stack
        self.in_flight[port] = self.served[port] = 0
        return port

    def _counted(self, app: Any) -> Any:
        async def counted(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] == "/health":
                return await app(scope, receive, send)
            port = scope["server"][1]
            self.in_flight[port] += 1
            try:
                if (b"x-test-hold", b"1") in scope["headers"]:
                    self.holding = port
                    self.held.set()
                    await self.release.wait()
                await app(scope, receive, send)
            finally:
                self.in_flight[port] -= 1
                self.served[port] += 1

        return counted

    async def stop(self, port: int) -> None:
        await self._stacks.pop(port).aclose()

    async def aclose(self) -> None:
        for port in list(self._stacks):
            await self.stop(port)


class Traffic:
    """Workers that call the model through the gateway with the openai SDK, back to back."""

    def __init__(self, sdk: openai.AsyncOpenAI, workers: int = 2) -> None:
        self.sdk = sdk
        self.ok = 0
        self.errors: list[str] = []
        self.started = [0] * workers
        self.finished = [0] * workers
        self._stop = asyncio.Event()
        self._progress = asyncio.Event()
        self._tasks = [asyncio.create_task(self._work(i)) for i in range(workers)]

    async def _call(self, stream: bool) -> str:
        messages: Any = [{"role": "user", "content": "hi"}]
        if not stream:
            chat = await self.sdk.chat.completions.create(model="tiny", messages=messages)
            return chat.choices[0].message.content or ""
        chunks = await self.sdk.chat.completions.create(
            model="tiny", messages=messages, stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

    async def _work(self, i: int) -> None:
        while not self._stop.is_set():
            self.started[i] += 1
            try:
                text = await self._call(stream=bool((i + self.started[i]) % 2))
                if text == "Hello from the fake model":
                    self.ok += 1
                else:
                    self.errors.append(f"wrong answer {text!r}")
            except openai.OpenAIError as exc:
                self.errors.append(repr(exc))
            self.finished[i] += 1
            self._progress.set()

    async def round(self) -> None:
        """Wait until every worker has finished a request it started after now, so none still
        goes where the gateway routed before now."""
        marks = [s + 1 for s in self.started]
        while any(f < m for f, m in zip(self.finished, marks, strict=True)):
            self._progress.clear()
            await asyncio.wait_for(self._progress.wait(), timeout=30)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def test_no_request_is_dropped_while_a_cluster_rolls(api: Api) -> None:
    async with AsyncExitStack() as stack:
        replicas = Replicas()
        stack.push_async_callback(replicas.aclose)
        old_ports = [await replicas.start(), await replicas.start()]
        d = await deploy(api, stack, old_ports)  # two replicas on a host with two GPUs
        spare = await join_host(api, [RTX, RTX], name="spare")
        ports = {wid: s["host_port"] for wid, s in d.host.statuses.items()}
        old = set(ports)
        traffic = Traffic(d.sdk)
        stack.push_async_callback(traffic.stop)
        await traffic.round()
        held = asyncio.create_task(
            d.sdk.chat.completions.create(
                model="tiny",
                messages=[{"role": "user", "content": "a long one"}],
                extra_headers={"x-test-hold": "1"},
            )
        )
        await asyncio.wait_for(replicas.held.wait(), timeout=30)
        holder = next(w for w, p in ports.items() if p == replicas.holding)

        r = await d.tenant.client.patch(f"/v1/clusters/{d.cluster_id}", json={"container": "v2"})
        assert r.status_code == 200, r.text
        for _ in range(12):
            await d.ctl.step()
            # the gateway has caught up (in service, within a second: a replica drains for 10)
            assert len(await routed(api, d.tenant.org_id, "tiny")) >= 2
            for host in (d.host, spare):  # each host does what it is told, like an agent
                for wid, want in (await desired(host)).items():
                    if want == "removed" and wid in host.statuses:
                        # stopped abruptly: nothing may still be in flight to it
                        assert replicas.in_flight[ports[wid]] == 0, "a request would be dropped"
                        await replicas.stop(ports[wid])
                        host.forget(wid)
                    elif want == "running" and wid not in host.statuses:
                        ports[wid] = await replicas.start()
                        host.report(wid, "running", host_port=ports[wid])
                await host.beat()
            if holder not in await routed(api, d.tenant.org_id, "tiny"):
                replicas.release.set()  # the long request ends while its replica drains
                assert (await held).choices[0].message.content == "Hello from the fake model"
            await traffic.round()
            if not d.host.statuses and len(spare.statuses) == 2:
                break
            api.clock.advance(5)
        await traffic.round()
        await traffic.stop()

        assert traffic.errors == []
        assert traffic.ok > 0 and held.done()
        got = (await d.tenant.client.get(f"/v1/clusters/{d.cluster_id}")).json()
        assert got["status"] == "healthy"
        assert {(r["host_id"], r["generation"]) for r in got["replica_details"]} == {
            (spare.host_id, 2)
        }
        new = set(spare.statuses)
        assert await routed(api, d.tenant.org_id, "tiny") == new and not new & old
        assert all(replicas.served[ports[w]] > 0 for w in old | new)
