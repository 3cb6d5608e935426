"""OpenAI-shaped answers of the built-in serverless worker, so that the OpenAI gateway and the
``openai`` SDK can call an endpoint that runs it: its work (hashing) becomes a chat message or
embedding vectors. No model: the content is the work's digest, the vectors come from it."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

EMBEDDING_DIM = 8


def _tokens(value: object) -> int:
    return max(1, len(json.dumps(value)) // 4)


def chat_completion(payload: dict[str, Any], digest: str) -> dict[str, Any]:
    prompt = _tokens(payload.get("messages"))
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(payload.get("model", "")),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": digest},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": 1, "total_tokens": prompt + 1},
    }


async def chat_chunks(payload: dict[str, Any], digest: str) -> AsyncIterator[bytes]:
    """The same answer as a stream: the content, the end, usage when asked, ``[DONE]``."""
    answer = chat_completion(payload, digest)
    base = {k: answer[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    pieces: list[dict[str, Any]] = [
        {"index": 0, "delta": {"role": "assistant", "content": digest}, "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": "stop"},
    ]
    for choice in pieces:
        yield f"data: {json.dumps(base | {'choices': [choice]})}\n\n".encode()
    if (payload.get("stream_options") or {}).get("include_usage"):
        yield f"data: {json.dumps(base | {'choices': [], 'usage': answer['usage']})}\n\n".encode()
    yield b"data: [DONE]\n\n"


def embeddings(payload: dict[str, Any], digest: str) -> dict[str, Any]:
    given = payload.get("input")
    inputs = given if isinstance(given, list) else [given]
    data = []
    for i, text in enumerate(inputs):
        seed = hashlib.sha256(f"{digest}:{json.dumps(text)}".encode()).digest()
        vector = [(b - 127.5) / 127.5 for b in seed[:EMBEDDING_DIM]]
        data.append({"object": "embedding", "index": i, "embedding": vector})
    prompt = _tokens(given)
    return {
        "object": "list",
        "data": data,
        "model": str(payload.get("model", "")),
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }
