"""Issuing, listing, reading and revoking API keys."""

from __future__ import annotations

from datetime import timedelta

from gpuyard.core.credentials import hash_secret, looks_like_api_key
from tests.harness import Api


async def test_create_shows_the_secret_once(api: Api) -> None:
    t = await api.tenant()
    r = await t.client.post(
        f"/v1/orgs/{t.org_id}/api-keys", json={"name": "deploy", "scopes": ["org:read"]}
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert looks_like_api_key(created["key"])
    assert created["key"].startswith(created["prefix"])
    assert created["scopes"] == ["org:read"]
    assert created["status"] == "active"
    listed = (await t.client.get(f"/v1/orgs/{t.org_id}/api-keys")).json()["data"]
    assert created["id"] in {k["id"] for k in listed}
    assert all("key" not in k for k in listed)
    one = (await t.client.get(f"/v1/orgs/{t.org_id}/api-keys/{created['id']}")).json()
    assert "key" not in one
    assert one["name"] == "deploy"


async def test_secrets_are_stored_only_as_hashes(api: Api) -> None:
    from sqlalchemy import select

    from gpuyard.server import orm

    t = await api.tenant()
    async with api.ctx.sessions() as s:
        rows = (await s.scalars(select(orm.ApiKey).where(orm.ApiKey.org_id == t.org_id))).all()
    assert [r.secret_hash for r in rows] == [hash_secret(t.key)]
    assert all(t.key not in str(vars(r)) for r in rows)


async def test_scopes_cannot_escalate(api: Api) -> None:
    t = await api.tenant(scopes=["org:write"])
    r = await t.client.post(f"/v1/orgs/{t.org_id}/api-keys", json={"scopes": ["operator"]})
    assert r.status_code == 400
    assert r.json()["param"] == "scopes"


async def test_operator_scope_only_in_operator_org(api: Api) -> None:
    t = await api.tenant()
    r = await api.client.post(f"/v1/admin/orgs/{t.org_id}/api-keys", json={"scopes": ["operator"]})
    assert r.status_code == 400


async def test_bad_key_bodies_change_nothing(api: Api) -> None:
    t = await api.tenant()
    url = f"/v1/orgs/{t.org_id}/api-keys"
    past = (api.clock.now() - timedelta(seconds=1)).isoformat()
    cases = [
        ({"scopes": []}, 422),
        ({"scopes": ["root"]}, 422),
        ({"scopes": "org:read"}, 422),
        ({"name": 12}, 422),
        ({"name": "x", "surprise": True}, 422),
        ({"expires_at": "tomorrow"}, 422),
        ({"expires_at": "2030-01-01T00:00:00"}, 422),
        ({"expires_at": past}, 400),
    ]
    for body, status in cases:
        r = await t.client.post(url, json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["code"] in {"validation_error", "invalid_request"}
    assert len((await t.client.get(url)).json()["data"]) == 1


async def test_revoke_twice_is_harmless(api: Api) -> None:
    t = await api.tenant()
    url = f"/v1/orgs/{t.org_id}/api-keys"
    other = (await t.client.post(url, json={"name": "other"})).json()
    first = await t.client.delete(f"{url}/{other['id']}")
    second = await t.client.delete(f"{url}/{other['id']}")
    assert first.status_code == second.status_code == 200
    assert first.json()["revoked_at"] == second.json()["revoked_at"]
    revoked_events = (
        await t.client.get(f"/v1/orgs/{t.org_id}/events", params={"type": "api_key.revoked"})
    ).json()["data"]
    assert len(revoked_events) == 1


async def test_last_operator_key_cannot_be_revoked(api: Api) -> None:
    me = (await api.client.get("/v1/me")).json()
    r = await api.client.delete(f"/v1/orgs/{api.operator_org}/api-keys/{me['key_id']}")
    assert r.status_code == 409
    assert r.json()["code"] == "last_operator_key"
    assert (await api.client.get("/v1/me")).status_code == 200


async def test_bad_key_ids_are_404(api: Api) -> None:
    t = await api.tenant()
    for key_id in ["nope", "key_", "key_00000000000000000000", "org_00000000000000000000", "%20"]:
        r = await t.client.get(f"/v1/orgs/{t.org_id}/api-keys/{key_id}")
        assert r.status_code == 404, key_id
        assert r.json()["code"] == "api_key_not_found"
