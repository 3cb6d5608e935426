"""``gpuyard worker embeddings``: ``POST /v1/embeddings`` in the OpenAI shape.

- ``input``: a string or a list of strings (token arrays are refused with a 400: this worker's
  tokenizer is not OpenAI's, so ids from a client would mean other words).
- ``encoding_format``: ``float`` (the default here) or ``base64``: the vector's little-endian
  float32 bytes, base64-encoded, which is what the ``openai`` SDK asks for by default and decodes.
- ``dimensions``: shortens the vectors (then re-normalises) where the model is Matryoshka-trained
  (wordllama); other models accept only their own size.
- ``usage.prompt_tokens``: the tokens of every input by the model's own tokenizer (WordPiece for
  MiniLM, WordLlama's BPE), without special tokens, counted before truncation.
"""

from __future__ import annotations

import base64
import importlib
import threading
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gpuyard.workers import embedders
from gpuyard.workers.embedders import Embedder, EmbedderChoice
from gpuyard.workers.errors import bad_request
from gpuyard.workers.json_body import DEFAULT_MAX_BODY_BYTES, read_json
from gpuyard.workers.serving import ModelSlot, create_app

DEFAULT_MAX_BATCH = 2048
DEFAULT_MAX_INPUT_TOKENS = 8192


@dataclass(frozen=True)
class EmbeddingsLimits:
    max_batch: int = DEFAULT_MAX_BATCH
    """Inputs per request (OpenAI's limit is 2048)."""
    max_input_tokens: int = DEFAULT_MAX_INPUT_TOKENS
    """Tokens of one input (OpenAI's limit is 8192). Longer than the model's window but within
    this limit is accepted and truncated to the window."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: Any
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, gt=0)
    user: str | None = None


def _texts(value: Any, max_batch: int) -> list[str]:
    """The texts of an ``input``, or a 400 saying what is wrong with it."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise bad_request(
            "input must be a string or a list of strings", param="input", code="invalid_input"
        )
    if not items:
        raise bad_request("input must not be an empty list", param="input", code="invalid_input")
    if all(isinstance(item, int) for item in items) or any(isinstance(i, list) for i in items):
        raise bad_request(
            "token arrays are not supported by this worker; send the text as a string or a "
            "list of strings",
            param="input",
            code="unsupported_input",
        )
    if len(items) > max_batch:
        raise bad_request(
            f"too many inputs: {len(items)}; at most {max_batch} per request",
            param="input",
            code="too_many_inputs",
        )
    for index, item in enumerate(items):
        where = "input" if isinstance(value, str) else f"input[{index}]"
        if not isinstance(item, str):
            raise bad_request(f"{where} must be a string", param="input", code="invalid_input")
        if not item.strip():
            raise bad_request(
                f"{where} is empty; every input must contain text",
                param="input",
                code="invalid_input",
            )
    return items


def _encode(np: Any, row: Any, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in row.tolist()]


class EmbeddingsService:
    """Validates, counts, embeds. One request computes at a time (the model uses every core)."""

    def __init__(self, slot: ModelSlot[Embedder], limits: EmbeddingsLimits) -> None:
        self.slot = slot
        self.limits = limits
        self._lock = threading.Lock()

    async def create(self, request: Request) -> Response:
        body = await read_json(request, EmbeddingsRequest, max_bytes=self.limits.max_body_bytes)
        texts = _texts(body.input, self.limits.max_batch)
        model = self.slot.get()
        dims = self._dimensions(model, body.dimensions)
        counts, vectors = await run_in_threadpool(self._compute, model, texts)
        for index, count in enumerate(counts):
            if count > self.limits.max_input_tokens:
                where = "input" if isinstance(body.input, str) else f"input[{index}]"
                raise bad_request(
                    f"{where} is {count} tokens; at most {self.limits.max_input_tokens} per input",
                    param="input",
                    code="input_too_long",
                )
        np = _numpy()
        if dims != model.dimensions:
            vectors = vectors[:, :dims]
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(np, row, body.encoding_format)}
            for i, row in enumerate(vectors)
        ]
        tokens = sum(counts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": self.slot.model_id,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def _dimensions(self, model: Embedder, requested: int | None) -> int:
        if requested is None or requested == model.dimensions:
            return model.dimensions
        if not model.matryoshka:
            raise bad_request(
                f"{self.slot.model_id} has a fixed size of {model.dimensions} dimensions; "
                "leave dimensions out or set it to that",
                param="dimensions",
                code="unsupported_dimensions",
            )
        if requested > model.dimensions:
            raise bad_request(
                f"dimensions must be at most {model.dimensions} for {self.slot.model_id}",
                param="dimensions",
                code="invalid_value",
            )
        return requested

    def _compute(self, model: Embedder, texts: list[str]) -> tuple[list[int], Any]:
        with self._lock:
            counts = model.count_tokens(texts)
            if max(counts) > self.limits.max_input_tokens:
                return counts, None  # refused by the caller; do not spend time embedding
            return counts, model.embed(texts)


def _numpy() -> Any:
    """numpy, which every embedding backend brings; imported once a model has loaded."""
    return importlib.import_module("numpy")


def build_app(
    choice: EmbedderChoice,
    *,
    limits: EmbeddingsLimits | None = None,
    threads: int | None = None,
) -> tuple[Starlette, ModelSlot[Embedder]]:
    slot: ModelSlot[Embedder] = ModelSlot(
        choice.model_id, lambda: embedders.load(choice, threads=threads)
    )
    service = EmbeddingsService(slot, limits or EmbeddingsLimits())
    app = create_app(slot, [Route("/v1/embeddings", service.create, methods=["POST"])])
    return app, slot
