"""The OpenAI-compatible inference API's framework routes (``/v1/models``, ``/v1/models/{id}``)
and each cluster's own endpoint (``/endpoints/{slug}/…``). Thin: every decision is in
gateway/service.py. The four inference POSTs (``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/v1/audio/speech``) are on the fast path (fast_path.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import Response, StreamingResponse

from gpuyard.core.errors import NotFound
from gpuyard.core.principal import Principal, Scope
from gpuyard.gateway.model_probe import ask_each_model
from gpuyard.gateway.relay import Relay
from gpuyard.gateway.service import Gateway
from gpuyard.server import query_keys
from gpuyard.server.deps import bearer_key, require
from gpuyard.server.errors import register_openai_paths
from gpuyard.server.middleware import asgi
from gpuyard.server.schemas.common import errors
from gpuyard.server.schemas.inference import OpenAIErrorOut

# The key goes as Bearer, as the openai SDK sends it (declared for /openapi.json).
router = APIRouter(tags=["inference"], dependencies=[Security(bearer_key)])
register_openai_paths(
    "/v1/models",
    "/endpoints",
    "/v1/health",
    "/v1/audio/voices",
    "/v1/audio/models",
    "/v1/chat/models",
)


def openai_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return errors(*statuses, model=OpenAIErrorOut)


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.ctx.gateway
    return gw


GatewayDep = Annotated[Gateway, Depends(gateway)]


async def caller(gw: Gateway, scope: asgi.Scope) -> Principal:
    """The key's principal (cached), if it may call inference."""
    principal = await gw.auth.principal(asgi.credential(scope))
    require(principal, Scope.INFERENCE)
    return principal


async def inference_principal(request: Request, gw: GatewayDep) -> Principal:
    return await caller(gw, request.scope)


Caller = Annotated[Principal, Depends(inference_principal)]


def respond(relay: Relay) -> Response:
    if relay.stream is not None:
        return StreamingResponse(relay.stream, status_code=relay.status, headers=relay.headers)
    return Response(relay.body or b"", status_code=relay.status, headers=relay.headers)


@router.get("/v1/models", responses=openai_errors(403))
async def list_models(principal: Caller, gw: GatewayDep) -> dict[str, Any]:
    """The models your deployments serve now, those the operator publishes to every org, and
    your serverless endpoints (by name)."""
    models = await gw.models(principal.org_id)
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": int(created), "owned_by": "gpuyard"}
            for m, created in sorted(models.items())
        ],
    }


@router.get("/v1/models/{model_id:path}", responses=openai_errors(403, 404))
async def get_model(model_id: str, principal: Caller, gw: GatewayDep) -> dict[str, Any]:
    models = await gw.models(principal.org_id)
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


@router.get("/v1/chat/models", responses=openai_errors(401, 403))
async def list_chat_models(principal: Caller, gw: GatewayDep) -> dict[str, list[str]]:
    """Vultr's chat model list: the models of clusters declared ``task: chat`` that you can call
    now, those the operator publishes to every org (``models``) and your org's own
    (``private_models``)."""
    published, private = await gw.directory.task_models(principal.org_id, "chat")
    return {"models": published, "private_models": private}


async def _speech_models(principal: Principal, gw: Gateway) -> dict[str, list[str]]:
    """The voices of each speech model the caller can reach: those whose replica answers
    ``GET /v1/audio/voices`` with ``{"voices": [names]}``."""
    answers = await ask_each_model(gw.directory, gw.client, principal, "/v1/audio/voices")
    found = {}
    for model, answer in answers.items():
        voices = answer.get("voices") if isinstance(answer, dict) else None
        if isinstance(voices, list):
            found[model] = [v for v in voices if isinstance(v, str)]
    return found


@router.get("/v1/audio/voices", responses=openai_errors(401, 403))
async def list_voices(principal: Caller, gw: GatewayDep) -> dict[str, list[str]]:
    """Every voice of the speech models you can call (yours and the published ones), once."""
    speech = await _speech_models(principal, gw)
    return {"voices": sorted({v for voices in speech.values() for v in voices})}


@router.get("/v1/audio/models", responses=openai_errors(401, 403))
async def list_audio_models(principal: Caller, gw: GatewayDep) -> dict[str, list[str]]:
    """The speech models you can call: those whose replicas list voices."""
    return {"speech": sorted(await _speech_models(principal, gw))}


@router.get("/v1/health", responses=openai_errors(401, 403))
async def cluster_health(principal: Caller, gw: GatewayDep) -> dict[str, Any]:
    """The inference cluster's status as you can use it: ``healthy`` when every deployment you
    can call (yours and the published ones) has a ready replica, ``degraded`` when only some
    do, ``unavailable`` when none does (or there is none); with the counts."""
    clusters, ready = await gw.directory.health(principal.org_id)
    status = "healthy" if clusters and ready == clusters else "degraded" if ready else "unavailable"
    return {"status": status, "deployments": clusters, "ready": ready}


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
    return respond(relay)


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
        responses=openai_errors(403, 404, 429, 502, 503),
    )
