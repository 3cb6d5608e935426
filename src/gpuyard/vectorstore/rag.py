"""Retrieval-augmented chat (``POST /v1/chat/completions/RAG``): the last user message is
embedded, the collection's closest items are found, and the chat request goes on to the chat
model with them as context, each with its id. Pure over bytes and the store: the caller sends
``Retrieval.body`` to the chat model (the gateway) and puts the sources into its answer with
``with_sources`` (a whole answer) or ``sources_event`` (the first event of a stream).

The answer is the chat completion shape plus ``sources`` (the items given, with their score)
and ``usage.embedding_tokens`` (the query's embedding, apart from the chat's own tokens).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gpuyard.core.errors import InvalidRequest
from gpuyard.core.principal import Principal
from gpuyard.vectorstore.records import Hit
from gpuyard.vectorstore.service import MAX_QUERY, VectorStore

CONTEXT_ITEMS = 5
CONTEXT_HEADER = (
    "Answer using the context below when it is relevant. Each entry starts with its id in "
    "brackets; name the ids you used.\n\n"
)


@dataclass(frozen=True, slots=True)
class Retrieval:
    body: bytes  # the chat completion request for the chat model, with the context
    model: str
    stream: bool
    sources: list[Hit]
    embedding_tokens: int

    def sources_json(self) -> list[dict[str, Any]]:
        return [
            {
                "id": h.item.id,
                "content": h.item.content,
                "description": h.item.description,
                "score": round(h.score, 6),
            }
            for h in self.sources
        ]


def _object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nested past the limit too
        raise InvalidRequest("request body is not valid JSON", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def _text_of(content: object) -> str | None:
    """A message's text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        ]
        return "\n".join(parts) if parts else None
    return None


def last_user_text(messages: object) -> str:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            "messages must be a non-empty list of {role, content} objects", param="messages"
        )
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            text = _text_of(message.get("content"))
            if text and text.strip():
                return text[:MAX_QUERY]
            break
    raise InvalidRequest("the last user message has no text to search with", param="messages")


def context_message(hits: list[Hit]) -> dict[str, str]:
    entries = "\n\n".join(f"[{h.item.id}] {h.item.content}" for h in hits)
    return {"role": "system", "content": CONTEXT_HEADER + entries}


async def retrieve(store: VectorStore, principal: Principal, raw: bytes) -> Retrieval:
    body = _object(raw)
    collection_id = body.pop("collection", None)
    if not isinstance(collection_id, str) or not collection_id:
        raise InvalidRequest("collection must be a collection's id", param="collection")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", param="model")
    query = last_user_text(body.get("messages"))
    found = await store.search(principal, collection_id, query=query, k=CONTEXT_ITEMS)
    if found.hits:
        body["messages"] = [context_message(found.hits), *body["messages"]]
    return Retrieval(
        body=json.dumps(body).encode(),
        model=model,
        stream=body.get("stream") is True,
        sources=found.hits,
        embedding_tokens=found.usage.prompt_tokens,
    )


def with_sources(answer: bytes, retrieval: Retrieval) -> bytes:
    """A whole chat completion with the sources it was given and the embedding's tokens."""
    try:
        body = json.loads(answer)
    except (ValueError, RecursionError):
        return answer
    if not isinstance(body, dict):
        return answer
    body["sources"] = retrieval.sources_json()
    usage = body.get("usage")
    if isinstance(usage, dict):
        usage["embedding_tokens"] = retrieval.embedding_tokens
    return json.dumps(body).encode()


def sources_event(retrieval: Retrieval, *, created: int) -> bytes:
    """A stream's first event: a chunk with no choices that names the sources (the ``openai``
    SDK reads it as a chunk like any other)."""
    chunk = {
        "id": "rag-sources",
        "object": "chat.completion.chunk",
        "created": created,
        "model": retrieval.model,
        "choices": [],
        "sources": retrieval.sources_json(),
        "usage": {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "embedding_tokens": retrieval.embedding_tokens,
        },
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"
