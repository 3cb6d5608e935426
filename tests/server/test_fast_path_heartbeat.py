"""The heartbeat is served on the fast path, in front of FastAPI: it must keep every convention
a FastAPI route has. Each bad request is sent to the heartbeat and to ``register`` (an
ordinary route of the same router) and must be refused the same way, with nothing written."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gpuyard.server import orm
from tests.harness import Api
from tests.server.market import join_host

RTX4090 = ("RTX 4090", 24564)

BAD_BODIES: list[tuple[str, dict[str, str], bytes]] = [
    ("malformed JSON", {"content-type": "application/json"}, b'{"facts": '),
    ("not JSON at all", {"content-type": "text/plain"}, b"hello"),
    ("empty", {"content-type": "application/json"}, b""),
    ("a list", {"content-type": "application/json"}, b"[]"),
    ("facts of the wrong type", {"content-type": "application/json"}, b'{"facts": 7}'),
    ("unknown field", {"content-type": "application/json"}, b'{"facts": {}, "extra": 1}'),
]


def shape(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert body["request_id"] == r.headers["x-request-id"]
    return {"status": r.status_code, "code": body["code"], "keys": sorted(body)}


@pytest.mark.parametrize(("what", "headers", "raw"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_a_bad_heartbeat_is_refused_as_a_fastapi_route_would(
    api: Api, what: str, headers: dict[str, str], raw: bytes
) -> None:
    host = await join_host(api, [RTX4090])
    hot = await host.client.post("/v1/agent/heartbeat", content=raw, headers=headers)
    plain = await host.client.post("/v1/agent/register", content=raw, headers=headers)
    assert hot.status_code in (400, 415, 422), hot.text
    assert shape(hot) == shape(plain), (hot.text, plain.text)


WORDING = [
    (b'{"facts": ', "request body is not valid JSON: Expecting value"),
    (b"[]", "Input should be a valid dictionary or object to extract fields from"),
    (b"", "request body is required"),
]


@pytest.mark.parametrize(("raw", "message"), WORDING)
async def test_bad_heartbeats_are_worded_as_fastapi_words_them(
    api: Api, raw: bytes, message: str
) -> None:
    host = await join_host(api, [RTX4090])
    headers = {"content-type": "application/json"}
    r = await host.client.post("/v1/agent/heartbeat", content=raw, headers=headers)
    assert r.json()["error"] == message, r.text


async def test_a_refused_heartbeat_writes_nothing(api: Api) -> None:
    host = await join_host(api, [RTX4090])
    async with api.ctx.sessions() as s:
        before = await s.scalar(
            select(orm.Host.last_heartbeat_at).where(orm.Host.id == host.host_id)
        )
    api.clock.advance(seconds=3)
    body = {"facts": {**host.facts, "gpus": "many"}, "workloads": []}
    r = await host.client.post("/v1/agent/heartbeat", json=body)
    assert r.status_code == 422 and r.json()["param"] == "facts.gpus"
    async with api.ctx.sessions() as s:
        after = await s.scalar(
            select(orm.Host.last_heartbeat_at).where(orm.Host.id == host.host_id)
        )
    assert after == before


async def test_a_heartbeat_answers_json_with_a_request_id_and_counts_in_metrics(api: Api) -> None:
    host = await join_host(api, [RTX4090])
    r = await host.client.post(
        "/v1/agent/heartbeat",
        json={"facts": host.facts, "workloads": []},
        headers={"x-request-id": "beat-1"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"] == "beat-1"
    assert r.json()["host_id"] == host.host_id
    metrics = (await api.client.get("/metrics")).text
    assert 'method="POST",route="/v1/agent/heartbeat",status="200"' in metrics


async def test_an_oversize_heartbeat_is_413_before_it_is_parsed(api: Api) -> None:
    host = await join_host(api, [RTX4090])
    raw = b'{"facts": "' + b"x" * (api.ctx.settings.max_body_bytes + 10) + b'"}'
    r = await host.client.post(
        "/v1/agent/heartbeat", content=raw, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


async def test_the_heartbeat_is_still_documented(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/agent/heartbeat"]["post"]
    assert "HeartbeatRequest" in str(operation["requestBody"])
    assert "HeartbeatResponse" in str(operation["responses"]["200"])


async def test_a_bad_field_is_worded_as_on_a_fastapi_route(api: Api) -> None:
    host = await join_host(api, [RTX4090])
    hot = await host.client.post("/v1/agent/heartbeat", json={"facts": 7})
    plain = await host.client.post("/v1/agent/register", json={"token": "x", "facts": 7})
    assert hot.status_code == plain.status_code == 422
    assert hot.json()["error"] == plain.json()["error"]
    assert hot.json()["param"] == plain.json()["param"] == "facts"


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"facts": "\xff\xfe"}'])
async def test_a_body_no_parser_can_read_is_400_as_on_a_fastapi_route(api: Api, raw: bytes) -> None:
    host = await join_host(api, [RTX4090])
    headers = {"content-type": "application/json"}
    hot = await host.client.post("/v1/agent/heartbeat", content=raw, headers=headers)
    plain = await host.client.post("/v1/agent/register", content=raw, headers=headers)
    assert hot.status_code == plain.status_code == 400, hot.text
    assert hot.json()["code"] == plain.json()["code"] == "invalid_json"
