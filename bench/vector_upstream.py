"""The model server behind bench/vector_search.py's HTTP leg: one process that serves an
embedding model and a chat model, answering at once, so that what is timed is gpuyard.

- ``POST /v1/embeddings`` with ``input`` ``"query N"`` (or a list of such) answers the Nth row
  of the query vectors (``--queries``, a ``.npy`` file), so a search over HTTP looks for the
  vectors whose exact neighbours the benchmark knows; any other text gets a fixed unit vector.
- ``POST /v1/chat/completions`` answers a fixed short completion (not streamed).
- ``GET /health`` and ``GET /v1/models`` (both models), as gpuyard's health check and model
  discovery ask.

Run: ``python bench/vector_upstream.py --port P --queries Q.npy``.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

EMBED_MODEL = "bench-embed"
CHAT_MODEL = "bench-chat"
QUERY = re.compile(r"query (\d+)")


def app(queries: np.ndarray) -> Starlette:
    fixed = np.zeros(queries.shape[1], dtype="<f4")
    fixed[0] = 1.0
    rows = [q.tolist() for q in queries]

    def vector(text: str) -> list[float]:
        found = QUERY.fullmatch(text)
        return rows[int(found.group(1))] if found else fixed.tolist()

    async def embeddings(request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": vector(t)} for i, t in enumerate(texts)
        ]
        tokens = sum(len(t.split()) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "model": body.get("model", EMBED_MODEL),
                "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def chat(request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        return JSONResponse(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", CHAT_MODEL),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "It is in the sources."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 50, "completion_tokens": 6, "total_tokens": 56},
            }
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def models(request: Request) -> JSONResponse:
        listed = [{"id": m, "object": "model"} for m in (EMBED_MODEL, CHAT_MODEL)]
        return JSONResponse({"object": "list", "data": listed})

    return Starlette(
        routes=[
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/health", health),
            Route("/v1/models", models),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--queries", required=True)
    args = parser.parse_args()
    server = app(np.load(args.queries))
    uvicorn.run(server, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
