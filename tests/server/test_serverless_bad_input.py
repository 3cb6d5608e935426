"""Bad input to the serverless API answers a clear error and changes nothing, on both databases:
knobs out of range (400 with the field named), another org's ids (404), wrong keys and tokens
on the routing and worker routes, malformed bodies."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import Api, Tenant
from tests.server.market import join_host
from tests.server.serverless_kit import RTX, autoscaler, endpoint_body, make_endpoint, settle


def assert_vast_error(r: Any, status: int, param_word: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["msg"], body
    if param_word is not None:
        assert param_word in body["msg"], body


async def count_endpoints(t: Tenant) -> int:
    return len((await t.client.get("/api/v0/endptjobs/")).json()["results"])


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"target_util": 1.5}, "target_util"),
        ({"target_util": 0}, "target_util"),
        ({"min_load": -1}, "min_load"),
        ({"cold_workers": 5, "max_workers": 2}, "max_workers"),
        ({"cold_mult": 0.5}, "cold_mult"),
        ({"inactivity_timeout": -5}, "inactivity_timeout"),
        ({"max_workers": 100_000}, "max_workers"),
        ({"endpoint_name": ""}, "endpoint_name"),
        ({"target_util": "high"}, "target_util"),
    ],
)
async def test_bad_knobs_are_refused_with_the_field_named(
    api: Api, over: dict[str, Any], field: str
) -> None:
    t = await api.tenant()
    r = await t.client.post("/api/v0/endptjobs/", json=endpoint_body(**over))
    assert r.status_code in (400, 422), r.text
    assert field in r.text
    assert await count_endpoints(t) == 0
    ep = await make_endpoint(t)
    r = await t.client.put(f"/api/v0/endptjobs/{ep['id']}/", json={**over, "endpoint_name": None})
    if field != "endpoint_name":
        assert r.status_code in (400, 422), r.text
        assert field in r.text
    [row] = (await t.client.get("/api/v0/endptjobs/")).json()["results"]
    assert (row["target_util"], row["min_load"], row["max_workers"]) == (0.9, 0.0, 3)


async def test_another_orgs_ids_are_not_found(api: Api) -> None:
    t = await api.tenant("Acme")
    other = await api.tenant("Other")
    ep = await make_endpoint(t)
    group = ep["workergroup"]
    c = other.client
    assert_vast_error(await c.get(f"/api/v0/endptjobs/{ep['id']}/"), 404)
    assert_vast_error(await c.put(f"/api/v0/endptjobs/{ep['id']}/", json={"min_load": 5}), 404)
    assert_vast_error(await c.delete(f"/api/v0/endptjobs/{ep['id']}/"), 404)
    assert_vast_error(await c.put(f"/api/v0/autojobs/{group}/", json={"gpu_ram": 8}), 404)
    assert_vast_error(await c.delete(f"/api/v0/workergroups/{group}/"), 404)
    assert_vast_error(await c.post("/get_endpoint_workers/", json={"id": ep["id"]}), 404)
    assert_vast_error(await c.post("/get_workergroup_workers/", json={"id": group}), 404)
    assert_vast_error(await c.post("/get_endpoint_logs/", json={"id": ep["id"]}), 404)
    assert_vast_error(await c.post("/get_autogroup_logs/", json={"id": group}), 404)
    joined = {"endpoint_id": ep["id"], "launch_args": "--image x"}
    assert_vast_error(await c.post("/api/v0/autojobs/", json=joined), 404)
    by_name = {"endpoint_name": ep["endpoint_name"], "launch_args": "--image x"}
    assert_vast_error(await c.post("/api/v0/autojobs/", json=by_name), 404)
    assert (await c.get("/api/v0/autojobs/")).json()["results"] == []
    native = await c.get(f"/v1/orgs/{t.org_id}/endpoints")
    assert native.status_code == 404, native.text
    # nothing of Acme's changed
    [row] = (await t.client.get("/api/v0/endptjobs/")).json()["results"]
    assert row["min_load"] == 0.0
    assert len((await t.client.get("/api/v0/workergroups/")).json()["results"]) == 1


async def test_bad_workergroups(api: Api) -> None:
    t = await api.tenant()
    ep = await make_endpoint(t)
    cases = [
        ({"endpoint_id": ep["id"]}, "template_hash"),  # nothing to run
        ({"launch_args": "--image x"}, "endpoint_id"),  # no endpoint
        ({"endpoint_id": ep["id"], "template_hash": "f" * 32}, "template"),
        ({"endpoint_id": ep["id"], "launch_args": "--image 'x"}, "launch_args"),
        ({"endpoint_id": ep["id"], "launch_args": "--image x", "gpu_ram": -1}, "gpu_ram"),
        (
            {"endpoint_id": ep["id"], "launch_args": "--image x", "search_params": "gpu_ram>>2"},
            "search_params",
        ),
        ({"endpoint_id": ep["id"], "launch_args": "--image x", "test_workers": 1000}, "test"),
    ]
    for body, word in cases:
        r = await t.client.post("/api/v0/autojobs/", json=body)
        assert r.status_code in (400, 404, 422), (body, r.text)
        assert word in r.text, (body, r.text)
    assert len((await t.client.get("/api/v0/autojobs/")).json()["results"]) == 1


async def test_routing_refuses_bad_keys_and_starts_nothing(api: Api) -> None:
    await join_host(api, [RTX])
    t = await api.tenant()
    ctl = autoscaler(api)
    ep = await make_endpoint(t)
    plain = api.client_for(None)
    body = {"endpoint": ep["endpoint_name"], "cost": 10, "request_idx": 0}
    assert_vast_error(await plain.post("/route/", json=body), 401)
    assert_vast_error(await plain.post("/route/", json={**body, "api_key": "ep-nope"}), 401)
    assert_vast_error(await plain.post("/route/", json={**body, "api_key": t.key}), 401)
    wrong = {**body, "api_key": ep["api_key"], "endpoint": "other"}
    assert_vast_error(await plain.post("/route/", json=wrong), 404)
    negative = {**body, "api_key": ep["api_key"], "cost": -1}
    assert_vast_error(await plain.post("/route/", json=negative), 400, "cost")
    unknown_idx = {**body, "api_key": ep["api_key"], "request_idx": 99999}
    assert_vast_error(await plain.post("/route/", json=unknown_idx), 404, "request")
    r = await plain.post(
        "/route/", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code in (400, 422) and r.json()["success"] is False
    await settle(ctl)
    assert (await t.client.post("/get_endpoint_workers/", json={"id": ep["id"]})).json() == []
    # The key as a query parameter and as Bearer work too.
    ok = await plain.post("/route/", params={"api_key": ep["api_key"]}, json=body)
    assert ok.status_code == 200 and ok.json()["request_idx"] > 0
    bearer = api.client_for(ep["api_key"])
    assert (await bearer.post("/route/", json=body)).status_code == 200
    # A suspended endpoint routes nothing.
    await t.client.put(f"/api/v0/endptjobs/{ep['id']}/", json={"endpoint_state": "suspended"})
    assert_vast_error(
        await plain.post("/route/", params={"api_key": ep["api_key"]}, json=body), 503
    )
    r = await t.client.put(f"/api/v0/endptjobs/{ep['id']}/", json={"endpoint_state": "paused"})
    assert_vast_error(r, 400, "endpoint_state")


async def test_worker_routes_refuse_unknown_workers(api: Api) -> None:
    plain = api.client_for(None)
    status = {"id": 1, "mtoken": "x", "max_perf": 1.0, "loadtime": 1.0}
    assert_vast_error(await plain.post("/worker_status/", json=status), 401)
    done = {"worker_id": 1, "mtoken": "x", "requests": [{"request_idx": 1, "success": True}]}
    assert_vast_error(await plain.post("/delete_requests/", json=done), 401)
    assert_vast_error(await plain.post("/worker_status/", json={"id": "one", "mtoken": "x"}), 422)
    huge = 2**63  # past any integer column: refused as input, never a 500
    assert_vast_error(await plain.post("/worker_status/", json={"id": huge, "mtoken": "x"}), 422)
    done = {"worker_id": 1, "mtoken": "x", "requests": [{"request_idx": huge}]}
    assert_vast_error(await plain.post("/delete_requests/", json=done), 422)
    route = {"endpoint": "llm", "api_key": "ep-x", "request_idx": huge}
    assert_vast_error(await plain.post("/route/", json=route), 422)
