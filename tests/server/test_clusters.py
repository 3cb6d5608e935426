"""Inference clusters: placement, health, scaling, rolling updates, failure, deletion.

The controller is driven step by step with a manual clock; replicas' health answers come from an
injected prober (the real HTTP prober is exercised end to end elsewhere). A replica that leaves
drains first (``DRAIN`` seconds out of routing); test_cluster_drain.py covers that in detail.
"""

from __future__ import annotations

import pytest

from gpuyard.core.clusters import DEFAULT_DRAIN_SECONDS
from gpuyard.server.controllers import clusters as clusters_controller
from gpuyard.server.controllers.clusters import ClusterController, Probe, ProbeResult
from tests.harness import Api
from tests.server.market import FakeHost, join_host

RTX = ("RTX 4090", 24564)
DRAIN = DEFAULT_DRAIN_SECONDS


class Health:
    def __init__(self) -> None:
        self.healthy: set[str] = set()
        self.models = ("demo-embed",)

    async def __call__(self, probe: Probe) -> ProbeResult:
        ok = probe.replica_id in self.healthy
        return ProbeResult(healthy=ok, models=self.models if ok and probe.discover else None)


def controller(api: Api, health: Health) -> ClusterController:
    return ClusterController(sessions=api.ctx.sessions, clock=api.clock, owner="t", prober=health)


async def run_replicas(host: FakeHost, health: Health, *, ready: bool = True) -> list[str]:
    """The host starts what it is told to run; optionally every replica passes health checks."""
    beat = await host.beat()
    ids = []
    for a in beat["workloads"]:
        wid = a["spec"]["id"]
        if a["desired"] == "removed":
            host.forget(wid)
            continue
        host.report(wid, "running", host_port=41000 + len(ids))
        ids.append(wid)
        if ready:
            health.healthy.add(wid)
    await host.beat()
    return ids


async def test_create_place_and_become_healthy(api: Api) -> None:
    host = await join_host(api, [RTX, RTX])
    t = await api.tenant()
    health = Health()
    ctl = controller(api, health)
    r = await t.client.post(
        "/v1/clusters",
        json={
            "name": "my-cluster",
            "gpu_type": "rtx-4090",
            "replicas": 1,
            "container": "gpuyard/worker:embeddings",
            "env": {"MODEL": "minilm"},
        },
    )
    assert r.status_code == 201, r.text
    c = r.json()
    assert {k: c[k] for k in ("name", "status", "gpu_type", "replicas")} == {
        "name": "my-cluster",
        "status": "provisioning",
        "gpu_type": "rtx-4090",
        "replicas": 1,
    }
    assert c["id"].startswith("cl_") and "/endpoints/my-cluster-" in c["endpoint"]
    await ctl.step()
    [wid] = await run_replicas(host, health)
    await ctl.step()
    got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
    assert got["status"] == "healthy"
    assert got["ready_replicas"] == 1 and got["models"] == ["demo-embed"]
    assert got["replica_details"][0]["id"] == wid
    same = (await t.client.get(f"/v1/orgs/{t.org_id}/clusters/{c['id']}")).json()
    assert same["status"] == "healthy"
    listed = (await t.client.get("/v1/clusters")).json()["data"]
    assert [x["id"] for x in listed] == [c["id"]]
    types = [
        e["type"]
        for e in (await t.client.get(f"/v1/orgs/{t.org_id}/events", params={"limit": 100})).json()[
            "data"
        ]
        if e["subject_id"] == c["id"]
    ]
    assert types == ["cluster.created", "replica.placed", "replica.running", "cluster.healthy"]


async def test_replicas_spread_across_hosts_and_scale(api: Api) -> None:
    a = await join_host(api, [RTX, RTX], name="a")
    b = await join_host(api, [RTX, RTX], name="b")
    t = await api.tenant()
    health = Health()
    ctl = controller(api, health)
    c = (
        await t.client.post(
            "/v1/clusters",
            json={"name": "s", "gpu_type": "RTX_4090", "replicas": 2, "container": "x"},
        )
    ).json()
    await ctl.step()
    ids_a = await run_replicas(a, health)
    ids_b = await run_replicas(b, health)
    assert len(ids_a) == 1 and len(ids_b) == 1
    await ctl.step()
    assert (await t.client.get(f"/v1/clusters/{c['id']}")).json()["status"] == "healthy"
    r = await t.client.patch(f"/v1/clusters/{c['id']}", json={"replicas": 1})
    assert r.json()["replicas"] == 1
    await ctl.step()  # the newest drains: out of routing, still running
    got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
    assert got["status"] == "healthy" and got["ready_replicas"] == 1
    assert [d["ready"] for d in got["replica_details"]] == [True, False]
    api.clock.advance(DRAIN)
    await ctl.step()
    got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
    assert got["ready_replicas"] == 1 and len(got["replica_details"]) == 1


async def test_rolling_update_keeps_capacity(api: Api) -> None:
    host = await join_host(api, [RTX, RTX])
    t = await api.tenant()
    health = Health()
    ctl = controller(api, health)
    c = (
        await t.client.post(
            "/v1/clusters",
            json={"name": "r", "gpu_type": "rtx-4090", "replicas": 1, "container": "v1"},
        )
    ).json()
    await ctl.step()
    [old] = await run_replicas(host, health)
    await ctl.step()
    await t.client.patch(f"/v1/clusters/{c['id']}", json={"container": "v2"})
    await ctl.step()  # surge: a second replica of the new generation, the old one stays
    beat = await host.beat()
    specs = {a["spec"]["id"]: a for a in beat["workloads"]}
    assert specs[old]["desired"] == "running"
    [new] = [i for i in specs if i != old]
    assert specs[new]["spec"]["image"] == "v2"
    host.report(new, "running", host_port=41009)
    await host.beat()
    await ctl.step()  # the new one is not healthy yet: the old one keeps serving
    assert (await host.beat())["workloads"][0]["desired"] == "running"
    got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
    assert got["ready_replicas"] == 1
    health.healthy.add(new)
    assert await ctl.step() == 0  # not probed again before its time
    api.clock.advance(clusters_controller.SETTLE_SECONDS)
    await ctl.step()  # now the old one drains: out of routing, still running
    desired = {a["spec"]["id"]: a["desired"] for a in (await host.beat())["workloads"]}
    assert desired == {old: "running", new: "running"}
    got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
    assert {d["id"]: d["ready"] for d in got["replica_details"]} == {old: False, new: True}
    api.clock.advance(DRAIN)
    await ctl.step()  # and then goes
    desired = {a["spec"]["id"]: a["desired"] for a in (await host.beat())["workloads"]}
    assert desired == {old: "removed", new: "running"}
    got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
    assert got["status"] == "healthy" and got["container"] == "v2"


async def test_a_replica_that_keeps_failing_fails_the_cluster(api: Api) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    health = Health()
    ctl = controller(api, health)
    c = (
        await t.client.post(
            "/v1/clusters", json={"name": "f", "gpu_type": "rtx-4090", "container": "broken"}
        )
    ).json()
    for _ in range(5):  # a replica, then its GPU back once the host let it go, three times
        await ctl.step()
        beat = await host.beat()
        for a in beat["workloads"]:
            if a["desired"] == "running":
                host.report(
                    a["spec"]["id"],
                    "exited",
                    exit_code=1,
                    log_tail="Traceback\nImportError: no module x\n",
                )
            else:
                host.forget(a["spec"]["id"])
        await host.beat()
    await ctl.step()
    got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
    assert got["status"] == "failed"
    assert "ImportError: no module x" in got["status_reason"]
    await ctl.step()  # no endless loop: nothing new is placed
    beat = await host.beat()
    assert all(a["desired"] == "removed" for a in beat["workloads"])


async def test_no_capacity_is_failed_with_a_reason(api: Api) -> None:
    await join_host(api, [RTX])
    t = await api.tenant()
    ctl = controller(api, Health())
    c = (
        await t.client.post(
            "/v1/clusters",
            json={"name": "big", "gpu_type": "rtx-4090", "gpus_per_replica": 2, "container": "x"},
        )
    ).json()
    await ctl.step()
    got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
    assert got["status"] == "failed"
    assert "no ready host has 2 free RTX 4090" in got["status_reason"]


async def test_bad_cluster_requests(api: Api) -> None:
    await join_host(api, [RTX])
    a = await api.tenant("A")
    b = await api.tenant("B")
    body = {"name": "dup", "gpu_type": "rtx-4090", "container": "x"}
    assert (await a.client.post("/v1/clusters", json=body)).status_code == 201
    dup = await a.client.post("/v1/clusters", json=body)
    assert dup.status_code == 409
    assert (await b.client.post("/v1/clusters", json=body)).status_code == 201  # per-org names
    for bad, status in [
        ({**body, "name": "x2", "gpu_type": "tpu-v5"}, 400),
        ({**body, "name": "Bad Name"}, 400),
        ({**body, "name": "x3", "replicas": -1}, 422),
        ({**body, "name": "x4", "replicas": "two"}, 422),
        ({**body, "name": "x5", "surprise": 1}, 422),
    ]:
        r = await a.client.post("/v1/clusters", json=bad)
        assert r.status_code == status, (bad, r.text)
    mine = (await a.client.get("/v1/clusters")).json()["data"]
    assert len(mine) == 1
    assert (await b.client.get(f"/v1/clusters/{mine[0]['id']}")).status_code == 404
    assert (await b.client.delete(f"/v1/clusters/{mine[0]['id']}")).status_code == 404
    ro = await api.tenant("RO", scopes=["org:read"])
    assert (await ro.client.post("/v1/clusters", json=body)).status_code == 403


async def test_delete_drains_then_disappears(api: Api) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    health = Health()
    ctl = controller(api, health)
    c = (
        await t.client.post(
            "/v1/clusters", json={"name": "d", "gpu_type": "rtx-4090", "container": "x"}
        )
    ).json()
    await ctl.step()
    [wid] = await run_replicas(host, health)
    await ctl.step()
    r = await t.client.delete(f"/v1/clusters/{c['id']}")
    assert r.json()["status"] == "deleting"
    assert (await t.client.get(f"/v1/clusters/{c['id']}")).status_code == 404
    await ctl.step()  # draining first
    assert (await host.beat())["workloads"][0]["desired"] == "running"
    api.clock.advance(DRAIN)
    await ctl.step()
    assert (await host.beat())["workloads"][0]["desired"] == "removed"
    host.forget(wid)
    await host.beat()
    await ctl.step()
    offers = (await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"]
    assert len(offers) == 1  # the GPU is free again
    assert await ctl.step() == 0  # a deleted cluster is no longer due


async def test_a_replica_that_never_becomes_healthy_fails_the_cluster(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clusters_controller, "MAX_UNHEALTHY_CHECKS", 3)
    host = await join_host(api, [RTX])
    t = await api.tenant()
    health = Health()  # nothing ever passes
    ctl = controller(api, health)
    c = (
        await t.client.post(
            "/v1/clusters", json={"name": "mute", "gpu_type": "rtx-4090", "container": "x"}
        )
    ).json()
    for _ in range(20):
        await ctl.step()
        await run_replicas(host, health, ready=False)
        api.clock.advance(clusters_controller.SETTLE_SECONDS)  # a running replica's next probe
        got = (await t.client.get(f"/v1/clusters/{c['id']}")).json()
        if got["status"] == "failed":
            break
    assert got["status"] == "failed", got
    assert "never became healthy" in got["status_reason"]
    await ctl.step()  # no endless loop: nothing new is placed
    beat = await host.beat()
    assert all(a["desired"] == "removed" for a in beat["workloads"])
