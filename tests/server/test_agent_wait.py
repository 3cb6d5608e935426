"""``POST /v1/agent/wait``: an agent waiting between heartbeats is answered as soon as its host's
assignments change (a committed change, on this replica), or at its timeout."""

from __future__ import annotations

import asyncio
from typing import Any

from gpuyard.server.controllers.clusters import ClusterController, Probe, ProbeResult
from gpuyard.server.services.wakeups import Wakeups
from tests.harness import Api
from tests.server.market import FakeHost, join_host

RTX = ("RTX 4090", 24564)
LONG = 30.0  # a wait that is not answered early would hold the test this long


async def wait(host: FakeHost, **body: Any) -> dict[str, Any]:
    r = await host.client.post("/v1/agent/wait", json={"timeout_s": LONG, **body})
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def never_healthy(probe: Probe) -> ProbeResult:
    return ProbeResult(healthy=False, models=None)


async def test_a_waiting_agent_hears_of_a_new_replica_at_once(api: Api) -> None:
    host = await join_host(api, [RTX])
    other = await join_host(api, [("A100", 81920)], name="other")
    t = await api.tenant()
    waiting = asyncio.create_task(wait(host))
    elsewhere = asyncio.create_task(wait(other, timeout_s=0.5))
    r = await t.client.post(
        "/v1/clusters",
        json={"name": "c", "gpu_type": "rtx-4090", "replicas": 1, "container": "x"},
    )
    assert r.status_code == 201
    assert not waiting.done()  # creating a cluster places nothing by itself
    ctl = ClusterController(
        sessions=api.ctx.sessions,
        clock=api.clock,
        owner="t",
        prober=never_healthy,
    )
    assert await ctl.step() == 1  # places the replica on `host`
    answer = await asyncio.wait_for(waiting, LONG)
    assert answer["changed"] is True
    assert len((await host.beat())["workloads"]) == 1
    assert (await elsewhere)["changed"] is False  # another host is not woken


async def test_renting_an_instance_answers_the_wait_and_the_mark_covers_the_gap(api: Api) -> None:
    host = await join_host(api, [RTX, RTX])
    t = await api.tenant()
    first = await wait(host, timeout_s=0)
    assert first["changed"] is False and first["mark"]
    offer = (await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"][0]
    r = await t.client.post(
        f"/v1/orgs/{t.org_id}/vms", json={"offer_id": offer["id"], "command": "sleep 600"}
    )
    assert r.status_code == 201, r.text
    # No one was waiting when it was rented: the previous mark says a change came since.
    second = await wait(host, mark=first["mark"])
    assert second["changed"] is True and second["mark"] != first["mark"]
    assert (await wait(host, mark=second["mark"], timeout_s=0))["changed"] is False
    # A mark from another replica is no evidence: the wait runs its course.
    assert (await wait(host, mark="ffffffff.7", timeout_s=0))["changed"] is False

    waiting = asyncio.create_task(wait(host, mark=second["mark"]))
    vm = r.json()
    assert (await t.client.post(f"/v1/orgs/{t.org_id}/vms/{vm['id']}/stop")).status_code == 200
    assert (await asyncio.wait_for(waiting, LONG))["changed"] is True


async def test_a_failed_change_wakes_no_one(api: Api) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    mark = (await wait(host, timeout_s=0))["mark"]
    r = await t.client.post(
        f"/v1/orgs/{t.org_id}/vms", json={"offer_id": 999999, "command": "sleep 600"}
    )
    assert r.status_code == 404
    assert (await wait(host, mark=mark, timeout_s=0))["changed"] is False


async def test_wait_needs_a_live_host_credential_and_a_sane_body(api: Api) -> None:
    host = await join_host(api, [RTX])
    stranger = api.client_for("gyh_not-a-host")
    r = await stranger.post("/v1/agent/wait", json={"timeout_s": 0})
    assert r.status_code == 401 and r.json()["code"] == "invalid_host_credential"
    r = await api.client.post("/v1/agent/wait", json={"timeout_s": 0})  # an API key is not one
    assert r.status_code == 401
    for bad in ({"timeout_s": -1}, {"timeout_s": 3600}, {"timeout_s": "soon"}, {"x": 1}):
        r = await host.client.post("/v1/agent/wait", json=bad)
        assert r.status_code in (400, 422), (bad, r.text)
    assert (await api.client.delete(f"/v1/admin/hosts/{host.host_id}")).status_code == 200
    r = await host.client.post("/v1/agent/wait", json={"timeout_s": 0})
    assert r.status_code in (401, 403)


async def test_each_commit_is_relayed_and_a_relayed_change_answers_the_wait(api: Api) -> None:
    """Under --workers N a worker passes its commits' keys to its parent, and the others' come
    back through ``fire``: a change another worker committed answers a wait held here."""
    host = await join_host(api, [RTX])
    t = await api.tenant()
    relayed: list[set[str]] = []
    api.ctx.wakeups.relay_commits(relayed.append)
    offer = (await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"][0]
    r = await t.client.post(
        f"/v1/orgs/{t.org_id}/vms", json={"offer_id": offer["id"], "command": "sleep 600"}
    )
    assert r.status_code == 201, r.text
    assert any(f"host:{host.host_id}" in keys for keys in relayed), relayed
    count = len(relayed)
    r = await t.client.post(
        f"/v1/orgs/{t.org_id}/vms", json={"offer_id": 999999, "command": "sleep 600"}
    )
    assert r.status_code == 404
    assert len(relayed) == count  # a rolled-back change is not passed on

    mark = (await wait(host, timeout_s=0))["mark"]
    waiting = asyncio.create_task(wait(host, mark=mark))
    # What the parent passes on; held or not yet, the wait hears of it (the mark covers the gap).
    api.ctx.wakeups.fire({f"host:{host.host_id}"})
    assert (await asyncio.wait_for(waiting, LONG))["changed"] is True
    assert len(relayed) == count  # what came from elsewhere is not passed back


async def test_a_stopping_server_answers_every_wait_at_once() -> None:
    wakeups = Wakeups()
    hour = 3600.0  # not answered early, a wait would outlast the test's deadline (LONG)
    held = asyncio.create_task(wakeups.wait_for_host("host_a", mark=None, seconds=hour))
    await asyncio.sleep(0)  # one turn of the loop: the task is now waiting
    assert not held.done()

    wakeups.release_waits()

    assert (await asyncio.wait_for(held, LONG))[0] is False  # answered, "nothing changed"
    later = wakeups.wait_for_host("host_b", mark=None, seconds=hour)
    assert (await asyncio.wait_for(later, LONG))[0] is False
    # a change this server already counted is still told at once
    wakeups.fire({"host:host_a"})
    assert (await wakeups.wait_for_host("host_a", mark=held.result()[1], seconds=hour))[0]
