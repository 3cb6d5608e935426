"""The OpenAI-compatible inference API (``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/v1/audio/speech``, ``/v1/models``) and each cluster's own endpoint
(``/endpoints/{slug}/…``). Thin: every decision is in gateway/service.py."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from gpuyard.core.errors import NotFound, Unavailable
from gpuyard.core.principal import Principal, Scope
from gpuyard.gateway.proxy import forward_headers, open_upstream
from gpuyard.gateway.service import Gateway, Relay
from gpuyard.server.deps import credential, require
from gpuyard.server.errors import register_openai_paths
from gpuyard.server.schemas.common import errors

router = APIRouter(tags=["inference"])
ENDPOINTS = ("chat/completions", "completions", "embeddings", "audio/speech")
register_openai_paths(*(f"/v1/{e}" for e in ENDPOINTS), "/v1/models")


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.ctx.gateway
    return gw


GatewayDep = Annotated[Gateway, Depends(gateway)]


async def inference_principal(request: Request, gw: GatewayDep) -> Principal:
    principal = await gw.auth.principal(credential(request))
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
        headers = forward_headers(list(request.headers.items()))
        return _respond(await gw.call(principal, endpoint, await request.body(), headers))

    handler.__doc__ = summary
    handler.__name__ = "create_" + endpoint.replace("/", "_")
    router.post(
        f"/v1/{endpoint}", responses=errors(403, 404, 429, 503), openapi_extra=_body_doc(summary)
    )(handler)


_route("chat/completions", "Chat completion (OpenAI shape; `stream: true` for SSE).")
_route("completions", "Text completion (OpenAI shape).")
_route("embeddings", "Embeddings; `encoding_format` float or base64.")
_route("audio/speech", "Text to speech; answers audio bytes.")


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
    targets = await gw.directory.endpoint(principal.org_id, slug)
    if targets is None:
        raise NotFound(f"no cluster endpoint {slug}", code="endpoint_not_found")
    if not targets:
        raise Unavailable(f"cluster endpoint {slug} has no ready replica yet", retry_after=5)
    query = f"?{request.url.query}" if request.url.query else ""
    upstream = await open_upstream(
        client=gw.client,
        balancer=gw.balancer,
        targets=targets,
        method=request.method,
        path=f"/{path}{query}",
        headers=forward_headers(list(request.headers.items())),
        body=await request.body(),
    )
    started = time.perf_counter()

    async def relay() -> Any:
        try:
            async for chunk in upstream.chunks():
                yield chunk
        finally:
            await upstream.close()
            gw.logs.submit(
                created_at=gw.clock.now(),
                org_id=principal.org_id,
                key_id=principal.key_id,
                endpoint=f"endpoint:{slug}",
                model=None,
                cluster_id=upstream.target.cluster_id,
                replica_id=upstream.target.replica_id,
                stream=True,
                status=upstream.response.status_code,
                prompt_tokens=None,
                completion_tokens=None,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                error=None,
            )

    headers = {
        k: v
        for k, v in upstream.response.headers.items()
        if k.lower() in ("content-type", "cache-control")
    }
    return StreamingResponse(relay(), status_code=upstream.response.status_code, headers=headers)


for _method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
    router.add_api_route(
        "/endpoints/{slug}/{path:path}",
        cluster_endpoint,
        methods=[_method],
        name=f"cluster_endpoint_{_method.lower()}",
        responses=errors(403, 404, 503),
    )
