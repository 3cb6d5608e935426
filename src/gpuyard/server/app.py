"""``create_app()``: the composition root of the API server.

It wires settings, database, clock, metrics and the gateway (over its ports) once; installs the
middleware (the Host-header rewrite, request id, body limit and the last word on errors
outermost, then the fast path, all in front of the framework; then one transaction per request)
and the error handlers
that turn every failure, the framework's own included, into the error envelope; mounts the
routers; and in its lifespan migrates the database and runs the controllers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpuyard import __version__
from gpuyard.console import console_app
from gpuyard.core.clock import Clock, SystemClock
from gpuyard.core.errors import GpuyardError
from gpuyard.server import query_keys
from gpuyard.server.compat import vast
from gpuyard.server.context import AppContext
from gpuyard.server.controllers.runner import ControllerSet, build_controllers
from gpuyard.server.db import WalCheckpointer, create_engine, session_factory
from gpuyard.server.errors import Refusal, error_answer
from gpuyard.server.gateway_ports import database_gateway
from gpuyard.server.middleware.asgi import ASGIApp, Receive, Scope, Send
from gpuyard.server.middleware.endpoint_host import EndpointHostMiddleware
from gpuyard.server.middleware.request_context import RequestContextMiddleware
from gpuyard.server.middleware.unit_of_work import UnitOfWorkMiddleware
from gpuyard.server.migrate import current_revision, head_revision, migrate
from gpuyard.server.routers import (
    admin,
    agent,
    api_keys,
    billing,
    clusters,
    completions,
    endpoints,
    events,
    gpus,
    hosts,
    inference,
    me,
    meta,
    model_prices,
    offers,
    orgs,
    rag,
    request_logs,
    ssh_keys,
    top_ups,
    vector_store,
    vms,
    vultr_usage,
    webhooks,
)
from gpuyard.server.routers.fast_path import FastPath, documentation, fast_routes
from gpuyard.server.services import prices
from gpuyard.server.services.wakeups import Wakeups
from gpuyard.server.settings import Settings
from gpuyard.server.vector_ports import database_vector_store

DESCRIPTION = (
    "gpuyard is a self-hostable GPU cloud: a marketplace of GPU offers rented as instances, "
    "inference clusters and serverless endpoints, and an OpenAI-compatible inference API, "
    "for many organizations with API keys, billing in integer cents, events and webhooks."
)


class GpuyardAPI(FastAPI):
    """FastAPI behind gpuyard's own outermost layers (``front``): the Host-header rewrite, the
    request context (request id, body limit, text check, metrics) and the fast path come before
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
    wakeups = Wakeups()
    sessions = session_factory(engine, sync_session_class=wakeups.session_class())
    clock = clock or SystemClock()
    gateway = database_gateway(sessions, clock, settings.balance_policy())
    vectors, vector_search = database_vector_store(
        engine,
        sessions,
        clock,
        gateway,
        index_dir=settings.resolved_vector_index_dir(),
        default_model=settings.vector_embedding_model,
    )
    ctx = AppContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        clock=clock,
        gateway=gateway,
        vectors=vectors,
        vector_search=vector_search,
        wakeups=wakeups,
    )
    start_controllers = settings.run_controllers if run_controllers is None else run_controllers

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate_on_start:
            settings.prepare_data_dir()
            await migrate(engine)
        if await current_revision(engine) == head_revision():  # else /readyz says why
            await prices.configure_default(
                sessions,
                clock=clock,
                cents=settings.default_gpu_price_cents,
                storage_cents=settings.storage_price_cents,
            )
            await vector_search.prepare()
        checkpointer = WalCheckpointer(engine)  # SQLite: checkpoints off the write path
        checkpointer.start()
        controllers = ControllerSet(build_controllers(ctx), ctx.wakeups)
        app.state.controllers = controllers
        if start_controllers:
            controllers.start()
        await ctx.gateway.start()
        try:
            yield
        finally:
            await controllers.stop()
            await ctx.heard.flush_or_log(ctx.sessions)  # the last second's heartbeats
            vector_search.save_all()
            await ctx.gateway.stop()
            await checkpointer.stop()
            await engine.dispose()

    fast = fast_routes(ctx)

    def front(framework: ASGIApp) -> ASGIApp:
        limited = RequestContextMiddleware(
            FastPath(framework, routes=fast),
            max_body_bytes=settings.max_body_bytes,
            metrics=ctx.metrics,
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
    # protocol, then inference. The fast routes are declared for the API docs only.
    app.include_router(agent.router)
    app.include_router(documentation(fast))
    app.include_router(inference.router)
    app.include_router(vector_store.router)
    app.include_router(rag.router)
    app.include_router(completions.router)
    app.include_router(request_logs.router)
    app.include_router(vultr_usage.router)
    for module in (
        meta,
        me,
        orgs,
        api_keys,
        events,
        admin,
        billing,
        model_prices,
        top_ups,
        hosts,
        gpus,
        offers,
        vms,
        ssh_keys,
        webhooks,
        vast,
    ):
        app.include_router(module.router)
    app.include_router(clusters.native)
    app.include_router(clusters.vectorlay)
    _mount_console(app)
    app.include_router(endpoints.router)
    return app


def _mount_console(app: FastAPI) -> None:
    """The web console at ``/console`` (``/`` leads there): it calls this app's public API."""

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=303)

    app.mount("/console", console_app(app))


def _install_error_handlers(app: FastAPI) -> None:
    """Every failure inside the framework, its own refusals included, answered through
    ``errors.error_answer``. (An unhandled error's answer is sent by the framework's outermost
    layer, which then raises it again: ``RequestContextMiddleware`` ends it there, so the
    connection stays open.)"""

    async def answer(request: Request, exc: Exception) -> Response:
        found = error_answer(request.scope, exc)
        return Response(
            found.body,
            status_code=found.status,
            media_type="application/json",
            headers=found.headers,
        )

    for kind in (GpuyardError, Refusal, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, answer)
