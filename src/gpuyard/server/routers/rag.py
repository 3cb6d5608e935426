"""``POST /v1/chat/completions/RAG``: a chat completion with context from a vector store
collection (vectorstore/rag.py), sent to the chat model through the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Security
from fastapi.responses import Response

from gpuyard.gateway.relay import Relay
from gpuyard.server.deps import bearer_key
from gpuyard.server.routers.inference import Caller, GatewayDep, openai_errors, respond
from gpuyard.server.routers.vector_store import Store
from gpuyard.vectorstore import rag

router = APIRouter(tags=["inference"], dependencies=[Security(bearer_key)])

RAG_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["collection", "model", "messages"],
    "properties": {
        "collection": {"type": "string", "description": "The collection to take context from"},
        "model": {"type": "string", "description": "The chat model"},
        "messages": {"type": "array", "items": {"type": "object"}},
        "stream": {"type": "boolean"},
    },
    "additionalProperties": True,
}


@router.post(
    "/v1/chat/completions/RAG",
    responses=openai_errors(400, 401, 403, 404, 503),
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": RAG_BODY}}}},
)
async def rag_chat_completion(
    request: Request,
    principal: Caller,
    gw: GatewayDep,
    store: Store,
) -> Response:
    """The last user message is searched in ``collection``; its closest items go to the chat
    model as context. The answer is a chat completion (or its stream) plus ``sources`` and
    ``usage.embedding_tokens``; a stream's first event is a chunk that names the sources."""
    retrieval = await rag.retrieve(store, principal, await request.body())
    relay = await gw.call(principal, "chat/completions", retrieval.body, request.headers.raw)
    if relay.status != 200:
        return respond(relay)
    if relay.stream is not None:
        first = rag.sources_event(retrieval, created=int(gw.clock.now().timestamp()))
        return respond(Relay(relay.status, relay.headers, stream=_after(first, relay.stream)))
    return respond(
        Relay(relay.status, relay.headers, body=rag.with_sources(relay.body or b"", retrieval))
    )


async def _after(first: bytes, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``first``, then the stream; closing this closes the stream (its request-log row)."""
    try:
        yield first
        async for piece in stream:
            yield piece
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
