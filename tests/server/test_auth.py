"""Who may call what: missing, malformed, unknown, expired and revoked keys; scopes; tenancy."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.harness import Api


async def test_me_names_the_key_org_and_scopes(api: Api) -> None:
    t = await api.tenant("Acme", scopes=["org:read"])
    r = await t.client.get("/v1/me")
    assert r.status_code == 200
    body = r.json()
    assert body["org_id"] == t.org_id
    assert body["org"]["name"] == "Acme"
    assert body["scopes"] == ["org:read"]
    assert body["key_id"].startswith("key_")


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_api_key"),
        ("Bearer", "missing_api_key"),
        ("Bearer nope", "invalid_api_key"),
        ("Bearer vl_short", "invalid_api_key"),
        ("Bearer vl_" + "A" * 43, "invalid_api_key"),
        ("Basic dXNlcjpwYXNz", "invalid_api_key"),
    ],
)
async def test_bad_credentials_are_401(api: Api, header: str | None, code: str) -> None:
    headers = {"Authorization": header} if header is not None else {}
    r = await api.client_for(None).get("/v1/me", headers=headers)
    assert r.status_code == 401
    assert r.json()["code"] == code
    assert r.json()["request_id"] == r.headers["x-request-id"]


async def test_api_key_query_parameter_is_accepted(api: Api) -> None:
    r = await api.client_for(None).get("/v1/me", params={"api_key": api.operator_key})
    assert r.status_code == 200


async def test_revoked_key_is_refused(api: Api) -> None:
    t = await api.tenant()
    me = (await t.client.get("/v1/me")).json()
    r = await t.client.delete(f"/v1/orgs/{t.org_id}/api-keys/{me['key_id']}")
    assert r.status_code == 200
    assert r.json()["status"] == "revoked"
    r = await t.client.get("/v1/me")
    assert r.status_code == 401
    assert r.json()["code"] == "api_key_revoked"


async def test_expired_key_is_refused(api: Api) -> None:
    t = await api.tenant()
    expires = (api.clock.now() + timedelta(hours=1)).isoformat()
    r = await t.client.post(
        f"/v1/orgs/{t.org_id}/api-keys", json={"name": "short", "expires_at": expires}
    )
    assert r.status_code == 201, r.text
    short = api.client_for(r.json()["key"])
    assert (await short.get("/v1/me")).status_code == 200
    api.clock.advance(hours=1)
    r = await short.get("/v1/me")
    assert r.status_code == 401
    assert r.json()["code"] == "api_key_expired"


async def test_another_orgs_path_is_404_like_a_missing_org(api: Api) -> None:
    a = await api.tenant("A")
    b = await api.tenant("B")
    foreign = await a.client.get(f"/v1/orgs/{b.org_id}")
    missing = await a.client.get("/v1/orgs/org_00000000000000000000")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["code"] == missing.json()["code"] == "org_not_found"
    b_key = (await b.client.get("/v1/me")).json()["key_id"]
    r = await a.client.delete(f"/v1/orgs/{b.org_id}/api-keys/{b_key}")
    assert r.status_code == 404
    r = await a.client.delete(f"/v1/orgs/{a.org_id}/api-keys/{b_key}")
    assert r.status_code == 404
    assert (await b.client.get("/v1/me")).status_code == 200


async def test_read_only_key_cannot_write(api: Api) -> None:
    t = await api.tenant(scopes=["org:read"])
    assert (await t.client.get(f"/v1/orgs/{t.org_id}")).status_code == 200
    r = await t.client.patch(f"/v1/orgs/{t.org_id}", json={"name": "Renamed"})
    assert r.status_code == 403
    assert r.json()["code"] == "insufficient_scope"
    r = await t.client.post(f"/v1/orgs/{t.org_id}/api-keys", json={"name": "x"})
    assert r.status_code == 403
    assert (await t.client.get(f"/v1/orgs/{t.org_id}")).json()["name"] == "Acme"


async def test_inference_key_cannot_read_the_org(api: Api) -> None:
    t = await api.tenant(scopes=["inference"])
    r = await t.client.get(f"/v1/orgs/{t.org_id}/api-keys")
    assert r.status_code == 403


async def test_customer_keys_cannot_use_the_operator_api(api: Api) -> None:
    t = await api.tenant()
    r = await t.client.get("/v1/admin/orgs")
    assert r.status_code == 403
    assert r.json()["code"] == "insufficient_scope"
    r = await t.client.post("/v1/admin/orgs", json={"name": "sneaky"})
    assert r.status_code == 403
    names = [o["name"] for o in (await api.client.get("/v1/admin/orgs")).json()["data"]]
    assert "sneaky" not in names


async def test_suspended_org_keys_get_403_until_reactivated(api: Api) -> None:
    t = await api.tenant()
    r = await api.client.post(
        f"/v1/admin/orgs/{t.org_id}/suspend", json={"reason": "unpaid invoices"}
    )
    assert r.status_code == 200
    assert r.json()["status"] == "suspended"
    r = await t.client.get("/v1/me")
    assert r.status_code == 403
    assert r.json()["code"] == "org_suspended"
    assert "unpaid invoices" in r.json()["error"]
    r = await api.client.post(f"/v1/admin/orgs/{t.org_id}/reactivate")
    assert r.status_code == 200
    assert (await t.client.get("/v1/me")).status_code == 200


async def test_operator_org_cannot_be_suspended(api: Api) -> None:
    r = await api.client.post(f"/v1/admin/orgs/{api.operator_org}/suspend", json={})
    assert r.status_code == 409
    assert r.json()["code"] == "org_is_operator"


async def test_last_used_at_is_recorded(api: Api) -> None:
    t = await api.tenant()
    key_id = (await t.client.get("/v1/me")).json()["key_id"]
    r = await t.client.get(f"/v1/orgs/{t.org_id}/api-keys/{key_id}")
    assert r.json()["last_used_at"] is not None
