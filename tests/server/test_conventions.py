"""The conventions every route shares: error envelope, request ids, limits, pagination."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import APIRouter

from tests.harness import Api, serve_app, start_api


async def test_framework_404_and_405_use_the_envelope(api: Api) -> None:
    r = await api.client.get("/v1/no-such-thing")
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    assert r.json()["request_id"] == r.headers["x-request-id"]
    r = await api.client.put("/v1/me")
    assert r.status_code == 405
    assert r.json()["code"] == "method_not_allowed"


async def test_malformed_json_is_400(api: Api) -> None:
    r = await api.client.post(
        "/v1/admin/orgs", content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_json"


async def test_non_utf8_body_is_a_clear_error(api: Api) -> None:
    r = await api.client.post(
        "/v1/admin/orgs",
        content=b'{"name": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code in (400, 422)
    assert r.json()["code"] in ("invalid_json", "validation_error")


async def test_wrong_content_type_is_415(api: Api) -> None:
    r = await api.client.post(
        "/v1/admin/orgs", content=b"name=acme", headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 415
    assert "application/json" in r.json()["error"]


async def test_wrong_types_and_unknown_fields_are_422_with_param(api: Api) -> None:
    r = await api.client.post("/v1/admin/orgs", json={"name": 42})
    assert r.status_code == 422
    assert r.json()["param"] == "name"
    r = await api.client.post("/v1/admin/orgs", json={"name": "ok", "plan": "gold"})
    assert r.status_code == 422
    assert r.json()["param"] == "plan"
    assert "unknown field" in r.json()["error"]
    r = await api.client.post("/v1/admin/orgs", json=[1, 2])
    assert r.status_code == 422
    orgs = (await api.client.get("/v1/admin/orgs")).json()["data"]
    assert [o["name"] for o in orgs] == ["Operator"]


async def test_oversize_body_is_413_and_writes_nothing(api: Api) -> None:
    big = {"name": "x" * 100, "pad": "y" * (api.ctx.settings.max_body_bytes + 10)}
    r = await api.client.post("/v1/admin/orgs", json=big)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"

    async def chunks():  # no Content-Length: the limit holds on the stream too
        for _ in range(40):
            yield b"a" * 65536

    r = await api.client.post(
        "/v1/admin/orgs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413
    assert len((await api.client.get("/v1/admin/orgs")).json()["data"]) == 1


async def test_request_id_is_echoed_when_sane(api: Api) -> None:
    r = await api.client.get("/v1/me", headers={"X-Request-Id": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123"
    r = await api.client.get("/v1/me", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["x-request-id"].startswith("req_")


async def test_times_are_rfc3339_utc(api: Api) -> None:
    org = (await api.client.get("/v1/me")).json()["org"]
    assert org["created_at"].endswith("Z")
    assert "T" in org["created_at"]


async def test_unhandled_error_is_500_envelope_with_request_id(db_url: str, tmp_path) -> None:
    async with start_api(db_url, tmp_path) as api:
        router = APIRouter()

        @router.get("/v1/boom")
        async def boom() -> None:
            raise RuntimeError("kaboom")

        api.app.include_router(router)
        r = await api.client.get("/v1/boom")
        assert r.status_code == 500
        body = r.json()
        assert body["code"] == "internal_error"
        assert "kaboom" not in body["error"]
        assert body["request_id"] == r.headers["x-request-id"]


async def test_pagination_walks_every_item_once(api: Api) -> None:
    created = []
    for i in range(7):
        api.clock.advance(seconds=1 if i % 2 else 0)  # some share a timestamp
        created.append(
            (await api.client.post("/v1/admin/orgs", json={"name": f"o{i}"})).json()["id"]
        )
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await api.client.get("/v1/admin/orgs", params=params)).json()
        assert len(page["data"]) <= 3
        seen += [o["id"] for o in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert sorted(seen) == sorted([*created, api.operator_org])
    assert len(seen) == len(set(seen)) == 8


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": "x"}, {"cursor": "!!"}])
async def test_bad_pagination_params_are_clear(api: Api, params: dict) -> None:
    r = await api.client.get("/v1/admin/orgs", params=params)
    assert r.status_code in (400, 422)
    assert r.json()["param"] in ("limit", "cursor")


async def test_openapi_documents_routes_with_error_schemas(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    op = spec["paths"]["/v1/orgs/{org_id}/api-keys"]["post"]
    assert {"201", "401", "403", "404", "422"} <= set(op["responses"])
    assert op["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ErrorOut"
    )
    assert "requestBody" in op


PUBLIC_ROUTES = {
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /llms.txt",
    "GET /llms-full.txt",
    "POST /v1/agent/register",  # the join token is in the body
    "POST /v1/agent/heartbeat",  # a host's credential, not an API key
    "POST /v1/agent/wait",  # the same
    "GET /api/v0/gpu_names/unique/",  # the vastai CLI asks on every start, before any key
    "GET /pubkey/",  # a worker checks grants with it, holding no key
    "POST /worker_status/",  # a serverless worker's own token is in the body
    "POST /delete_requests/",  # the same
    "POST /v1/payments/stripe/webhook",  # Stripe's: verified by its Stripe-Signature header
}


async def test_openapi_declares_how_to_send_the_key(api: Api) -> None:
    """Generated clients, Swagger UI and Postman send the key only where the spec says so."""
    spec = (await api.client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["api_key"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "vl_…",
        "description": schemes["api_key"]["description"],
    }
    assert schemes["vast_api_key"]["type"] == "apiKey"
    assert (schemes["vast_api_key"]["in"], schemes["vast_api_key"]["name"]) == ("query", "api_key")
    anonymous = api.client_for(None)
    for path, item in spec["paths"].items():
        for method, op in item.items():
            route = f"{method.upper()} {path}"
            declared = {name for req in op.get("security", []) for name in req}
            if route in PUBLIC_ROUTES:
                assert not declared, route
                continue
            assert "api_key" in declared, route
            assert ("vast_api_key" in declared) == path.startswith("/api/"), route
            if "{" not in path and method == "get":  # it really wants the key
                r = await anonymous.get(path)
                assert r.status_code == 401, (route, r.text)

    # What a client generated from the spec sends is accepted, both ways.
    r = await anonymous.get("/v1/me", headers={"Authorization": f"Bearer {api.operator_key}"})
    assert r.status_code == 200
    r = await anonymous.get("/api/v0/users/current/", params={"api_key": api.operator_key})
    assert r.status_code == 200, r.text


async def test_llms_txt_is_generated_from_the_spec(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    short = (await api.client.get("/llms.txt")).text
    full = (await api.client.get("/llms-full.txt")).text
    for path, item in spec["paths"].items():
        for method in item:
            assert f"`{method.upper()} {path}`" in short
            assert f"## {method.upper()} {path}" in full
    assert "ApiKeyCreate" in full


async def test_health_ready_and_metrics(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = (await api.client.get("/readyz")).json()
    assert ready["status"] == "ready"
    assert ready["schema_revision"] == ready["expected_revision"]
    await api.client.get("/v1/me")
    text = (await api.client.get("/metrics")).text
    assert 'gpuyard_http_requests_total{method="GET",route="/v1/me",status="200"}' in text


async def test_readyz_waits_for_what_the_process_waits_for_at_start(api: Api) -> None:
    """``gpuyard up`` waits for its local host: not ready, and saying why, until it joined."""
    joined = asyncio.Event()
    api.ctx.startup.wait_for("local host", joined)
    r = await api.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["status"] == "not_ready" and r.json()["waiting_for"] == ["local host"]
    joined.set()
    r = await api.client.get("/readyz")
    assert r.status_code == 200 and r.json()["waiting_for"] == []


async def test_readyz_is_503_when_schema_is_behind(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    async with _unmigrated(url, tmp_path) as base_url, httpx.AsyncClient(base_url=base_url) as c:
        r = await c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["schema_revision"] is None


def _unmigrated(url: str, tmp_path):
    from gpuyard.server.app import create_app
    from gpuyard.server.settings import Settings

    app = create_app(
        Settings(database_url=url, data_dir=tmp_path), migrate_on_start=False, run_controllers=False
    )
    return serve_app(app)


async def test_concurrent_requests_on_one_key(api: Api) -> None:
    t = await api.tenant()
    results = await asyncio.gather(
        *[t.client.post(f"/v1/orgs/{t.org_id}/api-keys", json={"name": f"k{i}"}) for i in range(12)]
    )
    assert [r.status_code for r in results] == [201] * 12
    keys = (await t.client.get(f"/v1/orgs/{t.org_id}/api-keys", params={"limit": 100})).json()
    assert len(keys["data"]) == 13
