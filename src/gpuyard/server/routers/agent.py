"""``/v1/agent/…``: the agent protocol (core/agent_protocol.py). Hosts authenticate with the
credential they got at registration, never with an API key."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gpuyard.core.agent_protocol import (
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
)
from gpuyard.server.deps import ClockDep, Session, SettingsDep, credential
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
        default_price=settings.default_gpu_price_cents,
    )


@router.post("/heartbeat", response_model=HeartbeatResponse, responses=errors(403))
async def heartbeat(
    body: HeartbeatRequest,
    request: Request,
    session: Session,
    clock: ClockDep,
    settings: SettingsDep,
) -> HeartbeatResponse:
    """Report facts and workload statuses; answers every workload the host should have."""
    host = await agents.authenticate(session, clock=clock, credential=credential(request))
    return await agents.heartbeat(
        session,
        clock=clock,
        host=host,
        request=body,
        heartbeat_seconds=settings.heartbeat_seconds,
        default_price=settings.default_gpu_price_cents,
    )
