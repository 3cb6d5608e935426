"""Health, readiness, metrics and the assistant-readable API description."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from gpuyard.server.deps import Context
from gpuyard.server.llms_txt import llms_full_txt, llms_txt
from gpuyard.server.services.health import readiness

router = APIRouter(tags=["meta"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready"}})
async def readyz(ctx: Context) -> JSONResponse:
    """Ready to serve: the database answers, migrations are current, and what the process waits
    for at start is there (`waiting_for`; under `gpuyard up`, its local host has joined, so a
    cluster can be created on it at once)."""
    state = await readiness(ctx.engine)
    waiting = ctx.startup.waiting_for
    ready = state.ready and not waiting
    body = {
        "status": "ready" if ready else "not_ready",
        "database": state.database,
        "schema_revision": state.schema_revision,
        "expected_revision": state.expected_revision,
        "waiting_for": waiting,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(ctx: Context) -> Response:
    """Prometheus metrics."""
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/llms.txt", response_class=PlainTextResponse)
async def llms(request: Request, ctx: Context) -> PlainTextResponse:
    """A short map of the API for assistants."""
    return PlainTextResponse(llms_txt(request.app.openapi(), ctx.settings.resolved_public_url()))


@router.get("/llms-full.txt", response_class=PlainTextResponse)
async def llms_full(request: Request, ctx: Context) -> PlainTextResponse:
    """Every route with its parameters, bodies and responses."""
    return PlainTextResponse(
        llms_full_txt(request.app.openapi(), ctx.settings.resolved_public_url())
    )
