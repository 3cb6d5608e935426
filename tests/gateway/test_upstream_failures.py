"""Bad input and failing replicas: every error in the OpenAI shape that the official ``openai`` SDK
turns into its typed error, every stream that goes wrong ended cleanly with an error event and
``data: [DONE]``, and a request-log row for every request that reached a replica."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from typing import Any

import openai
import pytest

from tests.gateway.kit import deploy, openai_error, request_logs, serve
from tests.gateway.upstream import RawAnswer, fake_model_server
from tests.harness import Api

HI = [{"role": "user", "content": "hi"}]
CHAT: dict[str, Any] = {"model": "tiny", "messages": HI}
STREAM: dict[str, Any] = {**CHAT, "stream": True}
WAIT_S = 10  # the most a test waits for an event that should come at once


def chunk(content: str) -> bytes:
    event = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "tiny",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }
    return f"data: {json.dumps(event)}\n\n".encode()


def events_of(body: bytes) -> list[Any]:
    """The data of each SSE event: JSON, or the string ``[DONE]``."""
    out: list[Any] = []
    for event in body.decode().split("\n\n"):
        if event.startswith("data: "):
            data = event.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def test_unknown_and_another_orgs_model_are_the_same_404(api: Api) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [await serve(stack, fake_model_server("theirs"))])
        other = await api.tenant("Other")
        answers = {
            "unknown": await other.client.post("/v1/chat/completions", json=CHAT),
            "another org's": await other.client.post(
                "/v1/chat/completions", json={**CHAT, "model": "theirs"}
            ),
        }
        shapes = []
        for answer in answers.values():
            error = openai_error(answer, 404, "model_not_found")
            assert error["type"] == "not_found_error" and error["param"] == "model"
            shapes.append({**error, "message": str(error["message"]).replace("theirs", "tiny")})
        assert shapes[0] == shapes[1]  # nothing tells the two apart
        assert d.tenant.org_id != other.org_id

        sdk = openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key=other.key, max_retries=0)
        stack.push_async_callback(sdk.close)
        for model in ("tiny", "theirs"):
            with pytest.raises(openai.NotFoundError) as caught:
                await sdk.chat.completions.create(model=model, messages=HI)
            assert caught.value.code == "model_not_found"
        assert await request_logs(api) == []


async def test_malformed_bodies_are_400_before_any_replica(api: Api) -> None:
    async with AsyncExitStack() as stack:
        upstream = fake_model_server()
        d = await deploy(api, stack, [await serve(stack, upstream)])
        chat = "chat/completions"
        cases: list[tuple[str, bytes | dict[str, Any], str, str | None]] = [
            (chat, b"{not json", "invalid_json", None),
            (chat, b"[1, 2]", "invalid_request", None),
            (chat, b'"hello"', "invalid_request", None),
            (chat, {"messages": HI}, "missing_model", "model"),
            (chat, {"model": 7, "messages": HI}, "invalid_type", "model"),
            (chat, {"model": "tiny", "messages": "hi"}, "invalid_request", "messages"),
            (chat, {"model": "tiny", "messages": []}, "invalid_request", "messages"),
            (chat, {**CHAT, "messages": [{"content": "x"}]}, "invalid_request", "messages"),
            (chat, {**CHAT, "stream": "yes"}, "invalid_type", "stream"),
            (chat, {**STREAM, "stream_options": [1]}, "invalid_type", "stream_options"),
            ("embeddings", {"model": "tiny"}, "invalid_request", "input"),
            ("audio/speech", {"model": "tiny", "input": ["a"]}, "invalid_request", "input"),
        ]
        for endpoint, body, code, param in cases:
            if isinstance(body, bytes):
                r = await d.tenant.client.post(
                    f"/v1/{endpoint}", content=body, headers={"content-type": "application/json"}
                )
            else:
                r = await d.tenant.client.post(f"/v1/{endpoint}", json=body)
            error = openai_error(r, 400, code)
            assert (error["type"], error["param"]) == ("invalid_request_error", param), body

        with pytest.raises(openai.BadRequestError) as caught:
            await d.sdk.chat.completions.create(model="tiny", messages="hi")  # type: ignore[arg-type]
        assert caught.value.param == "messages"
        with pytest.raises(openai.BadRequestError) as caught:
            await d.sdk.chat.completions.create(model="", messages=HI)
        assert caught.value.code == "missing_model"
        assert upstream.state.requests == []


async def test_an_oversize_body_is_413_in_the_openai_shape(api: Api) -> None:
    t = await api.tenant()
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * (1 << 20)}]}
    error = openai_error(
        await t.client.post("/v1/chat/completions", json=big), 413, "payload_too_large"
    )
    assert error["type"] == "invalid_request_error"
    sdk = openai.AsyncOpenAI(base_url=f"{api.base_url}/v1", api_key=t.key, max_retries=0)
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(**big)
        assert caught.value.status_code == 413 and caught.value.code == "payload_too_large"
    finally:
        await sdk.close()


async def test_every_replica_down_is_503_with_retry_after(api: Api) -> None:
    async with AsyncExitStack() as stack:
        async with AsyncExitStack() as replicas:
            ports = [await serve(replicas, fake_model_server()) for _ in range(2)]
            d = await deploy(api, stack, ports)
        # both replicas were healthy and are gone: their ports refuse connections
        r = await d.tenant.client.post("/v1/chat/completions", json=CHAT)
        error = openai_error(r, 503, "no_replica_reachable")
        assert error["type"] == "service_unavailable"
        assert r.headers["retry-after"] == "5"
        with pytest.raises(openai.InternalServerError) as caught:
            await d.sdk.chat.completions.create(**STREAM)
        assert caught.value.status_code == 503 and caught.value.code == "no_replica_reachable"
        assert caught.value.response.headers["retry-after"] == "5"
        logs = await request_logs(api)
        assert [(r.status, r.cluster_id, r.replica_id) for r in logs] == [
            (503, d.cluster_id, None),
            (503, d.cluster_id, None),
        ]
        assert all("no replica could be reached" in (r.error or "") for r in logs)
        assert api.ctx.gateway.balancer.busy() == 0  # every slot taken was given back


async def test_an_answer_that_is_not_json_is_502(api: Api) -> None:
    async with AsyncExitStack() as stack:
        upstream = fake_model_server(raw_chat=RawAnswer(b"<html>oops</html>"))
        d = await deploy(api, stack, [await serve(stack, upstream)])
        r = await d.tenant.client.post("/v1/chat/completions", json=CHAT)
        assert openai_error(r, 502, "upstream_invalid_response")["type"] == "api_error"
        with pytest.raises(openai.InternalServerError) as caught:
            await d.sdk.chat.completions.create(**CHAT)
        assert caught.value.status_code == 502

        # a failure the replica reports itself: not JSON is wrapped, keeping its status ...
        upstream.state.raw_chat = RawAnswer(b"Internal Server Error", "text/plain", 500)
        r = await d.tenant.client.post("/v1/chat/completions", json=CHAT)
        error = openai_error(r, 500, "upstream_error")
        assert error["message"] == "the model server answered 500: Internal Server Error"
        # ... and an OpenAI error of its own is passed on as it is
        own = {"message": "too long", "type": "invalid_request_error", "param": None, "code": "ctx"}
        upstream.state.raw_chat = RawAnswer(json.dumps({"error": own}).encode(), status=400)
        with pytest.raises(openai.BadRequestError) as bad:
            await d.sdk.chat.completions.create(**CHAT)
        assert bad.value.code == "ctx" and bad.value.body == own

        logs = await request_logs(api)
        assert [r.status for r in logs] == [502, 502, 500, 400]
        assert logs[0].error == "the model server answered with something other than a JSON object"
        assert logs[0].replica_id is not None and logs[2].error == "Internal Server Error"


@pytest.mark.parametrize(
    ("garbage", "passed_on", "problem"),
    [
        (b"<html>oops</html>", [], "not an SSE line: b'<html>oops</html>'"),
        (chunk("Hi") + b"data: {oops\n\n", ["Hi"], "event data is not JSON: b'{oops'"),
    ],
    ids=["not-sse", "bad-json-event"],
)
async def test_garbage_in_a_stream_ends_it_with_an_error_event(
    api: Api, garbage: bytes, passed_on: list[str], problem: str
) -> None:
    async with AsyncExitStack() as stack:
        upstream = fake_model_server(raw_chat=RawAnswer(garbage, "text/event-stream"))
        d = await deploy(api, stack, [await serve(stack, upstream)])
        r = await d.tenant.client.post("/v1/chat/completions", json=STREAM)
        assert r.status_code == 200
        *chunks, error, done = events_of(r.content)
        assert [c["choices"][0]["delta"]["content"] for c in chunks] == passed_on
        assert error == {
            "error": {
                "message": f"the model server sent a malformed event: {problem}",
                "type": "api_error",
                "param": None,
                "code": "upstream_error",
            }
        }
        assert done == "[DONE]"

        got: list[str] = []
        with pytest.raises(openai.APIError) as caught:
            async for c in await d.sdk.chat.completions.create(**STREAM):
                got.append(c.choices[0].delta.content or "")
        assert got == passed_on and caught.value.code == "upstream_error"

        logs = await request_logs(api)
        assert [(r.status, r.stream, r.error) for r in logs] == 2 * [
            (200, True, f"the model server sent a malformed event: {problem}")
        ]
        assert logs[0].completion_tokens == (len(passed_on) or None)


async def test_a_replica_failing_before_its_first_chunk_is_502(api: Api) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [await serve(stack, fake_model_server(die_before_body=True))])
        for body in (CHAT, STREAM):
            r = await d.tenant.client.post("/v1/chat/completions", json=body)
            error = openai_error(r, 502, "upstream_error")
            assert error["message"] == (
                "the model server failed before its first chunk (RemoteProtocolError)"
            )
        with pytest.raises(openai.InternalServerError):
            await d.sdk.chat.completions.create(**STREAM)
        logs = await request_logs(api)
        assert [(r.status, r.replica_id is not None) for r in logs] == 3 * [(502, True)]
        assert api.ctx.gateway.balancer.busy() == 0


async def test_a_replica_dying_mid_stream(api: Api) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [await serve(stack, fake_model_server(die_mid_stream=True))])
        r = await d.tenant.client.post("/v1/chat/completions", json=STREAM)
        *chunks, error, done = events_of(r.content)
        assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["Hello", " from"]
        assert error["error"]["code"] == "upstream_error" and done == "[DONE]"
        assert error["error"]["message"].startswith("the model server failed mid-stream")

        got: list[str] = []
        with pytest.raises(openai.APIError) as caught:
            async for c in await d.sdk.chat.completions.create(**STREAM):
                got.append(c.choices[0].delta.content or "")
        assert got == ["Hello", " from"] and caught.value.code == "upstream_error"

        logs = await request_logs(api)
        assert len(logs) == 2
        for row in logs:
            assert (row.status, row.stream, row.prompt_tokens, row.completion_tokens) == (
                200,
                True,
                None,  # no usage came: what was sent is counted
                2,
            )
            assert (row.error or "").startswith("the model server failed mid-stream")
        assert api.ctx.gateway.balancer.busy() == 0


async def test_a_client_leaving_mid_stream_cancels_the_replicas_request(api: Api) -> None:
    async with AsyncExitStack() as stack:
        upstream = fake_model_server(hang_after=2)
        d = await deploy(api, stack, [await serve(stack, upstream)])
        got: list[str] = []
        async with d.tenant.client.stream("POST", "/v1/chat/completions", json=STREAM) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    got.append(json.loads(line[6:])["choices"][0]["delta"]["content"])
                if len(got) == 2:
                    break  # and leave: the connection closes with the rest unread
        assert got == ["Hello", " from"]
        await asyncio.wait_for(upstream.state.cut.wait(), WAIT_S)
        assert upstream.state.cut_short == ["CancelledError"]

        [row] = await request_logs(api)  # queued before the replica's request was closed
        assert (row.status, row.error, row.completion_tokens) == (
            200,
            "the client disconnected",
            2,
        )
        assert api.ctx.gateway.balancer.busy() == 0


async def test_a_client_leaving_before_the_answer_cancels_the_replicas_request(api: Api) -> None:
    async with AsyncExitStack() as stack:
        upstream = fake_model_server(hang_before_answer=True)
        d = await deploy(api, stack, [await serve(stack, upstream)])
        call = asyncio.create_task(d.tenant.client.post("/v1/chat/completions", json=CHAT))
        await asyncio.wait_for(upstream.state.arrived.wait(), WAIT_S)
        call.cancel()  # the client gives up: its connection closes
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(upstream.state.cut.wait(), WAIT_S)
        assert upstream.state.cut_short == ["disconnected"]

        [row] = await request_logs(api)
        assert (row.status, row.error, row.stream) == (499, "the client disconnected", False)
        assert api.ctx.gateway.balancer.busy() == 0
