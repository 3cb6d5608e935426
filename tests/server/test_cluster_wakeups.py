"""Which clusters look again when GPUs are freed: only those that want that kind of GPU."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from gpuyard.server import orm
from gpuyard.server.controllers.clusters import ClusterController, Probe, ProbeResult
from tests.harness import Api
from tests.server.market import join_host


async def never_healthy(probe: Probe) -> ProbeResult:
    return ProbeResult(healthy=False, models=None)


async def next_runs(api: Api) -> dict[str, datetime | None]:
    async with api.ctx.sessions() as s:
        rows = await s.execute(select(orm.Cluster.name, orm.Cluster.next_run_at))
        return {name: at for name, at in rows.all()}


async def test_a_freed_gpu_wakes_the_clusters_that_want_its_kind_only(api: Api) -> None:
    host = await join_host(api, [("RTX 4090", 24564)])
    other = await join_host(api, [("A100", 81920)], name="other")
    t = await api.tenant()
    rented = {}
    for offer in (await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"]:
        r = await t.client.post(
            f"/v1/orgs/{t.org_id}/vms", json={"offer_id": offer["id"], "command": "sleep 600"}
        )
        assert r.status_code == 201, r.text
        rented[offer["host_id"]] = r.json()
    assert set(rented) == {host.host_id, other.host_id}
    for h in (host, other):
        [assigned] = (await h.beat())["workloads"]
        h.report(assigned["spec"]["id"], "running", host_port=40000)
        await h.beat()
    vm = rented[host.host_id]

    for name, gpu in (("wants-rtx", "rtx-4090"), ("wants-a100", "a100")):
        r = await t.client.post(
            "/v1/clusters", json={"name": name, "gpu_type": gpu, "replicas": 1, "container": "x"}
        )
        assert r.status_code == 201, r.text
    ctl = ClusterController(
        sessions=api.ctx.sessions, clock=api.clock, owner="t", prober=never_healthy
    )
    assert await ctl.step() == 2  # neither finds room: the only GPU is rented
    before = await next_runs(api)
    assert before["wants-rtx"] is not None and before["wants-a100"] is not None

    r = await t.client.delete(f"/v1/orgs/{t.org_id}/vms/{vm['id']}")
    assert r.status_code in (200, 204), r.text
    [removed] = (await host.beat())["workloads"]
    assert removed["desired"] == "removed"
    host.forget(removed["spec"]["id"])
    await host.beat()  # the host runs it no more: the server forgets it and frees the GPU

    after = await next_runs(api)
    assert after["wants-rtx"] is None  # due at once: an RTX 4090 is free
    assert after["wants-a100"] == before["wants-a100"]  # nothing it could use was freed
    assert await ctl.step() == 1
    assert len((await host.beat())["workloads"]) == 1  # the replica took the freed GPU
