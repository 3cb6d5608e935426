"""Clusters that opt in to the autoscaler: the replica count follows the requests the gateway
has in flight to them, between ``min_replicas`` and ``max_replicas``.

Real fake model servers on loopback behind the real gateway (the openai SDK calls them), the
real HTTP prober; the clusters controller is driven step by step on the manual clock, and the
gateway's load meter is flushed after each move of the clock.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import openai
import pytest
from sqlalchemy import func, select

from gpuyard.server import orm
from gpuyard.server.controllers.clusters import ClusterController
from tests.harness import Api, Tenant
from tests.server.market import FakeHost, join_host
from tests.server.test_cluster_drain import Replicas, desired, routed
from tests.server.test_clusters import RTX

AUTOSCALING = {"min_replicas": 1, "max_replicas": 3, "target_concurrency": 1}


@pytest.fixture(autouse=True)
async def meter_flushed_by_the_test(api: Api) -> None:
    """The gateway's meter reports only when a test flushes it. Its own reporter wakes every
    second of real time: on a slow machine it could report a period in the middle of a step
    (requests begun, no request-seconds yet), which changes the load a step sees."""
    await api.ctx.gateway.meter.stop()


async def tick(api: Api, ctl: ClusterController, host: FakeHost, replicas: Replicas) -> None:
    """Five seconds pass: the gateway reports its load, the host runs what it is told (each
    new replica a fake model server, each removed one stopped), the controller makes a pass."""
    api.clock.advance(5)
    await api.ctx.gateway.meter.flush()
    await ctl.step()
    for wid, want in (await desired(host)).items():
        if want == "removed" and wid in host.statuses:
            assert replicas.in_flight[host.statuses[wid]["host_port"]] == 0, "a request dropped"
            await replicas.stop(host.statuses[wid]["host_port"])
            host.forget(wid)
        elif want == "running" and wid not in host.statuses:
            host.report(wid, "running", host_port=await replicas.start())
    await host.beat()
    await ctl.step()


async def cluster(t: Tenant, cluster_id: str) -> dict[str, Any]:
    r = await t.client.get(f"/v1/clusters/{cluster_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def scaled_events(t: Tenant, cluster_id: str) -> list[tuple[int, int]]:
    r = await t.client.get(f"/v1/orgs/{t.org_id}/events", params={"limit": 100})
    return [
        (e["data"]["from"], e["data"]["to"])
        for e in r.json()["data"]
        if e["subject_id"] == cluster_id and e["type"] == "cluster.scaled"
    ]


async def until_in_flight(replicas: Replicas, count: int) -> None:
    """Until ``count`` held requests have reached the replicas."""
    while sum(replicas.in_flight.values()) < count:
        replicas.held.clear()
        await asyncio.wait_for(replicas.held.wait(), timeout=30)


def hold(sdk: openai.AsyncOpenAI) -> asyncio.Task[Any]:
    return asyncio.create_task(
        sdk.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "a long one"}],
            extra_headers={"x-test-hold": "1"},
        )
    )


async def test_load_scales_up_then_idle_scales_down_to_min_sparing_busy_replicas(
    api: Api,
) -> None:
    async with AsyncExitStack() as stack:
        replicas = Replicas()
        stack.push_async_callback(replicas.aclose)
        host = await join_host(api, [RTX] * 3)
        t = await api.tenant()
        ctl = ClusterController(sessions=api.ctx.sessions, clock=api.clock, owner="t")
        body = {
            "name": "auto",
            "gpu_type": "rtx-4090",
            "container": "x",
            "autoscaling": AUTOSCALING,
        }
        r = await t.client.post("/v1/clusters", json=body)
        assert r.status_code == 201, r.text
        c = r.json()
        assert c["replicas"] == 1
        assert c["autoscaling"] == {**AUTOSCALING, "inactivity_timeout": 300.0}
        await tick(api, ctl, host, replicas)
        assert (await cluster(t, c["id"]))["status"] == "healthy"
        sdk = openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key=t.key, max_retries=0)
        stack.push_async_callback(sdk.close)

        # Load up: three requests in flight on a cluster meant to serve one per replica.
        held = [hold(sdk) for _ in range(3)]
        await until_in_flight(replicas, 3)
        await tick(api, ctl, host, replicas)
        got = await cluster(t, c["id"])
        assert got["replicas"] == 3
        await tick(api, ctl, host, replicas)
        got = await cluster(t, c["id"])
        assert got["status"] == "healthy" and got["ready_replicas"] == 3
        assert len(await routed(api, t.org_id, "tiny")) == 3
        # Bounded by max_replicas, whatever the load.
        more = [hold(sdk) for _ in range(3)]
        await until_in_flight(replicas, 6)
        await tick(api, ctl, host, replicas)
        assert (await cluster(t, c["id"]))["replicas"] == 3
        replicas.release.set()
        for task in held + more:
            assert (await task).choices[0].message.content == "Hello from the fake model"

        # One long request stays in flight while the load is otherwise gone.
        replicas.release, replicas.held = asyncio.Event(), asyncio.Event()
        long = hold(sdk)
        await asyncio.wait_for(replicas.held.wait(), timeout=30)
        busy = next(w for w, s in host.statuses.items() if s["host_port"] == replicas.holding)
        for _ in range(40):
            await tick(api, ctl, host, replicas)
            if len(host.statuses) == 1:
                break
        got = await cluster(t, c["id"])
        assert got["replicas"] == 1 and got["status"] == "healthy"
        assert list(host.statuses) == [busy], "the replica with a request in flight stayed"
        steps = await scaled_events(t, c["id"])
        assert steps[0] == (1, 3) and steps[-1][1] == 1
        assert all(old > new for old, new in steps[1:]), steps  # down only once the load fell
        replicas.release.set()
        assert (await long).choices[0].message.content == "Hello from the fake model"

        # Idle: never below min_replicas.
        for _ in range(30):
            await tick(api, ctl, host, replicas)
        assert (await cluster(t, c["id"]))["replicas"] == 1 and len(host.statuses) == 1


async def test_without_autoscaling_the_count_is_fixed_until_it_is_turned_on(api: Api) -> None:
    async with AsyncExitStack() as stack:
        replicas = Replicas()
        stack.push_async_callback(replicas.aclose)
        host = await join_host(api, [RTX] * 2)
        t = await api.tenant()
        ctl = ClusterController(sessions=api.ctx.sessions, clock=api.clock, owner="t")
        body = {"name": "fixed", "gpu_type": "rtx-4090", "container": "x", "replicas": 1}
        c = (await t.client.post("/v1/clusters", json=body)).json()
        assert c["autoscaling"] is None
        await tick(api, ctl, host, replicas)
        sdk = openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key=t.key, max_retries=0)
        stack.push_async_callback(sdk.close)
        held = [hold(sdk) for _ in range(2)]
        await until_in_flight(replicas, 2)
        for _ in range(3):
            await tick(api, ctl, host, replicas)
        assert (await cluster(t, c["id"]))["replicas"] == 1 and len(host.statuses) == 1
        async with api.ctx.sessions() as s:  # nothing measured for a fixed cluster
            assert await s.scalar(select(func.count()).select_from(orm.ClusterLoadSample)) == 0

        # Turned on (natively): measured from now on, and it scales.
        r = await t.client.patch(
            f"/v1/orgs/{t.org_id}/clusters/{c['id']}",
            json={"autoscaling": {"max_replicas": 2, "target_concurrency": 1}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["autoscaling"]["min_replicas"] == 1
        await tick(api, ctl, host, replicas)
        assert (await cluster(t, c["id"]))["replicas"] == 2
        replicas.release.set()
        await asyncio.gather(*held)
        # Turned off: the count it had stays, fixed.
        r = await t.client.patch(f"/v1/clusters/{c['id']}", json={"autoscaling": None})
        assert r.json()["autoscaling"] is None and r.json()["replicas"] == 2
        for _ in range(30):
            await tick(api, ctl, host, replicas)
        assert (await cluster(t, c["id"]))["replicas"] == 2


@pytest.mark.parametrize(
    ("autoscaling", "param"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "autoscaling.max_replicas"),
        ({"min_replicas": -1, "max_replicas": 2}, "autoscaling.min_replicas"),
        ({"min_replicas": 0, "max_replicas": 65}, "autoscaling.max_replicas"),
        ({"max_replicas": 2, "target_concurrency": 0}, "autoscaling.target_concurrency"),
        ({"max_replicas": 2, "inactivity_timeout": -5}, "autoscaling.inactivity_timeout"),
    ],
)
async def test_bad_autoscaling_is_400_naming_the_field_and_creates_nothing(
    api: Api, autoscaling: dict[str, Any], param: str
) -> None:
    await join_host(api, [RTX])
    t = await api.tenant()
    body = {"name": "bad", "gpu_type": "rtx-4090", "container": "x", "autoscaling": autoscaling}
    r = await t.client.post("/v1/clusters", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["param"] == param
    assert (await t.client.get("/v1/clusters")).json()["data"] == []
    r = await t.client.post(f"/v1/orgs/{t.org_id}/clusters", json={**body, "autoscaling": None})
    assert r.status_code == 201, r.text
    patched = await t.client.patch(
        f"/v1/clusters/{r.json()['id']}", json={"autoscaling": autoscaling}
    )
    assert patched.status_code == 400 and patched.json()["param"] == param
    assert (await t.client.get(f"/v1/clusters/{r.json()['id']}")).json()["autoscaling"] is None


async def test_from_zero_on_a_request_and_back_to_zero_when_idle(api: Api) -> None:
    async with AsyncExitStack() as stack:
        replicas = Replicas()
        stack.push_async_callback(replicas.aclose)
        host = await join_host(api, [RTX])
        t = await api.tenant()
        ctl = ClusterController(sessions=api.ctx.sessions, clock=api.clock, owner="t")
        scaling = {"min_replicas": 0, "max_replicas": 1, "inactivity_timeout": 60}
        body = {"name": "zero", "gpu_type": "rtx-4090", "container": "x", "replicas": 0}
        c = (await t.client.post("/v1/clusters", json={**body, "autoscaling": scaling})).json()
        assert c["replicas"] == 0 and c["status"] == "stopped"
        await tick(api, ctl, host, replicas)
        assert host.statuses == {}
        path = f"/endpoints/{c['endpoint'].rsplit('/', 1)[1]}/v1/models"
        r = await t.client.get(path)
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_ready_replica"
        await tick(api, ctl, host, replicas)  # the refused request is demand
        assert (await cluster(t, c["id"]))["replicas"] == 1
        await tick(api, ctl, host, replicas)
        assert (await cluster(t, c["id"]))["status"] == "healthy"
        r = await t.client.get(path)
        assert r.status_code == 200 and r.json()["data"][0]["id"] == "tiny"
        for _ in range(11):  # under a minute without a request: it stays
            await tick(api, ctl, host, replicas)
        assert len(host.statuses) == 1
        for _ in range(6):
            await tick(api, ctl, host, replicas)
        got = await cluster(t, c["id"])
        assert got["replicas"] == 0 and got["status"] == "stopped" and host.statuses == {}
