"""The one place where errors become HTTP: status per error class, and the body per dialect.

Native routes answer ``{"error": message, "code": code, "param"?, "request_id"}``; the Vast dialect
(``/api/v0/`` and ``/api/v1/``) answers ``{"success": false, "error": code, "msg": message}``; the
OpenAI-compatible inference routes answer ``{"error": {"message", "type", "param", "code"}}``.
Every error response carries ``X-Request-Id``.

``error_answer`` turns any exception into its answer (status, body in the path's dialect,
headers), and logs what is not the client's doing (a failed commit, a bug with its traceback).
The app's exception handlers, the unit of work, the fast path and the outermost layer all answer
errors through it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException

from gpuyard.core.errors import (
    Conflict,
    GpuyardError,
    InsufficientQuota,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)
from gpuyard.gateway import openai_errors
from gpuyard.server.middleware.asgi import Scope, Send, header, send_bytes, state

log = logging.getLogger(__name__)

STATUS: dict[type[GpuyardError], int] = {
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    InvalidRequest: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    RateLimited: 429,
    InsufficientQuota: 429,
    Unavailable: 503,
}

# Codes for statuses that do not come from a GpuyardError (framework 404/405, 5xx).
STATUS_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def status_for(exc: GpuyardError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


Renderer = Callable[[int, str, str, str | None, str | None], dict[str, Any]]


def _native(
    status: int, code: str, message: str, param: str | None, rid: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, "code": code}
    if param is not None:
        body["param"] = param
    if rid is not None:
        body["request_id"] = rid
    return body


def _vast(
    status: int, code: str, message: str, param: str | None, rid: str | None
) -> dict[str, Any]:
    return {"success": False, "error": code, "msg": message, "request_id": rid}


def _openai(
    status: int, code: str, message: str, param: str | None, rid: str | None
) -> dict[str, Any]:
    return openai_errors.error_object(status, message, code, param)


# Path prefixes of the dialects whose error shape differs from the native one; longest first.
_DIALECTS: list[tuple[str, Renderer]] = [("/api/v0/", _vast), ("/api/v1/", _vast)]
# Vast's autoscaler routes, served at the root (compat/vast_autoscaler.py).
_DIALECTS += [
    (path, _vast)
    for path in (
        "/route/",
        "/pubkey/",
        "/get_endpoint_workers/",
        "/get_workergroup_workers/",
        "/get_endpoint_logs/",
        "/get_autogroup_logs/",
        "/worker_status/",
        "/delete_requests/",
    )
]
OPENAI_PATHS: set[str] = set()


def register_openai_paths(*prefixes: str) -> None:
    """Inference routers name the paths whose errors must parse in the openai SDK."""
    OPENAI_PATHS.update(prefixes)


def renderer_for(path: str) -> Renderer:
    for prefix in OPENAI_PATHS:
        if path == prefix or path.startswith(prefix + "/"):
            return _openai
    for prefix, renderer in _DIALECTS:
        if path.startswith(prefix):
            return renderer
    return _native


def error_body(
    path: str,
    status: int,
    *,
    code: str | None = None,
    message: str,
    param: str | None = None,
    request_id: str | None = None,
) -> bytes:
    code = code or STATUS_CODES.get(status, "error")
    body = renderer_for(path)(status, code, message, param, request_id)
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Problem:
    status: int
    message: str
    code: str
    param: str | None = None


# What every route answers when its commit conflicts, the database fails, or a bug escapes (the
# unit of work, the hot routes and the app's handler for anything unhandled).
COMMIT_CONFLICT = Problem(
    409, "the request conflicted with a concurrent change; nothing was written", "conflict"
)
DATABASE_UNAVAILABLE = Problem(
    503, "the database could not commit the change; nothing was written", "database_unavailable"
)
INTERNAL_ERROR = Problem(
    500, "internal error; quote the request id when reporting it", "internal_error"
)


def domain_problem(exc: GpuyardError) -> tuple[Problem, int | None]:
    """A refusal's answer and its ``Retry-After`` seconds (for 429 and 503 that say when)."""
    retry_after = None
    if isinstance(exc, RateLimited | Unavailable) and exc.retry_after is not None:
        retry_after = max(1, round(exc.retry_after))
    return Problem(status_for(exc), exc.message, exc.code, exc.param), retry_after


def validation_problem(problems: Sequence[Any], content_type: str) -> Problem:
    """What a request body or parameter that failed validation gets: 415 for a body that is not
    JSON, 400 for JSON that does not parse, else 422 naming the first field (pydantic's error
    list, with locations as FastAPI gives them: ``("body", "field", …)``)."""
    first: dict[str, Any] = problems[0] if problems else {}
    if first.get("loc") == ("body",) and "json" not in content_type and content_type:
        return Problem(
            415,
            f"send the body as JSON with 'Content-Type: application/json' "
            f"(got {content_type.split(';')[0]!r})",
            "unsupported_media_type",
        )
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        message = f"request body is not valid JSON: {detail}".rstrip(": ")
        return Problem(400, message, "invalid_json")
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    where = ".".join(loc) or None
    message = first.get("msg", "invalid request")
    if first.get("type") == "extra_forbidden":
        message = "unknown field"
    if first.get("type") == "missing" and where is None and "body" in first.get("loc", ()):
        message = "request body is required"
    text = f"{where}: {message}" if where else message
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return Problem(422, text, "validation_error", where)


class Refusal(Exception):
    """A request refused with its answer already decided (a body that is not the route's
    model, a reused ``Idempotency-Key``): raised or answered like any other error."""

    def __init__(self, problem: Problem, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(problem.message)
        self.problem = problem
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    status: int
    body: bytes
    headers: dict[str, str]


def error_answer(scope: Scope, exc: BaseException) -> ErrorAnswer:
    """The answer to a request that ended in ``exc``: what the client did wrong, a refusal, a
    failed commit, or a bug (500 ``internal_error``, logged with its traceback, no internals in
    the answer). Notes ``exc`` in the request state as answered."""
    problem, headers = _problem(scope, exc)
    st = state(scope)
    st["error"] = exc
    rid = st.get("request_id")
    if rid:
        headers["x-request-id"] = rid
    body = error_body(
        scope["path"],
        problem.status,
        code=problem.code,
        message=problem.message,
        param=problem.param,
        request_id=rid,
    )
    return ErrorAnswer(problem.status, body, headers)


async def send_error(send: Send, scope: Scope, exc: BaseException) -> None:
    """``error_answer`` sent as raw ASGI messages."""
    answer = error_answer(scope, exc)
    extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
    await send_bytes(send, answer.status, answer.body, extra)


def _problem(scope: Scope, exc: BaseException) -> tuple[Problem, dict[str, str]]:
    method, path = scope.get("method", ""), scope["path"]
    if isinstance(exc, GpuyardError):
        problem, retry_after = domain_problem(exc)
        return problem, ({} if retry_after is None else {"retry-after": str(retry_after)})
    if isinstance(exc, Refusal):
        return exc.problem, dict(exc.headers)
    if isinstance(exc, RequestValidationError):
        return validation_problem(exc.errors(), header(scope, b"content-type") or ""), {}
    if isinstance(exc, HTTPException):
        return _framework_problem(method, path, exc), dict(exc.headers or {})
    if isinstance(exc, IntegrityError):
        log.info("commit conflict on %s %s", method, path, exc_info=exc)
        return COMMIT_CONFLICT, {}
    if isinstance(exc, OperationalError):
        log.error("database error on %s %s", method, path, exc_info=exc)
        return DATABASE_UNAVAILABLE, {}
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return INTERNAL_ERROR, {}


def _framework_problem(method: str, path: str, exc: HTTPException) -> Problem:
    """The framework's own refusals (no such route, wrong method, unreadable body), worded."""
    status = exc.status_code
    message = {
        404: f"no route {method} {path}",
        405: f"method {method} is not allowed on {path}",
    }.get(status, str(exc.detail))
    code = STATUS_CODES.get(status, "error")
    if status == 400 and "parsing the body" in str(exc.detail):
        code, message = "invalid_json", "request body is not valid UTF-8 JSON"
    return Problem(status, message, code)
