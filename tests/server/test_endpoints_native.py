"""Serverless endpoints and workergroups on the native API (``/v1/orgs/{org_id}/…``), on both
databases: the same rows the Vast dialect shows, paged, with native errors."""

from __future__ import annotations

from tests.harness import Api


async def test_endpoints_and_workergroups_natively(api: Api) -> None:
    t = await api.tenant()
    base = f"/v1/orgs/{t.org_id}"
    r = await t.client.post(
        f"{base}/endpoints", json={"name": "chat", "min_load": 5, "cold_workers": 1}
    )
    assert r.status_code == 201, r.text
    ep = r.json()
    assert ep["id"].startswith("ep_") and ep["state"] == "active" and ep["min_load"] == 5.0
    assert ep["api_key"].startswith("ep-") and ep["target_util"] == 0.9
    assert (await t.client.get(f"{base}/endpoints/{ep['number']}")).json()["id"] == ep["id"]
    vast = (await t.client.get("/api/v0/endptjobs/")).json()["results"]
    assert [e["endpoint_id"] for e in vast] == [ep["id"]]  # one service, two dialects

    r = await t.client.patch(f"{base}/endpoints/{ep['id']}", json={"target_util": 0.5})
    assert r.status_code == 200 and r.json()["target_util"] == 0.5 and r.json()["min_load"] == 5
    r = await t.client.patch(f"{base}/endpoints/{ep['id']}", json={"target_util": 2})
    assert r.status_code == 400 and r.json()["param"] == "target_util", r.text
    r = await t.client.patch(f"{base}/endpoints/{ep['id']}", json={"max_workers": 0})
    assert r.status_code == 400 and r.json()["param"] == "max_workers", r.text  # < cold_workers
    r = await t.client.patch(f"{base}/endpoints/{ep['id']}", json={"name": None})
    assert r.status_code in (400, 422) and "name" in r.text
    r = await t.client.post(f"{base}/endpoints", json={"name": "chat"})
    assert r.status_code == 409 and r.json()["code"] == "endpoint_name_taken"
    r = await t.client.post(f"{base}/endpoints", json={"name": "x", "bogus": 1})
    assert r.status_code in (400, 422) and "bogus" in r.text

    r = await t.client.post(
        f"{base}/workergroups",
        json={
            "endpoint_id": ep["id"],
            "launch_args": "--image python --env '-p 9000:9000 -e A=1'",
            "search_params": "gpu_name=RTX_4090 num_gpus=2",
            "gpu_ram": 20,
        },
    )
    assert r.status_code == 201, r.text
    g = r.json()
    assert g["id"].startswith("wg_") and g["endpoint_id"] == ep["id"]
    assert g["image"] == "python" and g["gpu_type"] == "rtx4090" and g["test_workers"] == 3
    r = await t.client.patch(f"{base}/workergroups/{g['id']}", json={"gpu_ram": 30})
    assert r.status_code == 200 and r.json()["gpu_ram"] == 30.0 and r.json()["image"] == "python"
    listed = (await t.client.get(f"{base}/workergroups", params={"endpoint_id": ep["id"]})).json()
    assert [x["id"] for x in listed["data"]] == [g["id"]]
    assert (await t.client.get(f"{base}/endpoints/{ep['id']}/workers")).json() == []

    other = await api.tenant("Other")
    for path in (f"{base}/endpoints/{ep['id']}", f"/v1/orgs/{other.org_id}/endpoints/{ep['id']}"):
        r = await other.client.get(path)
        assert r.status_code == 404, r.text
    r = await other.client.delete(f"/v1/orgs/{other.org_id}/workergroups/{g['id']}")
    assert r.status_code == 404

    assert (await t.client.delete(f"{base}/workergroups/{g['id']}")).status_code == 204
    r = await t.client.delete(f"{base}/endpoints/{ep['id']}")
    assert r.status_code == 200 and r.json()["deleting"] is True
    assert (await t.client.get(f"{base}/endpoints/{ep['id']}")).status_code == 404


async def test_listing_pages_past_the_first(api: Api) -> None:
    t = await api.tenant()
    base = f"/v1/orgs/{t.org_id}/endpoints"
    for i in range(23):
        assert (await t.client.post(base, json={"name": f"e{i}"})).status_code == 201
    first = (await t.client.get(base)).json()
    assert len(first["data"]) == 20 and first["has_more"] is True
    rest = (await t.client.get(base, params={"cursor": first["next_cursor"]})).json()
    assert len(rest["data"]) == 3 and rest["has_more"] is False
    names = [e["name"] for e in first["data"] + rest["data"]]
    assert names == [f"e{i}" for i in range(23)]
    vast = (await t.client.get("/api/v0/endptjobs/")).json()["results"]
    assert len(vast) == 23  # the Vast listing is whole
