"""Joining hosts, their facts, operator actions, and host loss."""

from __future__ import annotations

from pathlib import Path

from tests.harness import Api, start_api
from tests.server.market import facts, join_host

RTX = ("RTX 4090", 24564)


async def test_join_lists_the_host_and_its_gpus(api: Api) -> None:
    host = await join_host(api, [RTX, RTX])
    h = (await api.client.get(f"/v1/admin/hosts/{host.host_id}")).json()
    assert h["status"] == "ready"
    assert [g["name"] for g in h["gpus"]] == ["RTX 4090", "RTX 4090"]
    assert h["facts"]["cuda_version"] == "12.4"
    listed = (await api.client.get("/v1/admin/hosts")).json()["data"]
    assert [x["id"] for x in listed] == [host.host_id]
    ev = (
        await api.client.get(
            f"/v1/orgs/{api.operator_org}/events", params={"type": "host.registered"}
        )
    ).json()
    assert ev["data"][0]["subject_id"] == host.host_id


async def test_join_tokens_are_single_use_and_revocable(api: Api) -> None:
    anon = api.client_for(None)
    token = (await api.client.post("/v1/admin/join-tokens", json={})).json()
    body = {"token": token["token"], "facts": facts([RTX])}
    assert (await anon.post("/v1/agent/register", json=body)).status_code == 200
    again = await anon.post("/v1/agent/register", json=body)
    assert again.status_code == 401
    assert again.json()["code"] == "join_token_used"
    other = (await api.client.post("/v1/admin/join-tokens", json={})).json()
    r = await api.client.delete(f"/v1/admin/join-tokens/{other['id']}")
    assert r.json()["status"] == "revoked"
    revoked = await anon.post(
        "/v1/agent/register", json={"token": other["token"], "facts": facts([RTX])}
    )
    assert revoked.status_code == 401
    assert revoked.json()["code"] == "join_token_revoked"
    unknown = await anon.post(
        "/v1/agent/register", json={"token": "gyj_nope", "facts": facts([RTX])}
    )
    assert unknown.json()["code"] == "invalid_join_token"
    hosts = (await api.client.get("/v1/admin/hosts")).json()["data"]
    assert len(hosts) == 1


async def test_malformed_facts_are_refused_and_write_nothing(api: Api) -> None:
    token = (await api.client.post("/v1/admin/join-tokens", json={})).json()["token"]
    anon = api.client_for(None)
    bad = [
        facts([RTX], cpu_cores=0),
        facts([RTX], ram_mb="lots"),
        facts([RTX], port_range={"start": 5, "end": 1}),
        {**facts([RTX]), "gpus": [{"index": 0, "uuid": "a", "name": "x"}] * 2},
        {"gpus": []},
    ]
    for body in bad:
        r = await anon.post("/v1/agent/register", json={"token": token, "facts": body})
        assert r.status_code == 422, r.text
    good = await anon.post("/v1/agent/register", json={"token": token, "facts": facts([RTX])})
    assert good.status_code == 200  # the failed attempts did not spend the token


async def test_heartbeat_needs_the_hosts_own_credential(api: Api) -> None:
    host = await join_host(api, [RTX])
    anon = api.client_for(None)
    body = {"facts": host.facts, "workloads": []}
    assert (await anon.post("/v1/agent/heartbeat", json=body)).status_code == 401
    r = await api.client_for(api.operator_key).post("/v1/agent/heartbeat", json=body)
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_host_credential"
    r = await api.client_for("gyh_" + "x" * 43).post("/v1/agent/heartbeat", json=body)
    assert r.status_code == 401


async def test_cordon_and_remove(api: Api) -> None:
    host = await join_host(api, [RTX])
    t = await api.tenant()
    offers = f"/v1/orgs/{t.org_id}/offers"
    assert len((await t.client.get(offers)).json()["data"]) == 1
    r = await api.client.post(f"/v1/admin/hosts/{host.host_id}/cordon")
    assert r.json()["cordoned"] is True
    assert (await t.client.get(offers)).json()["data"] == []
    await api.client.post(f"/v1/admin/hosts/{host.host_id}/uncordon")
    assert len((await t.client.get(offers)).json()["data"]) == 1
    r = await api.client.delete(f"/v1/admin/hosts/{host.host_id}")
    assert r.json()["status"] == "removed"
    r = await host.client.post("/v1/agent/heartbeat", json={"facts": host.facts, "workloads": []})
    assert r.status_code == 401
    assert (await t.client.get(offers)).json()["data"] == []


async def test_missed_heartbeats_make_a_host_unreachable_then_offline_and_back(api: Api) -> None:
    from gpuyard.server.controllers.hosts import HostHealthController

    host = await join_host(api, [RTX])
    s = api.ctx.settings
    ctl = HostHealthController(
        sessions=api.ctx.sessions,
        heard=api.ctx.heard,
        clock=api.clock,
        owner="t",
        unreachable_after=s.host_unreachable_seconds,
        offline_after=s.host_offline_seconds,
    )
    url = f"/v1/admin/hosts/{host.host_id}"
    api.clock.advance(seconds=s.host_unreachable_seconds - 1)
    assert await ctl.step() == 0
    api.clock.advance(seconds=2)
    assert await ctl.step() == 1
    assert (await api.client.get(url)).json()["status"] == "unreachable"
    api.clock.advance(seconds=s.host_offline_seconds)
    assert await ctl.step() == 1
    assert (await api.client.get(url)).json()["status"] == "offline"
    assert await ctl.step() == 0
    await host.beat()
    assert (await api.client.get(url)).json()["status"] == "ready"
    types = [
        e["type"]
        for e in (
            await api.client.get(f"/v1/orgs/{api.operator_org}/events", params={"limit": 100})
        ).json()["data"]
        if e["subject_id"] == host.host_id
    ]
    assert types == ["host.registered", "host.unreachable", "host.offline", "host.recovered"]


async def test_gpu_types_and_prices(api: Api) -> None:
    await join_host(api, [RTX, RTX, ("A100 80GB", 81920)])
    t = await api.tenant()
    r = await api.client.put("/v1/admin/prices/rtx-4090", json={"cents_per_gpu_hour": 39})
    assert r.status_code == 200
    assert r.json()["gpu_type"] == "rtx-4090"
    same = await api.client.put("/v1/admin/prices/RTX_4090", json={"cents_per_gpu_hour": 40})
    assert same.json()["cents_per_gpu_hour"] == 40
    assert len((await api.client.get("/v1/admin/prices")).json()) == 1
    gpus = {g["id"]: g for g in (await t.client.get("/v1/gpus")).json()["data"]}
    assert gpus["rtx-4090"]["total"] == 2 and gpus["rtx-4090"]["available"] == 2
    assert gpus["rtx-4090"]["price_cents_per_hour"] == {"min": 40, "max": 40}
    assert gpus["a100-80gb"]["vram_mb"] == 81920
    offers = (
        await t.client.get(
            f"/v1/orgs/{t.org_id}/offers", params={"query": "gpu_name=RTX_4090 num_gpus=2"}
        )
    ).json()["data"]
    assert [o["price_cents_per_hour"] for o in offers] == [80]
    bad = await api.client.put("/v1/admin/prices/rtx-4090", json={"cents_per_gpu_hour": -1})
    assert bad.status_code == 422
    assert (
        await t.client.put("/v1/admin/prices/rtx-4090", json={"cents_per_gpu_hour": 1})
    ).status_code == 403


async def test_the_default_price_comes_from_the_server_that_starts(
    db_url: str, tmp_path: Path
) -> None:
    """Every service reads one price book; a start with another default re-prices the offers
    of unpriced types, and the default is never listed as an operator price."""
    async with start_api(db_url, tmp_path) as api:
        await join_host(api, [RTX, ("A100 80GB", 81920)])
        await api.client.put("/v1/admin/prices/a100-80gb", json={"cents_per_gpu_hour": 200})
    async with start_api(db_url, tmp_path, default_gpu_price_cents=75) as api:
        t = await api.tenant()
        offers = (await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"]
        assert sorted(o["price_cents_per_hour"] for o in offers) == [75, 200]
        gpus = {g["id"]: g for g in (await t.client.get("/v1/gpus")).json()["data"]}
        assert gpus["rtx-4090"]["price_cents_per_hour"] == {"min": 75, "max": 75}
        listed = (await api.client.get("/v1/admin/prices")).json()
        assert [p["gpu_type"] for p in listed] == ["a100-80gb"]
        r = await api.client.delete("/v1/admin/prices/a100-80gb")
        assert r.status_code == 204
        offers = (await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"]
        assert [o["price_cents_per_hour"] for o in offers] == [75, 75]
