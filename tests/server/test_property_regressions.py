"""Regressions found by the property test (test_property.py), pinned on both databases.

NUL characters (U+0000): Postgres text and jsonb cannot hold them, so a NUL in a body field, a
path id or a query value made the database raise and the route answer 500 (SQLite stored it).
Unpaired UTF-16 surrogates (``"\ud800"`` in JSON) are not Unicode: Postgres json refused them in
a cluster's ``models`` (500). Every request carrying either is now refused at the edge with 400
``invalid_request``.

JSON in query parameters (Vast ``order_by``, ``select_filters``, ``after_token``, offer ``q``)
and in inference bodies (which the gateway parses itself): nesting too deep for the parser
(RecursionError, not ValueError), or a scalar where a list belongs, was a 500; now a 400.

PATCH bodies: null for a field that may only be left out was written to a NOT NULL column.

API key limits: a `tpm_limit` above 2**31 - 1 passed validation and overflowed the INTEGER column on
Postgres (500); the bound is now 1,000,000,000.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.harness import Api, Tenant
from tests.server.market import join_host


def assert_refused_for_nul(r: httpx.Response, where: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "invalid_request"
    assert f"request {where}" in body["error"] and "NUL" in body["error"]
    assert body["request_id"] == r.headers["x-request-id"]


@pytest.mark.parametrize("name", ["\x00", "a\x00b", "trailing\x00"])
async def test_nul_in_a_created_name_is_400_and_nothing_is_written(api: Api, name: str) -> None:
    r = await api.client.post("/v1/admin/orgs", json={"name": name})
    assert_refused_for_nul(r, "body")
    names = [o["name"] for o in (await api.client.get("/v1/admin/orgs")).json()["data"]]
    assert not any("\x00" in n for n in names)


async def test_nul_in_a_rename_is_400(api: Api) -> None:
    t = await api.tenant("Acme")
    r = await t.client.patch(f"/v1/orgs/{t.org_id}", json={"name": "Ac\x00me"})
    assert_refused_for_nul(r, "body")
    assert (await t.client.get(f"/v1/orgs/{t.org_id}")).json()["name"] == "Acme"


async def test_nul_nested_in_a_body_is_400(api: Api) -> None:
    t = await api.tenant()
    r = await t.client.post(
        f"/v1/orgs/{t.org_id}/api-keys", json={"name": "k", "scopes": ["org:read\x00"]}
    )
    assert_refused_for_nul(r, "body")


async def test_nul_in_a_utf16_json_body_is_400(api: Api) -> None:
    body = json.dumps({"name": "a\x00b"}).encode("utf-16")
    r = await api.client.post(
        "/v1/admin/orgs", content=body, headers={"Content-Type": "application/json"}
    )
    assert_refused_for_nul(r, "body")


async def test_nul_in_a_body_without_content_type_is_400(api: Api) -> None:
    r = await api.client.post("/v1/admin/orgs", content=b'{"name": "a\\u0000b"}')
    assert_refused_for_nul(r, "body")


async def test_an_escaped_backslash_before_u0000_is_ordinary_text(api: Api) -> None:
    name = "C:\\u0000 and \\\\u0000"  # backslashes, no NUL
    r = await api.client.post("/v1/admin/orgs", json={"name": name})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == name


@pytest.mark.parametrize(
    "path",
    [
        "/v1/admin/orgs/%00/api-keys",
        "/v1/admin/orgs/org_%00/suspend",
    ],
)
async def test_nul_in_a_path_id_is_400(api: Api, path: str) -> None:
    r = await api.client.post(path, json={"name": "k"})
    assert_refused_for_nul(r, "path")


async def test_nul_in_a_price_gpu_type_is_400(api: Api) -> None:
    r = await api.client.put("/v1/admin/prices/a%00b", json={"cents_per_gpu_hour": 100})
    assert_refused_for_nul(r, "path")


async def test_nul_in_a_query_value_is_400(api: Api) -> None:
    t = await api.tenant()
    r = await t.client.get(f"/v1/orgs/{t.org_id}/events", params={"type": "a\x00b"})
    assert_refused_for_nul(r, "query")


async def test_nul_is_refused_in_the_vast_dialects_envelope(api: Api) -> None:
    r = await api.client.put("/api/v0/instances/1/", json={"label": "x\x00"})
    assert r.status_code == 400, r.text
    assert r.json()["success"] is False
    assert r.json()["error"] == "invalid_request"
    assert "NUL" in r.json()["msg"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "\\ud800"}',
        b'{"name": "\\udc00x"}',
        b'{"name": "a\\ud83dz"}',
        b'{"name": "\xed\xa0\x80"}',  # a surrogate encoded as if it were UTF-8
    ],
)
async def test_an_unpaired_surrogate_in_a_body_is_400(api: Api, raw: bytes) -> None:
    r = await api.client.post(
        "/v1/admin/orgs", content=raw, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request"
    assert "surrogate" in r.json()["error"]


async def test_an_unpaired_surrogate_in_cluster_models_is_400(api: Api) -> None:
    t, cluster_id = await _cluster(api)
    r = await t.client.patch(
        f"/v1/clusters/{cluster_id}",
        content=b'{"models": ["\\ud800"]}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert "surrogate" in r.json()["error"]


async def test_a_surrogate_pair_is_an_ordinary_character(api: Api) -> None:
    r = await api.client.post(
        "/v1/admin/orgs",
        content=b'{"name": "boom \\ud83d\\udca5"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "boom \U0001f4a5"


async def test_uploads_that_are_not_json_are_not_inspected(api: Api) -> None:
    """Binary bodies may hold NUL bytes; they reach the route, which judges them itself."""
    r = await api.client.post(
        "/v1/admin/orgs",
        content=b"\x00\x01binary",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 415, r.text


# --- JSON carried in query parameters ------------------------------------------------------------
# Python's json parser raises RecursionError (not ValueError) past about 1000 levels of nesting,
# and a JSON scalar where a list belongs made `for item in 1` raise TypeError: both were 500s.

DEEP = "[" * 1500


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/api/v1/instances/", {"order_by": DEEP}, "order_by"),
        ("/api/v1/instances/", {"order_by": "1"}, "order_by"),
        ("/api/v1/instances/", {"order_by": "true"}, "order_by"),
        ("/api/v1/instances/", {"order_by": '{"col": "id"}'}, "order_by"),
        ("/api/v1/instances/", {"select_filters": DEEP}, "select_filters"),
        ("/api/v0/bundles/", {"q": DEEP}, "q"),
    ],
)
async def test_bad_json_in_a_vast_query_parameter_is_400(
    api: Api, path: str, params: dict[str, str], param: str
) -> None:
    t = await api.tenant()
    r = await t.client.get(path, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["success"] is False
    assert r.json()["error"] == "invalid_request"
    assert param in r.json()["msg"]


async def test_a_deeply_nested_after_token_is_an_invalid_cursor(api: Api) -> None:
    t = await api.tenant()
    token = base64.urlsafe_b64encode(DEEP.encode()).decode().rstrip("=")
    r = await t.client.get("/api/v1/instances/", params={"after_token": token})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_cursor"


async def test_deeply_nested_offer_query_is_400(api: Api) -> None:
    t = await api.tenant()
    r = await t.client.get(f"/v1/orgs/{t.org_id}/offers", params={"q": DEEP})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request"
    assert r.json()["param"] == "q"


async def test_the_vast_clis_own_order_by_still_works(api: Api) -> None:
    t = await api.tenant()
    r = await t.client.get(
        "/api/v1/instances/", params={"order_by": '[{"col": "id", "dir": "asc"}]', "limit": 5}
    )
    assert r.status_code == 200, r.text
    assert r.json()["instances"] == []


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/v1/audio/speech"])
async def test_deeply_nested_inference_body_is_400_invalid_json(api: Api, path: str) -> None:
    r = await api.client.post(
        path, content=DEEP.encode(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_json"
    assert r.headers["x-request-id"]


# --- null in PATCH bodies -------------------------------------------------------------------------
# A PATCH field that may be left out was also accepted as null and written to a NOT NULL column
# (or iterated): 500 for clusters, a misleading 409 for hosts. Now 422 naming the field.


async def _register_host(api: Api) -> str:
    """A host with one RTX 4090, registered through the agent protocol; its id."""
    r = await api.client.post("/v1/admin/join-tokens", json={"name": "t"})
    facts = {
        "gpus": [{"index": 0, "uuid": "GPU-0", "name": "RTX 4090"}],
        "driver_version": None,
        "cuda_version": None,
        "cpu_cores": 1,
        "ram_mb": 1,
        "disk_free_mb": 1,
        "disk_total_mb": 1,
        "hostname": "h",
        "address": "127.0.0.1",
        "port_range": {"start": 40000, "end": 40010},
        "os": "linux",
    }
    body = {"token": r.json()["token"], "facts": facts}
    host = await api.client_for(None).post("/v1/agent/register", json=body)
    assert host.status_code == 200, host.text
    return str(host.json()["host_id"])


async def _cluster(api: Api) -> tuple[Tenant, str]:
    await _register_host(api)
    t = await api.tenant()
    body = {"name": "web", "gpu_type": "rtx-4090", "container": "busybox"}
    r = await t.client.post(f"/v1/orgs/{t.org_id}/clusters", json=body)
    assert r.status_code == 201, r.text
    return t, r.json()["id"]


@pytest.mark.parametrize("field", ["container", "models", "port", "replicas", "env", "health_path"])
async def test_null_for_a_cluster_field_is_422(api: Api, field: str) -> None:
    t, cluster_id = await _cluster(api)
    for path in (f"/v1/orgs/{t.org_id}/clusters/{cluster_id}", f"/v1/clusters/{cluster_id}"):
        r = await t.client.patch(path, json={field: None})
        assert r.status_code == 422, r.text
        assert r.json()["param"] == field
    r = await t.client.get(f"/v1/orgs/{t.org_id}/clusters/{cluster_id}")
    assert r.json()["container"] == "busybox"


async def test_null_command_still_clears_it(api: Api) -> None:
    t, cluster_id = await _cluster(api)
    r = await t.client.patch(f"/v1/clusters/{cluster_id}", json={"command": None})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("field", ["name", "verified"])
async def test_null_for_a_host_field_is_422(api: Api, field: str) -> None:
    host_id = await _register_host(api)
    r = await api.client.patch(f"/v1/admin/hosts/{host_id}", json={field: None})
    assert r.status_code == 422, r.text
    assert r.json()["param"] == field


@pytest.mark.parametrize("field", ["rpm_limit", "tpm_limit"])
async def test_a_key_limit_beyond_a_32_bit_column_is_422(api: Api, field: str) -> None:
    t = await api.tenant()
    url = f"/v1/orgs/{t.org_id}/api-keys"
    before = len((await t.client.get(url)).json()["data"])
    r = await t.client.post(url, json={field: 2**31})
    assert r.status_code == 422, r.text
    assert r.json()["param"] == field
    assert len((await t.client.get(url)).json()["data"]) == before
    r = await t.client.post(url, json={field: 10_000_000})  # a large limit that fits is kept
    assert r.status_code == 201, r.text
    assert r.json()[field] == 10_000_000


async def test_a_runtype_longer_than_its_column_is_refused_and_rents_nothing(api: Api) -> None:
    """A 40-character ``runtype`` passed validation and overflowed VARCHAR(32) on Postgres."""
    await join_host(api, [("RTX 4090", 24564)])
    t = await api.tenant()
    [offer] = (await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"]
    body = {"client_id": "me", "image": "x", "disk": 10, "runtype": "9" * 40}
    r = await t.client.put(f"/api/v0/asks/{offer['id']}/", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["success"] is False and "runtype" in r.json()["msg"]
    assert (await t.client.get(f"/v1/orgs/{t.org_id}/vms")).json()["data"] == []
    body["runtype"] = "9" * 32
    assert (await t.client.put(f"/api/v0/asks/{offer['id']}/", json=body)).status_code == 200


async def test_facts_beyond_any_machine_are_refused_and_break_no_later_write(api: Api) -> None:
    """A heartbeat reporting 10**30 MB of RAM overflowed the offers' INTEGER column (500 on the
    heartbeat, and on every later price change that rebuilt all offers)."""
    host = await join_host(api, [("RTX 4090", 24564)])
    host.facts = {**host.facts, "ram_mb": 10**30}
    r = await host.client.post("/v1/agent/heartbeat", json={"facts": host.facts, "workloads": []})
    assert r.status_code == 422, r.text
    host.facts = {**host.facts, "ram_mb": 2**31 - 1}  # the most a host may report
    await host.beat()
    r = await api.client.put("/v1/admin/prices/rtx-4090", json={"cents_per_gpu_hour": 1})
    assert r.status_code == 200, r.text
