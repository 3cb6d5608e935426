"""RAG chat completions (``POST /v1/chat/completions/RAG``) over plain HTTP and the ``openai``
SDK, with a real embedding deployment and a chat deployment behind the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.gateway.kit import openai_error, request_logs
from tests.server.vector_kit import ENGINES, FRUIT, Vectors, add, collection, started

ASK = [{"role": "user", "content": "which engine needs oil"}]


@pytest.fixture
async def vectors(vector_db_url: str, tmp_path: Path) -> AsyncIterator[Vectors]:
    async with started(vector_db_url, tmp_path, chat=True) as running:
        yield running


async def filled(v: Vectors) -> tuple[str, dict[str, str]]:
    cid = await collection(v.client)
    ids = {t: (await add(v.client, cid, t))["item"]["id"] for t in FRUIT + ENGINES}
    return cid, ids


def context_of(request: dict[str, Any]) -> str:
    first = request["messages"][0]
    assert first["role"] == "system"
    return str(first["content"])


async def test_rag_answers_with_the_sources_it_gave_the_chat_model(vectors: Vectors) -> None:
    cid, ids = await filled(vectors)
    body = {"collection": cid, "model": "tiny", "messages": ASK, "top_k": 20, "seed": 3}
    r = await vectors.client.post("/v1/chat/completions/RAG", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "Hello from the fake model"
    sources = answer["sources"]
    assert 0 < len(sources) <= 5
    assert sources[0]["id"] == ids[ENGINES[0]]  # the one with all three words
    assert {ids[t] for t in ENGINES} <= {s["id"] for s in sources}
    assert answer["usage"]["embedding_tokens"] == 4
    assert answer["usage"]["prompt_tokens"] == 7  # the chat model's own count

    assert vectors.chat_server is not None
    sent = vectors.chat_server.state.requests[-1]
    assert "collection" not in sent
    assert sent["top_k"] == 20 and sent["seed"] == 3  # Vultr's extra fields pass through
    context = context_of(sent)
    for s in sources:
        assert f"[{s['id']}] {s['content']}" in context
    assert sent["messages"][1:] == ASK

    logged = await request_logs(vectors.api)
    assert [row.endpoint for row in logged][-2:] == ["embeddings", "chat/completions"]
    assert vectors.api.ctx.gateway.kept is not None
    await vectors.api.ctx.gateway.kept.flush()
    kept = await vectors.client.get(f"/v1/chat/completions/{answer['id']}")  # kept, as any chat
    assert kept.status_code == 200, kept.text
    assert kept.json()["choices"][0]["message"]["content"] == "Hello from the fake model"


async def test_rag_streams_through_the_openai_sdk(vectors: Vectors) -> None:
    cid, ids = await filled(vectors)
    sdk = vectors.deployed.sdk
    ask = {"collection": cid, "model": "tiny", "messages": ASK, "stream": True}
    stream = await sdk.post(
        "/chat/completions/RAG",
        body=ask,
        cast_to=ChatCompletion,
        stream=True,
        stream_cls=openai.AsyncStream[ChatCompletionChunk],
    )
    chunks = [chunk async for chunk in stream]
    first = chunks[0].model_dump()
    assert first["choices"] == []
    assert first["sources"][0]["id"] == ids[ENGINES[0]]
    assert {ids[t] for t in ENGINES} <= {s["id"] for s in first["sources"]}
    assert first["usage"]["embedding_tokens"] == 4
    text = "".join(c.choices[0].delta.content or "" for c in chunks[1:] if c.choices)
    assert text == "Hello from the fake model"

    answer = await sdk.post(
        "/chat/completions/RAG", body={**ask, "stream": False}, cast_to=ChatCompletion
    )
    assert answer.choices[0].message.content == "Hello from the fake model"


async def test_rag_on_an_empty_collection_sends_no_context(vectors: Vectors) -> None:
    cid = await collection(vectors.client)
    r = await vectors.client.post(
        "/v1/chat/completions/RAG", json={"collection": cid, "model": "tiny", "messages": ASK}
    )
    assert r.status_code == 200, r.text
    assert r.json()["sources"] == [] and r.json()["usage"]["embedding_tokens"] == 0
    assert vectors.chat_server is not None
    assert vectors.chat_server.state.requests[-1]["messages"] == ASK


async def test_rag_bad_input(vectors: Vectors) -> None:
    cid, _ = await filled(vectors)
    c = vectors.client
    url = "/v1/chat/completions/RAG"
    openai_error(await c.post(url, json={"model": "tiny", "messages": ASK}), 400, "invalid_request")
    openai_error(
        await c.post(url, json={"collection": cid, "messages": ASK}), 400, "invalid_request"
    )
    openai_error(
        await c.post(url, json={"collection": cid, "model": "tiny", "messages": []}),
        400,
        "invalid_request",
    )
    assistant_last = [{"role": "user", "content": ""}]
    openai_error(
        await c.post(url, json={"collection": cid, "model": "tiny", "messages": assistant_last}),
        400,
        "invalid_request",
    )
    for raw in (b"{", b"[" * 100_000, b"\xff"):
        r = await c.post(url, content=raw, headers={"content-type": "application/json"})
        openai_error(r, 400, "invalid_json")
    other = (await vectors.api.tenant("Other")).client
    openai_error(
        await other.post(url, json={"collection": cid, "model": "tiny", "messages": ASK}),
        404,
        "collection_not_found",
    )
    openai_error(
        await c.post(url, json={"collection": cid, "model": "nope", "messages": ASK}),
        404,
        "model_not_found",
    )
    vectors.model_server.state.down = True
    r = await c.post(url, json={"collection": cid, "model": "tiny", "messages": ASK})
    openai_error(r, 503, "embedding_model_unavailable")
    assert float(r.headers["retry-after"]) > 0
