"""``create_app()``: the composition root of the API server.

It wires settings, database, clock and metrics once; installs the middleware (the Host-header
rewrite, request id and body limit outermost, then the hot routes, all in front of the framework;
then one transaction per request) and the error handlers
that turn every failure, the framework's own included, into the error envelope; mounts the
routers; and in its lifespan migrates the database and runs the controllers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpuyard import __version__
from gpuyard.core.clock import Clock, SystemClock
from gpuyard.core.errors import GpuyardError
from gpuyard.gateway.service import Gateway
from gpuyard.server import query_keys
from gpuyard.server.compat import vast
from gpuyard.server.context import AppContext
from gpuyard.server.controllers.runner import ControllerSet, build_controllers
from gpuyard.server.db import create_engine, session_factory
from gpuyard.server.errors import INTERNAL_ERROR, domain_problem, error_body, validation_problem
from gpuyard.server.middleware.asgi import ASGIApp, Receive, Scope, Send
from gpuyard.server.middleware.endpoint_host import EndpointHostMiddleware
from gpuyard.server.middleware.hot_routes import HotRoutesMiddleware
from gpuyard.server.middleware.request_context import RequestContextMiddleware
from gpuyard.server.middleware.unit_of_work import UnitOfWorkMiddleware
from gpuyard.server.migrate import migrate
from gpuyard.server.routers import (
    admin,
    agent,
    api_keys,
    clusters,
    events,
    gpus,
    hosts,
    inference,
    me,
    meta,
    offers,
    orgs,
    ssh_keys,
    vms,
)
from gpuyard.server.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = (
    "gpuyard is a self-hostable GPU cloud: a marketplace of GPU offers rented as instances, "
    "inference clusters and serverless endpoints, and an OpenAI-compatible inference API, "
    "for many organizations with API keys, billing in integer cents, events and webhooks."
)


class GpuyardAPI(FastAPI):
    """FastAPI behind gpuyard's own outermost layers (``front``): the Host-header rewrite, the
    request context (request id, body limit, text check, metrics) and the hot routes come before
    any of the framework's (its own ``__call__`` included), so the most frequent requests pass
    no framework code at all."""

    def __init__(self, *, front: Callable[[ASGIApp], ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._front = front(super().__call__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._front(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    migrate_on_start: bool = True,
    run_controllers: bool | None = None,
) -> FastAPI:
    settings = settings or Settings()
    query_keys.install()  # uvicorn's access log never shows a key sent as ?api_key=
    engine = create_engine(settings.resolved_database_url())
    sessions = session_factory(engine)
    clock = clock or SystemClock()
    ctx = AppContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        clock=clock,
        gateway=Gateway(sessions, clock),
    )
    start_controllers = settings.run_controllers if run_controllers is None else run_controllers

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate_on_start:
            settings.prepare_data_dir()
            await migrate(engine)
        controllers = ControllerSet(build_controllers(ctx))
        app.state.controllers = controllers
        if start_controllers:
            controllers.start()
        await ctx.gateway.start()
        try:
            yield
        finally:
            await controllers.stop()
            await ctx.heard.flush_or_log(ctx.sessions)  # the last second's heartbeats
            await ctx.gateway.stop()
            await engine.dispose()

    def front(framework: ASGIApp) -> ASGIApp:
        hot = HotRoutesMiddleware(
            framework, routes={**agent.hot_routes(ctx), **inference.hot_routes(ctx)}
        )
        limited = RequestContextMiddleware(
            hot, max_body_bytes=settings.max_body_bytes, metrics=ctx.metrics
        )
        if not settings.endpoint_domain:  # no Host routing: one layer fewer on every request
            return limited
        return EndpointHostMiddleware(limited, domain=settings.endpoint_domain)

    app = GpuyardAPI(
        front=front,
        title="gpuyard",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    _install_error_handlers(app)
    app.add_middleware(UnitOfWorkMiddleware, factory=ctx.sessions, clock=ctx.clock)
    # The most frequent requests' routes first (FastAPI matches routes in order): the agent
    # protocol, then inference.
    app.include_router(agent.router)
    app.include_router(inference.router)
    for module in (
        meta,
        me,
        orgs,
        api_keys,
        events,
        admin,
        hosts,
        gpus,
        offers,
        vms,
        ssh_keys,
        vast,
    ):
        app.include_router(module.router)
    app.include_router(clusters.native)
    app.include_router(clusters.vectorlay)
    return app


def _request_id(request: Request) -> str | None:
    rid: str | None = request.scope.get("state", {}).get("request_id")
    return rid


def _error(
    request: Request,
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = error_body(
        request.url.path,
        status,
        code=code,
        message=message,
        param=param,
        request_id=_request_id(request),
    )
    headers = dict(headers or {})
    rid = _request_id(request)
    if rid:
        headers["X-Request-Id"] = rid
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GpuyardError)
    async def domain_error(request: Request, exc: GpuyardError) -> Response:
        problem, retry_after = domain_problem(exc)
        headers = None if retry_after is None else {"Retry-After": str(retry_after)}
        return _error(
            request,
            problem.status,
            problem.message,
            code=problem.code,
            param=problem.param,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problem = validation_problem(exc.errors(), request.headers.get("content-type", ""))
        return _error(
            request, problem.status, problem.message, code=problem.code, param=problem.param
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = None
        message = {
            404: f"no route {request.method} {request.url.path}",
            405: f"method {request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            code, message = "invalid_json", "request body is not valid UTF-8 JSON"
        return _error(
            request, exc.status_code, message, code=code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def unhandled(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(
            request, INTERNAL_ERROR.status, INTERNAL_ERROR.message, code=INTERNAL_ERROR.code
        )
