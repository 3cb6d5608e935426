"""A revoked key, or a suspended org's key, stops working at once on the replica that made the
change, on the gateway's routes too (whose key cache is in front of the database); other
replicas follow within a second (tests/gateway/test_caches.py)."""

from __future__ import annotations

import httpx

from tests.harness import Api

EMBED = {"model": "no-such-model", "input": "hello"}


async def inference(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/v1/embeddings", json=EMBED)


def code(r: httpx.Response) -> str:
    """The error code in the OpenAI envelope the inference routes answer."""
    found: str = r.json()["error"]["code"]
    return found


async def test_a_key_revoked_here_is_refused_by_the_gateway_at_once(api: Api) -> None:
    t = await api.tenant(scopes=["org:write", "inference"])
    first = await inference(t.client)
    assert code(first) == "model_not_found", first.text  # the key is cached as valid

    key_id = (await t.client.get("/v1/me")).json()["key_id"]
    r = await t.client.delete(f"/v1/orgs/{t.org_id}/api-keys/{key_id}")  # revokes itself
    assert r.status_code == 200, r.text

    refused = await inference(t.client)
    assert refused.status_code == 401, refused.text
    assert code(refused) == "api_key_revoked"


async def test_a_key_revoked_through_the_vast_dialect_is_refused_at_once(api: Api) -> None:
    t = await api.tenant(scopes=["org:write", "inference"])
    assert code(await inference(t.client)) == "model_not_found"
    key_id = (await t.client.get("/v1/me")).json()["key_id"]

    r = await t.client.delete(f"/api/v0/auth/apikeys/{key_id}/")
    assert r.status_code == 200, r.text

    refused = await inference(t.client)
    assert refused.status_code == 401 and code(refused) == "api_key_revoked"


async def test_a_suspended_orgs_key_is_refused_by_the_gateway_at_once(api: Api) -> None:
    t = await api.tenant(scopes=["org:write", "inference"])
    assert code(await inference(t.client)) == "model_not_found"

    r = await api.client.post(f"/v1/admin/orgs/{t.org_id}/suspend", json={"reason": "unpaid"})
    assert r.status_code == 200, r.text

    refused = await inference(t.client)
    assert refused.status_code == 403 and code(refused) == "org_suspended"
