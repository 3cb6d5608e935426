"""Each cluster's own endpoint: every path proxied to its replicas, reached by the Host header
(``<slug>.<GPUYARD_ENDPOINT_DOMAIN>``) or by the ``/endpoints/<slug>`` path prefix, over real HTTP
with httpx and the official ``openai`` SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import urlsplit

import openai
import pytest

from gpuyard.server.middleware.endpoint_host import endpoint_slug
from tests.gateway.kit import Deployed, deploy, openai_error, request_logs, serve
from tests.gateway.upstream import fake_model_server
from tests.harness import Api, start_api

DOMAIN = "gpuyard.test"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def domain_api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with start_api(db_url, tmp_path, endpoint_domain=DOMAIN) as running:
        yield running


async def endpoint_of(d: Deployed) -> str:
    return str((await d.tenant.client.get(f"/v1/clusters/{d.cluster_id}")).json()["endpoint"])


def sdk_for(
    stack: AsyncExitStack, base_url: str, key: str, host: str | None = None
) -> openai.AsyncOpenAI:
    headers = {"Host": host} if host else None
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key=key, default_headers=headers, max_retries=0)
    stack.push_async_callback(sdk.close)
    return sdk


@pytest.mark.parametrize(
    ("host", "slug"),
    [
        ("my-llm-a1b2c3.gpuyard.test", "my-llm-a1b2c3"),
        ("My-LLM-A1B2C3.GpuYard.Test:8443", "my-llm-a1b2c3"),
        ("my-llm-a1b2c3.gpuyard.test.", "my-llm-a1b2c3"),
        ("gpuyard.test", None),  # the bare domain is the API itself
        ("evilgpuyard.test", None),  # ends with the domain's text, not at a dot
        ("my-llm-gpuyard.test", None),
        ("a.my-llm.gpuyard.test", None),  # deeper names are not endpoints
        (".gpuyard.test", None),
        ("-x.gpuyard.test", None),
        ("[::1]:8080", None),
        ("127.0.0.1:8080", None),
        ("", None),
        (None, None),
    ],
)
def test_which_hosts_name_an_endpoint(host: str | None, slug: str | None) -> None:
    assert endpoint_slug(host, DOMAIN) == slug
    assert endpoint_slug(host, "GPUYARD.test:443") == slug  # the domain is normalised too


async def test_the_host_header_reaches_the_clusters_replicas(domain_api: Api) -> None:
    api = domain_api
    async with AsyncExitStack() as stack:
        upstream = fake_model_server()
        d = await deploy(api, stack, [await serve(stack, upstream)])
        endpoint = await endpoint_of(d)
        host = urlsplit(endpoint).netloc
        assert endpoint == f"http://{host}" and host.endswith(f".{DOMAIN}")

        sdk = sdk_for(stack, f"{api.base_url}/v1", d.tenant.key, host)
        chat = await sdk.chat.completions.create(model="tiny", messages=HI)
        assert chat.choices[0].message.content == "Hello from the fake model"
        chunks = [
            c
            async for c in await sdk.chat.completions.create(model="tiny", messages=HI, stream=True)
        ]
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from the fake model"
        )
        models = await sdk.models.list()  # the replica's own answer, not the gateway's
        assert [(m.id, m.owned_by) for m in models.data] == [("tiny", "me")]
        assert upstream.state.requests[1].get("stream_options") is None  # passed on as it was

        # any case, any port; the path and query as sent; the key never reaches the replica
        loud = f"{host.split('.')[0].upper()}.{DOMAIN.upper()}:8443"
        r = await d.tenant.client.put("/echo/a%2Fb?x=1&y=2", headers={"Host": loud}, content=b"hey")
        assert r.status_code == 200
        echo = r.json()
        assert (echo["method"], echo["raw_path"], echo["query"], echo["body"]) == (
            "PUT",
            "/echo/a%2Fb",
            "x=1&y=2",
            "hey",
        )
        assert "authorization" not in echo["headers"]
        assert echo["headers"]["host"].startswith("127.0.0.1:")

        logs = await request_logs(api)
        assert [(r.endpoint, r.model, r.stream, r.status) for r in logs] == [
            ("/v1/chat/completions", "tiny", False, 200),
            ("/v1/chat/completions", "tiny", True, 200),
            ("/v1/models", None, False, 200),
            ("/echo/a%2Fb", None, False, 200),
        ]
        assert logs[0].completion_tokens == 5 and logs[1].completion_tokens == 5
        assert {r.cluster_id for r in logs} == {d.cluster_id}


async def test_other_hosts_reach_the_api_untouched(domain_api: Api) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(domain_api, stack, [await serve(stack, fake_model_server())])
        slug = (urlsplit(await endpoint_of(d)).hostname or "").split(".")[0]
        for host in (DOMAIN, f"evil{DOMAIN}", f"{slug}-{DOMAIN}", f"a.{slug}.{DOMAIN}"):
            r = await d.tenant.client.get("/v1/me", headers={"Host": host})
            assert r.status_code == 200 and r.json()["org_id"] == d.tenant.org_id, host


async def test_without_an_endpoint_domain_no_host_is_an_endpoint(api: Api) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [await serve(stack, fake_model_server())])
        slug = (await endpoint_of(d)).rsplit("/", 1)[1]
        r = await d.tenant.client.get("/v1/me", headers={"Host": f"{slug}.{DOMAIN}"})
        assert r.status_code == 200 and r.json()["org_id"] == d.tenant.org_id


async def test_unknown_and_another_orgs_endpoint_are_the_same_404(domain_api: Api) -> None:
    api = domain_api
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [await serve(stack, fake_model_server())])
        slug = (urlsplit(await endpoint_of(d)).hostname or "").split(".")[0]
        other = await api.tenant("Other")
        answers = [
            await d.tenant.client.get("/v1/models", headers={"Host": f"nosuch-1.{DOMAIN}"}),
            await other.client.get("/v1/models", headers={"Host": f"{slug}.{DOMAIN}"}),
            await d.tenant.client.get("/endpoints/nosuch-1/v1/models"),
            await other.client.get(f"/endpoints/{slug}/v1/models"),
        ]
        errors = [openai_error(r, 404, "endpoint_not_found") for r in answers]
        shapes = [{**e, "message": str(e["message"]).replace(slug, "nosuch-1")} for e in errors]
        assert all(s == shapes[0] for s in shapes) and shapes[0]["type"] == "not_found_error"

        by_host = (f"{api.base_url}/v1", f"{slug}.{DOMAIN}")
        by_path = (f"{api.base_url}/endpoints/{slug}/v1", None)
        for base, host in (by_host, by_path):
            sdk = sdk_for(stack, base, other.key, host)
            with pytest.raises(openai.NotFoundError) as caught:
                await sdk.chat.completions.create(model="tiny", messages=HI)
            assert caught.value.code == "endpoint_not_found"
        anonymous = api.client_for(None)
        no_key = await anonymous.get("/v1/models", headers={"Host": f"{slug}.{DOMAIN}"})
        assert openai_error(no_key, 401, "missing_api_key")["type"] == "authentication_error"
        assert await request_logs(api) == []


async def test_the_path_prefix_and_its_failures(api: Api) -> None:
    async with AsyncExitStack() as stack:
        async with AsyncExitStack() as replicas:
            upstream = fake_model_server(die_mid_stream=True)
            d = await deploy(api, stack, [await serve(replicas, upstream)])
            endpoint = await endpoint_of(d)
            slug = endpoint.rsplit("/", 1)[1]
            assert endpoint == f"http://127.0.0.1:8080/endpoints/{slug}"  # GPUYARD_PUBLIC_URL
            sdk = sdk_for(stack, f"{api.base_url}/endpoints/{slug}/v1", d.tenant.key)
            chat = await sdk.chat.completions.create(model="tiny", messages=HI)
            assert chat.usage is not None and chat.usage.total_tokens == 12

            # a replica dying mid-stream: what it sent, then an error event and [DONE]
            r = await d.tenant.client.post(
                f"/endpoints/{slug}/v1/chat/completions",
                json={"model": "tiny", "messages": HI, "stream": True},
            )
            events = [e for e in r.text.split("\n\n") if e]
            assert [json.loads(e[6:])["choices"][0]["delta"]["content"] for e in events[:2]] == [
                "Hello",
                " from",
            ]
            assert json.loads(events[2][6:])["error"]["code"] == "upstream_error"
            assert events[3:] == ["data: [DONE]"]

        # every replica gone: 503 with Retry-After, in the OpenAI shape
        r = await d.tenant.client.get(f"/endpoints/{slug}/v1/models")
        assert openai_error(r, 503, "no_replica_reachable") and r.headers["retry-after"] == "5"
        with pytest.raises(openai.InternalServerError) as caught:
            await sdk.models.list()
        assert caught.value.status_code == 503

        logs = await request_logs(api)
        assert [(r.endpoint, r.status, r.completion_tokens) for r in logs] == [
            ("/v1/chat/completions", 200, 5),
            ("/v1/chat/completions", 200, 2),
            ("/v1/models", 503, None),
            ("/v1/models", 503, None),
        ]
        assert (logs[1].error or "").startswith("the model server failed mid-stream")


async def test_rate_limits_hold_on_endpoints(api: Api) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [await serve(stack, fake_model_server())])
        slug = (await endpoint_of(d)).rsplit("/", 1)[1]
        r = await api.client.post(
            f"/v1/admin/orgs/{d.tenant.org_id}/api-keys",
            json={"scopes": ["inference"], "rpm_limit": 1},
        )
        limited = api.client_for(r.json()["key"])
        assert (await limited.get(f"/endpoints/{slug}/health")).status_code == 200
        r = await limited.get(f"/endpoints/{slug}/health")
        assert openai_error(r, 429, "rate_limit_requests") and "retry-after" in r.headers
