"""The fast path and ``/openapi.json`` agree. The fast routes (the agent heartbeat, the four
inference POSTs) are answered in front of FastAPI and only declared to it; here every one is
held to its declaration: the same request model, the same answer, and exactly the declared
error statuses, each provoked on the served path and its body checked against the declared
error model. The inference bodies, checked by the gateway's own code, are held to their
declared models by a property test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from sqlalchemy import update

from gpuyard.core.agent_protocol import HeartbeatResponse
from gpuyard.core.errors import InvalidRequest
from gpuyard.gateway import bodies
from gpuyard.server import orm
from gpuyard.server.db import write_session
from gpuyard.server.routers.fast_path import INFERENCE, FastRoute, fast_routes
from gpuyard.server.schemas.common import ErrorOut
from gpuyard.server.schemas.inference import OpenAIErrorOut
from tests.gateway.kit import deploy, serve
from tests.gateway.upstream import fake_model_server
from tests.harness import Api
from tests.server.market import join_host

RTX = ("RTX 4090", 24564)
COMPONENTS = "#/components/schemas/"


def operation(spec: dict[str, Any], route: FastRoute) -> dict[str, Any]:
    found: dict[str, Any] = spec["paths"][route.path][route.method.lower()]
    return found


def ref(schema: dict[str, Any]) -> str:
    name: str = schema["$ref"].removeprefix(COMPONENTS)
    return name


def declared_statuses(spec: dict[str, Any], route: FastRoute) -> set[int]:
    return {int(s) for s in operation(spec, route)["responses"] if s != "default"}


async def test_every_fast_route_is_declared_from_what_it_serves(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    routes = fast_routes(api.ctx)
    assert {(r.method, r.path) for r in routes} == {("POST", "/v1/agent/heartbeat")} | {
        ("POST", f"/v1/{i.endpoint}") for i in INFERENCE
    }
    for route in routes:
        op = operation(spec, route)
        body = op["requestBody"]
        assert body["required"] is True
        name = ref(body["content"]["application/json"]["schema"])
        assert name == route.request.__name__, route.path
        component = spec["components"]["schemas"][name]
        model = route.request.model_json_schema()
        assert set(component["properties"]) == set(model["properties"]), route.path
        assert set(component.get("required", [])) == set(model.get("required", [])), route.path
        assert component.get("additionalProperties") == model.get("additionalProperties")

        responses = op["responses"]
        assert declared_statuses(spec, route) == {200, *route.errors}, route.path
        assert ("default" in responses) == (route.passed_on is not None)
        for status in route.errors:
            error = responses[str(status)]["content"]["application/json"]["schema"]
            assert ref(error) == route.error_model.__name__, (route.path, status)
        answer = responses["200"]["content"]
        if isinstance(route.answer, type):
            assert list(answer) == ["application/json"]
            assert ref(answer["application/json"]["schema"]) == route.answer.__name__
        else:
            assert answer == route.answer, route.path


def content_type_declared(spec: dict[str, Any], route: FastRoute, content_type: str) -> bool:
    declared = operation(spec, route)["responses"]["200"]["content"]
    media = content_type.split(";")[0].strip()
    return any(media == d or (d.endswith("/*") and media.startswith(d[:-1])) for d in declared)


def check_error(r: httpx.Response, model: type[BaseModel]) -> None:
    assert r.headers["content-type"].startswith("application/json"), r.headers
    model.model_validate_json(r.content)


async def test_the_heartbeat_answers_exactly_what_it_declares(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    [route] = [r for r in fast_routes(api.ctx) if r.path == "/v1/agent/heartbeat"]
    host = await join_host(api, [RTX])
    gone = await join_host(api, [RTX], name="gone")
    async with write_session(api.ctx.sessions) as s:  # a removed host that still has its key
        await s.execute(
            update(orm.Host).where(orm.Host.id == gone.host_id).values(status="removed")
        )
    good = json.dumps({"facts": host.facts, "workloads": []}).encode()
    as_json = {"content-type": "application/json"}
    oversize = b'{"facts": "' + b"x" * (api.ctx.settings.max_body_bytes + 1) + b'"}'
    sent = {
        200: (host.client, good, as_json),
        400: (host.client, b'{"facts": ', as_json),
        401: (api.client_for("hc_not-a-host"), good, as_json),
        403: (gone.client, good, as_json),
        413: (host.client, oversize, as_json),
        415: (host.client, b"facts", {"content-type": "text/plain"}),
        422: (host.client, b'{"facts": 7}', as_json),
    }
    served: dict[int, httpx.Response] = {}
    for client, raw, headers in sent.values():
        r = await client.post(route.path, content=raw, headers=headers)
        served[r.status_code] = r
    assert set(served) == declared_statuses(spec, route)
    ok = served.pop(200)
    assert content_type_declared(spec, route, ok.headers["content-type"])
    HeartbeatResponse.model_validate_json(ok.content)
    for r in served.values():
        check_error(r, ErrorOut)


@asynccontextmanager
async def replica_that_hangs_up() -> AsyncIterator[int]:
    """A replica that passes its health check and names model ``tiny``, then closes every
    inference request's connection without answering (its port)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            answers = {
                b"GET /health ": {"status": "ok"},
                b"GET /v1/models ": {"object": "list", "data": [{"id": "tiny", "object": "model"}]},
            }
            found = next((a for p, a in answers.items() if head.startswith(p)), None)
            if found is not None:
                body = json.dumps(found).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


VALID = {
    "chat/completions": {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]},
    "completions": {"model": "tiny", "prompt": "hi"},
    "embeddings": {"model": "tiny", "input": "hi"},
    "audio/speech": {"model": "tiny", "input": "hi", "voice": "a"},
}


async def test_the_inference_routes_answer_exactly_what_they_declare(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    routes = {r.path: r for r in fast_routes(api.ctx) if r.path != "/v1/agent/heartbeat"}
    async with AsyncExitStack() as stack:
        working = await deploy(api, stack, [await serve(stack, fake_model_server())])
        broken = await deploy(
            api, stack, [await stack.enter_async_context(replica_that_hangs_up())]
        )
        async with AsyncExitStack() as lost_replica:
            gone = await deploy(api, stack, [await serve(lost_replica, fake_model_server())])
        tenant = working.tenant
        keys = f"/v1/orgs/{tenant.org_id}/api-keys"
        reader = await tenant.client.post(keys, json={"name": "r", "scopes": ["org:read"]})
        limited = await tenant.client.post(
            keys, json={"name": "l", "scopes": ["inference"], "rpm_limit": 1}
        )
        oversize = b'{"input": "' + b"x" * (api.ctx.settings.max_body_bytes + 1) + b'"}'
        for path, route in routes.items():
            valid = VALID[path.removeprefix("/v1/")]
            limited_client = api.client_for(limited.json()["key"])
            await limited_client.post(path, json=valid)  # its one request this minute
            sent = [
                (tenant.client, valid),
                (tenant.client, []),
                (api.client_for(None), valid),
                (api.client_for(reader.json()["key"]), valid),
                (tenant.client, {**valid, "model": "nope"}),
                (tenant.client, oversize),
                (limited_client, valid),
                (broken.tenant.client, valid),
                (gone.tenant.client, valid),
            ]
            served: dict[int, httpx.Response] = {}
            for client, body in sent:
                if isinstance(body, bytes):
                    r = await client.post(path, content=body)
                else:
                    r = await client.post(path, json=body)
                served[r.status_code] = r
            assert set(served) == declared_statuses(spec, route), (path, sorted(served))
            ok = served.pop(200)
            assert content_type_declared(spec, route, ok.headers["content-type"]), path
            if ok.headers["content-type"].startswith("application/json"):
                assert isinstance(ok.json(), dict)
            for r in served.values():
                check_error(r, OpenAIErrorOut)
        stream = await working.tenant.client.post(
            "/v1/chat/completions", json={**VALID["chat/completions"], "stream": True}
        )
        assert stream.status_code == 200
        assert content_type_declared(
            spec, routes["/v1/chat/completions"], stream.headers["content-type"]
        )
        assert stream.text.endswith("data: [DONE]\n\n")


# --- the gateway's own body checks against the declared request models ------------------------

OPTIONAL = {
    "model": st.sampled_from([None, "", "tiny", " ", 3, True, [], {}]),
    "stream": st.sampled_from([None, True, False, 0, 1, "true", {}]),
    "stream_options": st.sampled_from([None, {}, {"include_usage": True}, [], "x", 1]),
    "messages": st.sampled_from(
        [
            None,
            [],
            "hi",
            {"role": "user"},
            [{"role": "user", "content": "hi"}],
            [{"role": "user"}, {"role": "assistant", "content": None}],
            [{"content": "no role"}],
            [{"role": 1}],
            [{"role": None}],
            ["user"],
            [{"role": "user"}, 3],
        ]
    ),
    "input": st.sampled_from([None, "", "hi", [], ["a", "b"], [[1, 2]], 3, {}, True]),
    "prompt": st.sampled_from(["hi", 3, None]),
    "temperature": st.sampled_from([0.5, float("nan"), float("inf"), 2**70]),
    "extra": st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=3),
        lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner),
        max_leaves=4,
    ),
}
BASE = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "input": "hi"}


def body(changed: dict[str, Any], dropped: set[str]) -> bytes:
    """A body valid for every endpoint, with some fields changed and some left out."""
    fields = {k: v for k, v in {**BASE, **changed}.items() if k not in dropped}
    return json.dumps(fields).encode()


BODIES = st.builds(
    body,
    st.fixed_dictionaries({}, optional=OPTIONAL),
    st.sets(st.sampled_from(sorted(BASE))),
) | st.sampled_from([b"[]", b'"x"', b"1", b"null", b"{", b"", b'{"model": "a"} x'])


@settings(max_examples=600, deadline=None, database=None)
@given(raw=BODIES, which=st.sampled_from(INFERENCE))
def test_the_gateway_refuses_a_body_exactly_when_its_declared_model_does(
    raw: bytes, which: Any
) -> None:
    try:
        bodies.parse(which.endpoint, raw)
        served = True
    except InvalidRequest:
        served = False
    try:
        which.request.model_validate_json(raw)
        declared = True
    except ValidationError:
        declared = False
    event(f"accepted: {served}")
    assert served == declared, (which.endpoint, raw)


@pytest.mark.parametrize("which", INFERENCE, ids=lambda i: i.endpoint)
def test_a_valid_body_is_accepted_by_both(which: Any) -> None:
    raw = json.dumps(VALID[which.endpoint]).encode()
    assert bodies.parse(which.endpoint, raw).model == "tiny"
    which.request.model_validate_json(raw)
