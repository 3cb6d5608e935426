"""Offers and instances: search, rent, run, stop, destroy; allocation under concurrency."""

from __future__ import annotations

import asyncio

from tests.harness import Api
from tests.server.market import join_host

RTX = ("RTX 4090", 24564)
A100 = ("A100 80GB", 81920)


async def offers(t, **params) -> list[dict]:  # type: ignore[no-untyped-def]
    r = await t.client.get(f"/v1/orgs/{t.org_id}/offers", params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def test_free_gpus_split_into_bundles(api: Api) -> None:
    await join_host(api, [RTX] * 4 + [A100])
    t = await api.tenant()
    found = await offers(t)
    assert sorted((o["gpu_name"], o["num_gpus"]) for o in found) == [
        ("A100 80GB", 1),
        ("RTX 4090", 1),
        ("RTX 4090", 2),
        ("RTX 4090", 4),
    ]
    for spelled in ["rtx-4090", "RTX_4090", "RTX 4090"]:
        hits = await offers(t, q=f'{{"gpu_name": {{"eq": "{spelled}"}}}}')
        assert {o["gpu_name"] for o in hits} == {"RTX 4090"}, spelled
    big = await offers(t, query="num_gpus>=2", order="dph_total-")
    assert [o["num_gpus"] for o in big] == [4, 2]


async def test_bad_queries_are_400_with_the_field(api: Api) -> None:
    t = await api.tenant()
    url = f"/v1/orgs/{t.org_id}/offers"
    for params in [
        {"q": '{"gpu_nam": {"eq": 1}}'},
        {"q": '{"num_gpus": {"like": 2}}'},
        {"q": '{"num_gpus": {"gte": "many"}}'},
        {"q": "not json"},
        {"query": "num_gpus>>2"},
        {"order": "price-"},
    ]:
        r = await t.client.get(url, params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["error"]


async def rent(t, offer_id: int, **body) -> dict:  # type: ignore[no-untyped-def]
    r = await t.client.post(
        f"/v1/orgs/{t.org_id}/vms", json={"offer_id": offer_id, "command": "sleep 600", **body}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_rent_run_stop_start_destroy(api: Api) -> None:
    host = await join_host(api, [RTX] * 2)
    t = await api.tenant()
    two = next(o for o in await offers(t) if o["num_gpus"] == 2)
    vm = await rent(t, two["id"], label="train", env={"A": "1"})
    assert vm["actual_status"] == "loading"
    assert vm["intended_status"] == "running"
    assert vm["price_cents_per_hour"] == 2 * api.ctx.settings.default_gpu_price_cents
    assert await offers(t) == []  # every GPU is taken

    beat = await host.beat()
    [assigned] = beat["workloads"]
    assert assigned["desired"] == "running"
    spec = assigned["spec"]
    assert spec["gpu_indices"] == [0, 1]
    assert spec["command"] == "sleep 600" and spec["env"] == {"A": "1"}
    host.report(spec["id"], "running", host_port=40001)
    await host.beat()
    url = f"/v1/orgs/{t.org_id}/vms/{vm['id']}"
    got = (await t.client.get(url)).json()
    assert got["actual_status"] == "running" and got["port"] == 40001

    assert (await t.client.post(f"{url}/stop")).json()["intended_status"] == "stopped"
    assert (await host.beat())["workloads"][0]["desired"] == "stopped"
    host.report(spec["id"], "stopped")
    await host.beat()
    assert (await t.client.get(url)).json()["actual_status"] == "stopped"
    started = await t.client.post(f"{url}/start")
    assert started.json()["intended_status"] == "running"
    again = (await host.beat())["workloads"][0]
    assert again["desired"] == "running"
    assert again["spec"]["labels"]["generation"] == "2"  # runs again from the start

    r = await t.client.patch(url, json={"label": "renamed"})
    assert r.json()["label"] == "renamed"

    gone = await t.client.delete(url)
    assert gone.status_code == 200
    assert (await t.client.get(url)).status_code == 404
    assert (await host.beat())["workloads"][0]["desired"] == "removed"
    assert await offers(t) == []  # GPUs are freed only once the host confirms
    host.forget(spec["id"])
    assert (await host.beat())["workloads"] == []
    assert len(await offers(t)) == 2
    types = [
        e["type"]
        for e in (await t.client.get(f"/v1/orgs/{t.org_id}/events", params={"limit": 100})).json()[
            "data"
        ]
        if e["subject_id"] == vm["id"]
    ]
    assert types == [
        "instance.created",
        "instance.running",
        "instance.stop_requested",
        "instance.stopped",
        "instance.start_requested",
        "instance.destroyed",
    ]


async def test_a_command_that_exits_at_once_reads_exited_with_its_logs(api: Api) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    vm = await rent(t, (await offers(t))[0]["id"])
    [a] = (await host.beat())["workloads"]
    host.report(a["spec"]["id"], "exited", exit_code=3, log_tail="starting\nboom: bad config\n")
    await host.beat()
    url = f"/v1/orgs/{t.org_id}/vms/{vm['id']}"
    got = (await t.client.get(url)).json()
    assert got["actual_status"] == "exited" and got["exit_code"] == 3
    assert got["intended_status"] == "running"
    logs = await t.client.get(f"{url}/logs", params={"tail": 1})
    assert logs.text == "boom: bad config\n"
    # the host is told to keep it as it is: no restart loop
    [a2] = (await host.beat())["workloads"]
    assert a2["spec"] == a["spec"]


async def test_a_running_instance_shows_its_output_as_the_host_reports_it(api: Api) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    vm = await rent(t, (await offers(t))[0]["id"])
    url = f"/v1/orgs/{t.org_id}/vms/{vm['id']}/logs"
    [a] = (await host.beat())["workloads"]
    wid = a["spec"]["id"]
    empty = await t.client.get(url)
    assert empty.status_code == 200 and empty.text == ""
    assert empty.headers["x-workload-state"] == "pending" and "x-log-size" not in empty.headers

    host.report(wid, "running", host_port=40001, log_tail="step 1\nstep 2\n", log_size=14)
    await host.beat()
    logs = await t.client.get(url)
    assert logs.text == "step 1\nstep 2\n"
    assert logs.headers["x-log-size"] == "14" and logs.headers["x-log-start"] == "0"
    assert logs.headers["x-workload-state"] == "running"
    assert (await t.client.get(url, params={"tail": 1})).text == "step 2\n"

    host.report(wid, "running", host_port=40001)  # output unchanged: the agent sends no tail
    await host.beat()
    assert (await t.client.get(url)).text == "step 1\nstep 2\n"  # still there

    host.report(wid, "running", host_port=40001, log_tail="step 2\nstep 3\n", log_size=21)
    await host.beat()
    new = await t.client.get(url, params={"after": 14})  # a follower that showed 14 bytes
    assert new.text == "step 3\n" and new.headers["x-log-start"] == "14"
    lost = await t.client.get(url, params={"after": 2})  # older than what is kept
    assert lost.text == "step 2\nstep 3\n" and lost.headers["x-log-start"] == "7"
    for bad in ({"after": -1}, {"after": "x"}, {"tail": 0}):
        r = await t.client.get(url, params=bad)
        assert r.status_code in (400, 422) and r.json()["error"], (bad, r.text)

    host.report(wid, "exited", exit_code=0, log_tail="step 3\ndone\n", log_size=26)
    await host.beat()
    done = await t.client.get(url, params={"after": 21})
    assert done.text == "done\n" and done.headers["x-workload-state"] == "exited"


async def test_two_rentals_of_the_last_gpu(api: Api) -> None:
    await join_host(api, [RTX])
    a = await api.tenant("A")
    b = await api.tenant("B")
    [offer] = await offers(a)
    results = await asyncio.gather(
        *[
            c.client.post(
                f"/v1/orgs/{c.org_id}/vms", json={"offer_id": offer["id"], "command": "x"}
            )
            for c in (a, b, a, b)
        ]
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 409, 409, 409]
    loser = next(r for r in results if r.status_code == 409)
    assert loser.json()["code"] == "offer_unavailable"
    vms = [
        *(await a.client.get(f"/v1/orgs/{a.org_id}/vms")).json()["data"],
        *(await b.client.get(f"/v1/orgs/{b.org_id}/vms")).json()["data"],
    ]
    assert len(vms) == 1


async def test_bad_rentals_change_nothing(api: Api) -> None:
    await join_host(api, [RTX])
    t = await api.tenant()
    [offer] = await offers(t)
    url = f"/v1/orgs/{t.org_id}/vms"
    for body, status, code in [
        ({"offer_id": 999_999_999}, 404, "no_such_ask"),
        ({"offer_id": offer["id"] + 1}, 409, "offer_unavailable"),
        ({"offer_id": "x"}, 422, "validation_error"),
        ({"offer_id": offer["id"], "env": {"A": 1}}, 422, "validation_error"),
        ({"offer_id": offer["id"], "gpus": 2}, 422, "validation_error"),
    ]:
        r = await t.client.post(url, json=body)
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
    assert (await t.client.get(url)).json()["data"] == []
    assert len(await offers(t)) == 1


async def test_instances_are_org_private(api: Api) -> None:
    await join_host(api, [RTX])
    a = await api.tenant("A")
    b = await api.tenant("B")
    vm = await rent(a, (await offers(a))[0]["id"])
    for method, path in [
        ("GET", f"/v1/orgs/{b.org_id}/vms/{vm['id']}"),
        ("DELETE", f"/v1/orgs/{b.org_id}/vms/{vm['id']}"),
        ("POST", f"/v1/orgs/{b.org_id}/vms/{vm['id']}/stop"),
        ("GET", f"/v1/orgs/{a.org_id}/vms/{vm['id']}"),
    ]:
        r = await b.client.request(method, path)
        assert r.status_code == 404, (method, path)
    assert (await a.client.get(f"/v1/orgs/{a.org_id}/vms/{vm['id']}")).status_code == 200


async def test_instances_on_an_offline_host_read_offline(api: Api) -> None:
    from gpuyard.server.controllers.hosts import HostHealthController

    host = await join_host(api, [RTX])
    t = await api.tenant()
    vm = await rent(t, (await offers(t))[0]["id"])
    [a] = (await host.beat())["workloads"]
    host.report(a["spec"]["id"], "running")
    await host.beat()
    s = api.ctx.settings
    ctl = HostHealthController(
        sessions=api.ctx.sessions,
        heard=api.ctx.heard,
        clock=api.clock,
        owner="t",
        unreachable_after=s.host_unreachable_seconds,
        offline_after=s.host_offline_seconds,
    )
    api.clock.advance(seconds=s.host_offline_seconds + 1)
    await ctl.step()
    url = f"/v1/orgs/{t.org_id}/vms/{vm['id']}"
    assert (await t.client.get(url)).json()["actual_status"] == "offline"
    # it comes back still running the same workload: nothing duplicated, nothing lost
    beat = await host.beat()
    assert [w["spec"]["id"] for w in beat["workloads"]] == [a["spec"]["id"]]
    assert (await t.client.get(url)).json()["actual_status"] == "running"


async def test_ssh_keys_reach_new_instances(api: Api) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    key = (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq5Ew2e3Cm7m7b7xWJ1CqZbT1UnR1Wmx3x8m2f3D9o1 me@laptop"
    )
    r = await t.client.post(f"/v1/orgs/{t.org_id}/ssh-keys", json={"public_key": key})
    assert r.status_code == 201, r.text
    assert r.json()["fingerprint"].startswith("SHA256:")
    dup = await t.client.post(f"/v1/orgs/{t.org_id}/ssh-keys", json={"public_key": key})
    assert dup.status_code == 409
    bad = await t.client.post(f"/v1/orgs/{t.org_id}/ssh-keys", json={"public_key": "hello"})
    assert bad.status_code == 400
    await rent(t, (await offers(t))[0]["id"])
    [a] = (await host.beat())["workloads"]
    assert a["spec"]["ssh_authorized_keys"] == [key]


async def test_a_host_cannot_report_on_another_hosts_workloads(api: Api) -> None:
    a = await join_host(api, [RTX], name="a")
    b = await join_host(api, [RTX], name="b")
    t = await api.tenant()
    found = await offers(t)
    on_a = next(o for o in found if o["host_id"] == a.host_id)
    vm = await rent(t, on_a["id"])
    [wl] = (await a.beat())["workloads"]
    b.report(wl["spec"]["id"], "exited", exit_code=1, log_tail="forged")
    assert (await b.beat())["workloads"] == []  # b is not told about a's workload
    got = (await t.client.get(f"/v1/orgs/{t.org_id}/vms/{vm['id']}")).json()
    assert got["actual_status"] == "loading" and got["exit_code"] is None
