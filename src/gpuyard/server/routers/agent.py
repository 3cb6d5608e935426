"""``/v1/agent/…``: the agent protocol (core/agent_protocol.py). Hosts authenticate with the
credential they got at registration, never with an API key."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gpuyard.core.agent_protocol import (
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
    WaitRequest,
    WaitResponse,
)
from gpuyard.server.context import AppContext
from gpuyard.server.deps import ClockDep, Context, Session, SettingsDep, credential
from gpuyard.server.middleware import asgi
from gpuyard.server.middleware.asgi import Receive, Scope, Send
from gpuyard.server.middleware.hot_routes import HotRoute, parse_body
from gpuyard.server.schemas.common import errors
from gpuyard.server.services import agents
from gpuyard.server.services.heartbeats import Heartbeats

router = APIRouter(prefix="/v1/agent", tags=["agent protocol"])


@router.post("/register", response_model=RegisterResponse, responses=errors(403))
async def register(
    body: RegisterRequest, session: Session, clock: ClockDep, settings: SettingsDep
) -> RegisterResponse:
    """Join a host with a single-use join token; answers the host's own credential."""
    return await agents.register(
        session,
        clock=clock,
        request=body,
        heartbeat_seconds=settings.heartbeat_seconds,
    )


@router.post("/heartbeat", response_model=HeartbeatResponse, responses=errors(403))
async def heartbeat(
    body: HeartbeatRequest,
    request: Request,
    session: Session,
    clock: ClockDep,
    settings: SettingsDep,
) -> HeartbeatResponse:
    """Report facts and workload statuses; answers every workload the host should have.

    Served by ``hot_routes`` below (middleware/hot_routes.py); declared here for the API docs."""
    return await agents.record_heartbeat(
        session,
        clock=clock,
        credential=credential(request),
        request=body,
        heartbeat_seconds=settings.heartbeat_seconds,
    )


@router.post("/wait", response_model=WaitResponse, responses=errors(403))
async def wait(body: WaitRequest, request: Request, ctx: Context) -> WaitResponse:
    """Wait (up to ``timeout_s``, at most the heartbeat interval) until this host's assignments
    change, then heartbeat at once: new work starts within moments instead of an interval."""
    return await agents.wait_for_work(
        ctx.sessions,
        wakeups=ctx.wakeups,
        credential=credential(request),
        request=body,
        longest=ctx.settings.heartbeat_seconds,
    )


def hot_routes(ctx: AppContext) -> dict[tuple[str, str], HotRoute]:
    """The heartbeat without FastAPI's per-request cost (the most frequent call by far); one that
    changes nothing is read-only (services/heartbeats.py)."""
    beats = Heartbeats(
        engine=ctx.engine,
        sessions=ctx.sessions,
        heard=ctx.heard,
        heartbeat_seconds=ctx.settings.heartbeat_seconds,
    )

    async def heartbeat_now(scope: Scope, raw: bytes, receive: Receive, send: Send) -> None:
        body = parse_body(scope, raw, HeartbeatRequest)
        answer = await beats.answer(
            clock=ctx.clock, credential=asgi.credential(scope), request=body
        )
        await asgi.send_bytes(send, 200, answer)

    return {("POST", f"{router.prefix}/heartbeat"): heartbeat_now}
