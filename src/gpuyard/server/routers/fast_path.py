"""The fast path: the raw-ASGI answers of the routes called so often that the framework's cost
per request matters, the agent heartbeat (every host every few seconds) and the four inference
POSTs (the gateway's added latency is a product goal), all in this one module.

``FastPath`` sits inside the request context (server/middleware/request_context.py: request id,
body limit, unstorable-text check, metrics, and every error answered through
``errors.error_answer``) and in front of the unit of work and FastAPI. A fast route gets the
request's scope, its body (already read and size-checked), ``receive`` and ``send``, and answers
through ``send``; a refusal is an exception (``GpuyardError``, or ``Refusal`` from
``parse_body``), answered in the route's dialect as on any other route. A fast route opens no
request transaction: what it writes it writes in its own (the heartbeat's write path, one
transaction committed before the answer).

Each ``FastRoute`` also says what it takes and answers (its request model, its answer, its
error statuses). ``documentation`` declares the fast routes in FastAPI from that alone, for
``/openapi.json``; the declarations are never served, and a test holds the served answers to
them (tests/server/test_fast_path_contract.py).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from fastapi import APIRouter, Security
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from gpuyard.core.agent_protocol import HeartbeatRequest, HeartbeatResponse
from gpuyard.gateway.relay import Relay
from gpuyard.server.context import AppContext
from gpuyard.server.deps import bearer_key
from gpuyard.server.errors import Problem, Refusal, register_openai_paths, validation_problem
from gpuyard.server.middleware.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    credential,
    header,
    send_bytes,
    state,
)
from gpuyard.server.routers.inference import caller
from gpuyard.server.schemas import inference as schemas
from gpuyard.server.schemas.common import ERROR_DESCRIPTIONS, ErrorOut
from gpuyard.server.services.heartbeats import Heartbeats

Serve = Callable[[Scope, bytes, Receive, Send], Awaitable[None]]
M = TypeVar("M", bound=BaseModel)
JSON_OBJECT = {"schema": {"type": "object", "description": "The model server's answer"}}


@dataclass(frozen=True, slots=True)
class FastRoute:
    method: str
    path: str  # metrics see it as the matched route's template, as FastAPI's routes have
    serve: Serve
    name: str
    summary: str
    description: str
    tag: str
    request: type[BaseModel]
    answer: type[BaseModel] | dict[str, Any]  # a model, or the 200 answer's OpenAPI content
    errors: dict[int, str]  # every status but 200 and 500 that it answers, each with what it means
    error_model: type[BaseModel]
    passed_on: str | None = None  # what other answers it passes on from elsewhere, if any
    api_key: bool = True  # declared as taking an API key (the heartbeat takes a host's credential)


class FastPath:
    def __init__(self, app: ASGIApp, *, routes: Iterable[FastRoute]) -> None:
        self.app = app
        self.routes = {(r.method, r.path): r for r in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http":
            route = self.routes.get((scope["method"], scope["path"]))
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        await route.serve(scope, state(scope).get("body", b""), receive, send)


def described(*statuses: int) -> dict[int, str]:
    return {s: ERROR_DESCRIPTIONS[s] for s in statuses}


def fast_routes(ctx: AppContext) -> list[FastRoute]:
    return [heartbeat_route(ctx), *inference_routes(ctx)]


def parse_body(scope: Scope, body: bytes, model: type[M]) -> M:
    """The JSON body as ``model``; a ``Refusal`` worded as FastAPI's validation errors are."""
    content_type = header(scope, b"content-type") or ""
    problems: list[dict[str, Any]]
    if not body or (content_type and "json" not in content_type):
        problems = [{"type": "missing", "loc": ("body",), "msg": "Field required"}]
    else:
        try:  # parsed first, then validated: pydantic words its errors as it does for FastAPI
            return model.model_validate(json.loads(body), from_attributes=True)
        except json.JSONDecodeError as exc:
            problems = [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "ctx": {"error": exc.msg},
                }
            ]
        except (UnicodeDecodeError, RecursionError):  # as FastAPI answers a body it cannot parse
            raise Refusal(
                Problem(400, "request body is not valid UTF-8 JSON", "invalid_json")
            ) from None
        except ValidationError as exc:
            problems = [{**p, "loc": ("body", *p["loc"])} for p in exc.errors(include_url=False)]
    raise Refusal(validation_problem(problems, content_type))


def heartbeat_route(ctx: AppContext) -> FastRoute:
    """One that changes nothing is read-only (services/heartbeats.py)."""
    beats = Heartbeats(
        engine=ctx.engine,
        sessions=ctx.sessions,
        heard=ctx.heard,
        heartbeat_seconds=ctx.settings.heartbeat_seconds,
    )

    request = HeartbeatRequest  # what is served is what is declared

    async def serve(scope: Scope, raw: bytes, receive: Receive, send: Send) -> None:
        body = parse_body(scope, raw, request)
        answer = await beats.answer(clock=ctx.clock, credential=credential(scope), request=body)
        await send_bytes(send, 200, answer)

    return FastRoute(
        method="POST",
        path="/v1/agent/heartbeat",
        serve=serve,
        name="heartbeat",
        summary="Heartbeat",
        description=(
            "Report facts and workload statuses; answers every workload the host should have. "
            "A heartbeat that changes nothing writes nothing but the time it was heard."
        ),
        tag="agent protocol",
        request=request,
        answer=HeartbeatResponse,
        errors={
            **described(400, 413, 415, 422),
            401: "Unknown host credential",
            403: "The operator removed the host",
        },
        error_model=ErrorOut,
        api_key=False,
    )


STREAMED = {"application/json": JSON_OBJECT, "text/event-stream": {"schema": {"type": "string"}}}


@dataclass(frozen=True, slots=True)
class _Inference:
    endpoint: str
    request: type[BaseModel]
    summary: str
    description: str
    answer: dict[str, Any]  # the 200 answer's OpenAPI content


INFERENCE = [
    _Inference(
        "chat/completions",
        schemas.ChatCompletionRequest,
        "Chat completion",
        "Chat completion (OpenAI shape; `stream: true` for SSE).",
        STREAMED,
    ),
    _Inference(
        "completions",
        schemas.CompletionRequest,
        "Text completion",
        "Text completion (OpenAI shape; `stream: true` for SSE).",
        STREAMED,
    ),
    _Inference(
        "embeddings",
        schemas.EmbeddingRequest,
        "Embeddings",
        "Embeddings (OpenAI shape); `encoding_format` float or base64.",
        {"application/json": JSON_OBJECT},
    ),
    _Inference(
        "audio/speech",
        schemas.SpeechRequest,
        "Text to speech",
        "Text to speech; answers audio bytes.",
        {"audio/*": {"schema": {"type": "string", "format": "binary"}}},
    ),
]
register_openai_paths(*(f"/v1/{i.endpoint}" for i in INFERENCE))


def inference_routes(ctx: AppContext) -> list[FastRoute]:
    def route(endpoint: str) -> Serve:
        async def serve(scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
            gw = ctx.gateway
            principal = await caller(gw, scope)
            await respond(
                receive,
                send,
                lambda: gw.call(principal, endpoint, body, scope["headers"]),
                later=gw.later,
            )

        return serve

    return [
        FastRoute(
            method="POST",
            path=f"/v1/{i.endpoint}",
            serve=route(i.endpoint),
            name="create_" + i.endpoint.replace("/", "_"),
            summary=i.summary,
            description=i.description,
            tag="inference",
            request=i.request,
            answer=i.answer,
            errors={
                **described(400, 401, 403, 413, 429, 502, 503),
                404: "No model of that name that the key's organization may call",
            },
            error_model=schemas.OpenAIErrorOut,
            passed_on=(
                "The model server's own error, passed on with its status: as it came when it "
                "is JSON, else in the OpenAI error shape"
            ),
        )
        for i in INFERENCE
    ]


async def respond(
    receive: Receive,
    send: Send,
    relay: Callable[[], Awaitable[Relay]],
    *,
    later: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    """Send what ``relay()`` answers as ASGI messages, with the client watched throughout: a
    client who goes away cancels the request at once, whether the gateway is still waiting for
    the replica or streaming its answer (the cancel reaches the code that holds the replica's
    connection, which closes it and logs the request as ended by the client). One task watches
    the connection instead of a task group; one message goes out per upstream read.

    Exceptions from ``relay()`` propagate, to be answered as errors (or, once the answer has
    begun, to close the connection). A stream answered to its end is closed (logged, its usage
    counted) through ``later``: after the client has had its last piece, not before."""
    task = asyncio.current_task()
    assert task is not None
    watching = True
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        if watching:  # not once the answer is complete: uvicorn says "disconnect" then too
            gone = True
            task.cancel()

    watcher = asyncio.create_task(watch())
    stream: AsyncIterator[bytes] | None = None
    answered = False
    try:
        answer = await relay()
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
        if answer.stream is None:
            body = answer.body or b""
            headers.append((b"content-length", str(len(body)).encode()))
            watching = False
            await send({"type": "http.response.start", "status": answer.status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        stream, end = answer.stream, answer.end
        chunk = await anext(stream, None)  # before the head: both then leave together
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        while chunk is not None:
            last = end is not None and end.reached  # the answer ends with this piece
            if last:
                watching = False
            await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            if last:
                answered = True
                return
            chunk = await anext(stream, None)
        watching = False
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        answered = True
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()  # the client went away: nothing is left to answer
    finally:
        watching = False
        watcher.cancel()
        if stream is not None:
            if answered:
                later(_close(stream))
            else:
                await _close(stream)


async def _close(stream: AsyncIterator[bytes]) -> None:
    """Close a stream left unfinished (its ``finally`` releases the replica and logs)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def documentation(routes: Sequence[FastRoute]) -> APIRouter:
    """The fast routes declared in FastAPI for ``/openapi.json`` only: FastPath answers every
    request for them before FastAPI sees it."""
    router = APIRouter()
    for route in routes:
        model = route.answer if isinstance(route.answer, type) else None
        responses: dict[int | str, dict[str, Any]] = {
            status: {"model": route.error_model, "description": meaning}
            for status, meaning in sorted(route.errors.items())
        }
        if model is None:
            responses[200] = {"description": "Successful Response", "content": route.answer}
        if route.passed_on is not None:
            responses["default"] = {"description": route.passed_on}
        router.add_api_route(
            route.path,
            _never_served(route),
            methods=[route.method],
            name=route.name,
            summary=route.summary,
            description=route.description,
            tags=[route.tag],
            response_model=model,
            response_class=Response if model is None else JSONResponse,
            responses=responses,
            dependencies=[Security(bearer_key)] if route.api_key else None,
        )
    return router


def _never_served(route: FastRoute) -> Callable[..., Awaitable[NoReturn]]:
    async def declared(body: Any) -> NoReturn:
        raise RuntimeError(f"{route.method} {route.path} is answered by the fast path")

    body = inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=route.request)
    declared.__signature__ = inspect.Signature([body])  # type: ignore[attr-defined]
    return declared
