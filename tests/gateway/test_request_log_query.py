"""The Vultr request-log query (``POST /v1/requests``) over the gateway's request log, and the
cluster health check (``GET /v1/health``), on SQLite and Postgres."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

from tests.gateway.kit import deploy, openai_error, request_logs, serve
from tests.gateway.upstream import fake_model_server
from tests.harness import Api

ASK = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


async def test_requests_of_a_period_for_an_endpoint_of_this_org_only(api: Api) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [await serve(stack, fake_model_server())])
        c = d.tenant.client
        early = api.clock.now()
        assert (await c.post("/v1/chat/completions", json=ASK)).status_code == 200
        api.clock.advance(20 * 60)
        late = api.clock.now()
        for _ in range(2):
            assert (await c.post("/v1/chat/completions", json=ASK)).status_code == 200
        emb = {"model": "tiny", "input": "x"}
        assert (await c.post("/v1/embeddings", json=emb)).status_code == 200
        await request_logs(api)  # written

        r = await c.post("/v1/requests", json={"period": 15})
        assert r.status_code == 200, r.text
        rows = r.json()["requests"]
        assert [x["endpoint"] for x in rows] == [
            "embeddings",
            "chat/completions",
            "chat/completions",
        ]
        assert rows[1]["model"] == "tiny" and rows[1]["status"] == 200
        assert rows[1]["prompt_tokens"] == 7 and rows[1]["completion_tokens"] == 5

        filtered = await c.post(
            "/v1/requests", json={"period": 15, "endpoint": "/v1/chat/completions"}
        )
        assert len(filtered.json()["requests"]) == 2
        wide = await c.post("/v1/requests", json={"period": 30})
        assert len(wide.json()["requests"]) == 4

        def iso(when: datetime) -> str:
            return when.astimezone(UTC).isoformat().replace("+00:00", "Z")

        # Just before the later ones: only the early request, within 30 minutes of it.
        before = await c.post(
            "/v1/requests", json={"period": 30, "timestamp": iso(late - timedelta(seconds=1))}
        )
        found = before.json()["requests"]
        assert len(found) == 1 and found[0]["endpoint"] == "chat/completions"
        none = await c.post(
            "/v1/requests", json={"period": 15, "timestamp": iso(early - timedelta(seconds=1))}
        )
        assert none.json()["requests"] == []

        other = (await api.tenant("Other")).client
        assert (await other.post("/v1/requests", json={"period": 60})).json()["requests"] == []

        for bad in (
            {"period": 20},
            {"period": "15"},
            {},
            {"period": 15, "timestamp": "yesterday"},
            {"period": 15, "timestamp": "2024-01-01T12:00:00"},  # no zone
            {"period": 15, "extra": 1},
        ):
            r = await c.post("/v1/requests", json=bad)
            assert r.status_code in (400, 422), (bad, r.text)
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        openai_error(
            await api.client_for(None).post("/v1/requests", json={"period": 15}),
            401,
            "missing_api_key",
        )


async def test_health_says_whether_the_deployments_can_answer(api: Api) -> None:
    t = await api.tenant()
    r = await t.client.get("/v1/health")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "unavailable", "deployments": 0, "ready": 0}
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [await serve(stack, fake_model_server())])
        body = (await d.tenant.client.get("/v1/health")).json()
        assert body == {"status": "healthy", "deployments": 1, "ready": 1}
        # Another cluster of the same org that has no ready replica yet.
        made = await d.tenant.client.post(
            "/v1/clusters",
            json={"name": "later", "gpu_type": "rtx-4090", "replicas": 1, "container": "x"},
        )
        assert made.status_code in (200, 201), made.text
        body = (await d.tenant.client.get("/v1/health")).json()
        assert body == {"status": "degraded", "deployments": 2, "ready": 1}
    openai_error(await api.client_for(None).get("/v1/health"), 401, "missing_api_key")
