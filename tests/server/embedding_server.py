"""A small real embedding model server for vector store tests: words hashed into 64 dimensions
(texts that share words are close, texts that share none are orthogonal), served over HTTP as
``/v1/embeddings`` with the OpenAI shape. ``app.state.down`` makes it answer 503."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

DIMS = 64
WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def embed(text: str) -> list[float]:
    vector = [0.0] * DIMS
    for word in words(text):
        digest = hashlib.sha256(word.encode()).digest()
        vector[digest[0] % DIMS] += 1.0 if digest[1] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def embedding_server(model: str = "words") -> FastAPI:
    app = FastAPI()
    app.state.down = False
    app.state.calls = 0

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model, "object": "model", "created": 0}]}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        if app.state.down:
            return JSONResponse({"error": {"message": "loading"}}, status_code=503)
        app.state.calls += 1
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        tokens = sum(len(words(t)) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": embed(t)}
                    for i, t in enumerate(texts)
                ],
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    return app
