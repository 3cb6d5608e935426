"""``/v1/agent/…``: the agent protocol (core/agent_protocol.py). Hosts authenticate with the
credential they got at registration, never with an API key. The heartbeat, by far the most
frequent call, is on the fast path (fast_path.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gpuyard.core.agent_protocol import RegisterRequest, RegisterResponse, WaitRequest, WaitResponse
from gpuyard.server.deps import ClockDep, Context, Session, SettingsDep, credential
from gpuyard.server.schemas.common import errors
from gpuyard.server.services import agents

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
