"""Reading a JSON request body into a pydantic model, with a size limit and OpenAI-shaped errors."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from gpuyard.workers.errors import ApiError, bad_request

M = TypeVar("M", bound=BaseModel)

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is larger than this worker accepts ({max_bytes} bytes)",
        code="request_too_large",
    )


async def read_json(request: Request, schema: type[M], *, max_bytes: int) -> M:
    """The body of ``request`` validated as ``schema``.

    413 ``request_too_large`` over ``max_bytes`` (checked on ``Content-Length`` and while
    reading); 400 ``invalid_json`` when it does not parse; 400 ``invalid_value`` (with ``param``
    naming the field) when it does not validate.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise bad_request("the request body is empty; send a JSON object", code="invalid_json")
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> ApiError:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return bad_request(
            f"the request body is not valid JSON: {first['msg']}", code="invalid_json"
        )
    loc = [str(part) for part in first["loc"]]
    param = ".".join(loc) or None
    message = first["msg"].removeprefix("Value error, ")
    if param:
        message = f"{param}: {message}"
    return bad_request(message, param=loc[0] if loc else None, code="invalid_value")
