"""A fake OpenAI-compatible model server for gateway tests: small, honest, in-process.

Its misbehaviour is chosen by keyword and kept in ``app.state``, so a test can change it between
requests: ``raw_chat`` (answer chat completions with exactly these bytes), ``die_before_body``
(send the headers, then drop the connection), ``die_mid_stream`` (drop it after two chunks),
``hang_after`` (stream that many chunks, then wait until the request is cancelled),
``hang_before_answer`` (answer a chat completion only once the caller has gone: sets
``app.state.arrived``, then waits for the connection to close). A chat answer that ends without
finishing records how in ``app.state.cut_short`` and sets ``app.state.cut``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


@dataclass(frozen=True)
class RawAnswer:
    body: bytes
    media_type: str = "application/json"
    status: int = 200


def fake_model_server(
    model: str = "tiny",
    *,
    die_mid_stream: bool = False,
    raw_chat: RawAnswer | None = None,
    die_before_body: bool = False,
    hang_after: int | None = None,
    hang_before_answer: bool = False,
) -> FastAPI:
    app = FastAPI()
    app.state.requests = []
    app.state.heads = []  # the raw headers of each chat completion request
    app.state.raw_chat = raw_chat
    app.state.die_before_body = die_before_body
    app.state.hang_after = hang_after
    app.state.cut_short = []
    app.state.cut = asyncio.Event()
    app.state.arrived = asyncio.Event()

    @app.api_route("/echo/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def echo(request: Request) -> dict[str, Any]:
        return {
            "method": request.method,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.url.query,
            "headers": dict(request.headers),
            "body": (await request.body()).decode(),
        }

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model, "object": "model", "created": 0, "owned_by": "me"}],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        app.state.requests.append(body)
        app.state.heads.append(request.headers.raw)
        raw: RawAnswer | None = app.state.raw_chat
        if raw is not None:
            return Response(raw.body, status_code=raw.status, media_type=raw.media_type)
        if app.state.die_before_body:
            return StreamingResponse(_die_at_once(), media_type="application/json")
        if hang_before_answer:
            app.state.arrived.set()
            while (await request.receive())["type"] != "http.disconnect":
                pass
            app.state.cut_short.append("disconnected")
            app.state.cut.set()
            return Response(status_code=499)
        words = ["Hello", " from", " the", " fake", " model"]
        usage = {
            "prompt_tokens": 7,
            "completion_tokens": len(words),
            "total_tokens": 7 + len(words),
        }
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(words)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )

        async def events() -> AsyncIterator[str]:
            try:
                async for event in chat_events():
                    yield event
            except BaseException as exc:  # cancelled (the caller left), closed, or crashed
                app.state.cut_short.append(type(exc).__name__)
                app.state.cut.set()
                raise

        async def chat_events() -> AsyncIterator[str]:
            hang_after: int | None = app.state.hang_after
            for i, w in enumerate(words):
                chunk = {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
                await asyncio.sleep(0)
                if die_mid_stream and i == 1:
                    raise RuntimeError("replica crashed")
                if hang_after is not None and i + 1 == hang_after:
                    await asyncio.Event().wait()  # until the request is cancelled
            final = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            yield f"data: {json.dumps(final)}\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                u = {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
                yield f"data: {json.dumps(u)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(request: Request) -> JSONResponse:
        body = await request.json()
        app.state.requests.append(body)
        return JSONResponse(
            {
                "id": "cmpl-1",
                "object": "text_completion",
                "created": 1,
                "model": model,
                "choices": [{"index": 0, "text": "Hello", "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
            }
        )

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(inputs):
            vec = [float(len(text)), 1.0, 0.5]
            if body.get("encoding_format") == "base64":
                emb: Any = base64.b64encode(struct.pack("<3f", *vec)).decode()
            else:
                emb = vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            }
        )

    @app.post("/v1/audio/speech")
    async def speech(request: Request) -> Response:
        await request.json()
        wav = b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + b"\x00" * 24
        return Response(wav, media_type="audio/wav")

    return app


async def _die_at_once() -> AsyncIterator[bytes]:
    raise RuntimeError("replica crashed before its first chunk")
    yield b""  # an async generator
