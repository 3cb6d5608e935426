"""``Idempotency-Key``: the first answer is stored and replayed; reuse with another body is 409."""

from __future__ import annotations

import asyncio

from gpuyard.server.controllers.retention import RetentionSweeper
from tests.harness import Api


async def _org_names(api: Api) -> list[str]:
    page = (await api.client.get("/v1/admin/orgs", params={"limit": 100})).json()
    return [o["name"] for o in page["data"]]


async def test_replay_returns_the_first_response(api: Api) -> None:
    headers = {"Idempotency-Key": "create-acme"}
    first = await api.client.post("/v1/admin/orgs", json={"name": "Acme"}, headers=headers)
    second = await api.client.post("/v1/admin/orgs", json={"name": "Acme"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert (await _org_names(api)).count("Acme") == 1


async def test_same_key_different_body_is_409(api: Api) -> None:
    headers = {"Idempotency-Key": "k1"}
    await api.client.post("/v1/admin/orgs", json={"name": "One"}, headers=headers)
    r = await api.client.post("/v1/admin/orgs", json={"name": "Two"}, headers=headers)
    assert r.status_code == 409
    assert r.json()["code"] == "idempotency_key_reused"
    assert "Two" not in await _org_names(api)


async def test_keys_are_scoped_to_the_api_key(api: Api) -> None:
    a = await api.tenant("A")
    b = await api.tenant("B")
    headers = {"Idempotency-Key": "same"}
    ra = await a.client.post(f"/v1/orgs/{a.org_id}/api-keys", json={"name": "x"}, headers=headers)
    rb = await b.client.post(f"/v1/orgs/{b.org_id}/api-keys", json={"name": "x"}, headers=headers)
    assert ra.status_code == rb.status_code == 201
    assert ra.json()["id"] != rb.json()["id"]


async def test_errors_are_not_stored(api: Api) -> None:
    headers = {"Idempotency-Key": "retry-me"}
    bad = await api.client.post("/v1/admin/orgs", json={"name": ""}, headers=headers)
    assert bad.status_code == 422
    good = await api.client.post("/v1/admin/orgs", json={"name": "Fixed"}, headers=headers)
    assert good.status_code == 201
    assert "idempotent-replayed" not in good.headers


async def test_concurrent_duplicates_create_once(api: Api) -> None:
    headers = {"Idempotency-Key": "race"}
    results = await asyncio.gather(
        *[
            api.client.post("/v1/admin/orgs", json={"name": "Racer"}, headers=headers)
            for _ in range(8)
        ]
    )
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["id"] for r in results}) == 1
    assert (await _org_names(api)).count("Racer") == 1
    created = await api.client.get(
        f"/v1/orgs/{api.operator_org}/events", params={"type": "org.created", "limit": 100}
    )
    assert created.status_code == 200


async def test_records_expire_after_a_day(api: Api) -> None:
    headers = {"Idempotency-Key": "daily"}
    await api.client.post("/v1/admin/orgs", json={"name": "Day1"}, headers=headers)
    sweeper = RetentionSweeper(sessions=api.ctx.sessions, clock=api.clock, poll_seconds=60)
    assert await sweeper.step() == 0
    api.clock.advance(hours=24, seconds=1)
    assert await sweeper.step() == 1
    r = await api.client.post("/v1/admin/orgs", json={"name": "Day2"}, headers=headers)
    assert r.status_code == 201
    assert "idempotent-replayed" not in r.headers


async def test_bad_idempotency_key_is_400(api: Api) -> None:
    r = await api.client.post(
        "/v1/admin/orgs", json={"name": "x"}, headers={"Idempotency-Key": "k" * 300}
    )
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_idempotency_key"
    assert "x" not in await _org_names(api)
