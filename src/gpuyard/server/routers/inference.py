"""The OpenAI-compatible inference API (``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/v1/audio/speech``, ``/v1/models``) and each cluster's own endpoint
(``/endpoints/{slug}/…``). Thin: every decision is in gateway/service.py.

The four POSTs are served by ``hot_routes`` (in front of the framework: the gateway's added
latency is a product goal), and declared here as well, with the same logic, for the API docs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from gpuyard.core.errors import NotFound
from gpuyard.core.principal import Principal, Scope
from gpuyard.gateway.relay import Relay
from gpuyard.gateway.respond import respond
from gpuyard.gateway.service import Gateway
from gpuyard.server import query_keys
from gpuyard.server.context import AppContext
from gpuyard.server.deps import require
from gpuyard.server.errors import register_openai_paths
from gpuyard.server.middleware import asgi
from gpuyard.server.middleware.hot_routes import HotRoute, answering
from gpuyard.server.schemas.common import ErrorOut, errors

router = APIRouter(tags=["inference"])
ENDPOINTS = ("chat/completions", "completions", "embeddings", "audio/speech")
register_openai_paths(*(f"/v1/{e}" for e in ENDPOINTS), "/v1/models", "/endpoints")
BAD_GATEWAY: dict[int | str, dict[str, Any]] = {
    502: {"model": ErrorOut, "description": "The model server failed or answered garbage"}
}


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.ctx.gateway
    return gw


GatewayDep = Annotated[Gateway, Depends(gateway)]


async def inference_principal(request: Request, gw: GatewayDep) -> Principal:
    return await _caller(gw, request.scope)


async def _caller(gw: Gateway, scope: asgi.Scope) -> Principal:
    """The key's principal (cached), if it may call inference."""
    principal = await gw.auth.principal(asgi.credential(scope))
    require(principal, Scope.INFERENCE)
    return principal


Caller = Annotated[Principal, Depends(inference_principal)]


def _respond(relay: Relay) -> Response:
    if relay.stream is not None:
        return StreamingResponse(relay.stream, status_code=relay.status, headers=relay.headers)
    return Response(relay.body or b"", status_code=relay.status, headers=relay.headers)


def _body_doc(summary: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["model"],
                        "properties": {"model": {"type": "string"}},
                        "additionalProperties": True,
                    }
                }
            },
            "description": summary,
        }
    }


def _route(endpoint: str, summary: str) -> None:
    async def handler(request: Request, principal: Caller, gw: GatewayDep) -> Response:
        body = await request.body()
        return _respond(await gw.call(principal, endpoint, body, request.headers.raw))

    handler.__doc__ = summary
    handler.__name__ = "create_" + endpoint.replace("/", "_")
    router.post(
        f"/v1/{endpoint}",
        responses={**errors(403, 404, 429, 503), **BAD_GATEWAY},
        openapi_extra=_body_doc(summary),
    )(handler)


_route("chat/completions", "Chat completion (OpenAI shape; `stream: true` for SSE).")
_route("completions", "Text completion (OpenAI shape).")
_route("embeddings", "Embeddings; `encoding_format` float or base64.")
_route("audio/speech", "Text to speech; answers audio bytes.")


def hot_routes(ctx: AppContext) -> dict[tuple[str, str], HotRoute]:
    """The four inference POSTs without the framework's per-request cost."""

    def route(endpoint: str) -> HotRoute:
        async def serve(
            scope: asgi.Scope, body: bytes, receive: asgi.Receive, send: asgi.Send
        ) -> None:
            gw = ctx.gateway
            principal = await _caller(gw, scope)
            await respond(
                receive,
                send,
                lambda: gw.call(principal, endpoint, body, scope["headers"]),
                started=lambda: answering(scope),
                later=gw.later,
            )

        return serve

    return {("POST", f"/v1/{e}"): route(e) for e in ENDPOINTS}


@router.get("/v1/models", responses=errors(403))
async def list_models(principal: Caller, gw: GatewayDep) -> dict[str, Any]:
    """The models your deployments serve now, and those the operator publishes to every org."""
    models = await gw.directory.models(principal.org_id)
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": int(created), "owned_by": "gpuyard"}
            for m, created in sorted(models.items())
        ],
    }


@router.get("/v1/models/{model_id:path}", responses=errors(403, 404))
async def get_model(model_id: str, principal: Caller, gw: GatewayDep) -> dict[str, Any]:
    models = await gw.directory.models(principal.org_id)
    if model_id not in models:
        raise NotFound(
            f"The model `{model_id}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    return {
        "id": model_id,
        "object": "model",
        "created": int(models[model_id]),
        "owned_by": "gpuyard",
    }


async def cluster_endpoint(
    slug: str, path: str, request: Request, principal: Caller, gw: GatewayDep
) -> Response:
    """Everything under a cluster's endpoint is proxied to one of its ready replicas."""
    relay = await gw.forward(
        principal,
        slug=slug,
        method=request.method,
        path=_upstream_path(request, slug, path),
        headers=request.headers.raw,
        body=await request.body(),
    )
    return _respond(relay)


def _upstream_path(request: Request, slug: str, path: str) -> str:
    """The path after the endpoint's prefix, as the client sent it (still percent-encoded), and
    the query without the caller's key (``?api_key=``): a replica never sees the key."""
    raw: bytes = request.scope.get("raw_path") or b""
    prefix = f"/endpoints/{slug}/".encode()
    tail = raw[len(prefix) - 1 :].decode("latin-1") if raw.startswith(prefix) else f"/{path}"
    query = query_keys.without_keys(request.url.query)
    return f"{tail}?{query}" if query else tail


for _method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
    router.add_api_route(
        "/endpoints/{slug}/{path:path}",
        cluster_endpoint,
        methods=[_method],
        name=f"cluster_endpoint_{_method.lower()}",
        responses={**errors(403, 404, 429, 503), **BAD_GATEWAY},
    )
