"""``gpuyard worker chat``: ``POST /v1/chat/completions`` and ``POST /v1/completions`` in the
OpenAI shapes, over a local Hugging Face causal LM (``textgen``).

``stream: true`` answers Server-Sent Events, ``data: {chunk}\\n\\n`` … ``data: [DONE]\\n\\n``;
with ``stream_options.include_usage`` the last chunk before ``[DONE]`` has empty ``choices`` and
the ``usage``, and every other chunk ``"usage": null``, as OpenAI does. ``max_tokens`` (or
``max_completion_tokens``) is capped by ``--max-new-tokens`` and by what is left of the model's
context after the prompt; a prompt that fills the context is a 400 ``context_length_exceeded``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gpuyard.workers import textgen
from gpuyard.workers.chat_schemas import ChatRequest, CompletionRequest, GenerationRequest
from gpuyard.workers.errors import bad_request, error_body
from gpuyard.workers.json_body import DEFAULT_MAX_BODY_BYTES, read_json
from gpuyard.workers.serving import ModelSlot, create_app
from gpuyard.workers.textgen import PromptRejected, TextGenerator
from gpuyard.workers.token_stream import Finish, stream_text

log = logging.getLogger("gpuyard.workers")

DEFAULT_MAX_NEW_TOKENS = 512
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for the legacy endpoint

Chunk = Callable[[str | None, str | None], dict[str, Any]]
"""Builds one streamed chunk from a text delta and/or a finish reason."""


def _usage(finish: Finish) -> dict[str, int]:
    return {
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "total_tokens": finish.prompt_tokens + finish.completion_tokens,
    }


def _sse(payload: dict[str, Any] | str) -> str:
    data = (
        payload
        if isinstance(payload, str)
        else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    )
    return f"data: {data}\n\n"


class ChatService:
    def __init__(self, slot: ModelSlot[TextGenerator], *, max_new_tokens: int) -> None:
        self.slot = slot
        self.max_new_tokens = max_new_tokens

    async def chat_completions(self, request: Request) -> Response:
        body = await read_json(request, ChatRequest, max_bytes=DEFAULT_MAX_BODY_BYTES)
        messages = body.plain_messages()
        model = self.slot.get()
        try:
            prompt = await run_in_threadpool(model.chat_prompt, messages)
        except PromptRejected as exc:
            raise bad_request(str(exc), param="messages", code="invalid_value") from None
        requested = body.requested_tokens() or self.max_new_tokens
        return await self._respond(body, model, prompt, requested, chat=True)

    async def completions(self, request: Request) -> Response:
        body = await read_json(request, CompletionRequest, max_bytes=DEFAULT_MAX_BODY_BYTES)
        text = body.prompt_text()
        model = self.slot.get()
        prompt = await run_in_threadpool(model.encode, text)
        requested = body.max_tokens or COMPLETIONS_DEFAULT_MAX_TOKENS
        return await self._respond(body, model, prompt, requested, chat=False)

    async def _respond(
        self,
        body: GenerationRequest,
        model: TextGenerator,
        prompt: list[int],
        requested: int,
        *,
        chat: bool,
    ) -> Response:
        if not prompt:
            raise bad_request("the prompt is empty", param="prompt", code="invalid_value")
        room = model.context_length - len(prompt)
        if room < 1:
            raise bad_request(
                f"the prompt is {len(prompt)} tokens; this model's context is "
                f"{model.context_length} tokens, which leaves no room for an answer",
                param="messages" if chat else "prompt",
                code="context_length_exceeded",
            )
        sampling = body.sampling(min(requested, self.max_new_tokens, room))
        stream = stream_text(model, prompt, sampling, body.stop_strings())
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            head = {"id": ident, "created": created, "model": self.slot.model_id}
            events = self._events(stream, head, chat=chat, include_usage=body.include_usage())
            return StreamingResponse(
                events,
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        parts: list[str] = []
        finish: Finish | None = None
        async for item in stream:
            if isinstance(item, Finish):
                finish = item
            else:
                parts.append(item)
        assert finish is not None
        text = "".join(parts)
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish.finish_reason,
            }
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish.finish_reason,
            }
        return JSONResponse(
            {
                "id": ident,
                "object": "chat.completion" if chat else "text_completion",
                "created": created,
                "model": self.slot.model_id,
                "system_fingerprint": None,
                "choices": [choice],
                "usage": _usage(finish),
            }
        )

    def _chat_chunk(self, delta: str | None, finish_reason: str | None) -> dict[str, Any]:
        content: dict[str, Any] = {} if delta is None else {"content": delta}
        return {
            "object": "chat.completion.chunk",
            "choices": [
                {"index": 0, "delta": content, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def _text_chunk(self, delta: str | None, finish_reason: str | None) -> dict[str, Any]:
        return {
            "object": "text_completion",
            "choices": [
                {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    async def _events(
        self,
        stream: AsyncIterator[str | Finish],
        head: dict[str, Any],
        *,
        chat: bool,
        include_usage: bool,
    ) -> AsyncIterator[str]:
        chunk: Chunk = self._chat_chunk if chat else self._text_chunk

        def event(payload: dict[str, Any]) -> str:
            merged = {**head, "system_fingerprint": None, **payload}
            if include_usage:
                merged.setdefault("usage", None)
            return _sse(merged)

        if chat:
            opening = chunk("", None)
            opening["choices"][0]["delta"] = {"role": "assistant", "content": ""}
            yield event(opening)
        try:
            async for item in stream:
                if isinstance(item, Finish):
                    yield event(chunk(None, item.finish_reason))
                    if include_usage:
                        yield event({**chunk(None, None), "choices": [], "usage": _usage(item)})
                else:
                    yield event(chunk(item, None))
        except Exception as exc:  # headers are sent: the error can only travel in the stream
            log.exception("generation failed mid-stream")
            yield _sse(error_body(f"generation failed: {exc}", type_="server_error"))
        yield _sse("[DONE]")


def build_app(
    path: Path,
    *,
    model_id: str | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    threads: int | None = None,
) -> tuple[Starlette, ModelSlot[TextGenerator]]:
    if not path.is_dir():
        raise ValueError(f"--model {path}: not a directory")
    slot: ModelSlot[TextGenerator] = ModelSlot(
        model_id or path.resolve().name, lambda: textgen.load(path, threads=threads)
    )
    service = ChatService(slot, max_new_tokens=max_new_tokens)
    app = create_app(
        slot,
        [
            Route("/v1/chat/completions", service.chat_completions, methods=["POST"]),
            Route("/v1/completions", service.completions, methods=["POST"]),
        ],
    )
    return app, slot
