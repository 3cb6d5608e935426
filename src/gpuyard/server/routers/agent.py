"""``/v1/agent/…``: the agent protocol (core/agent_protocol.py). Hosts authenticate with the
credential they got at registration, never with an API key. The heartbeat, by far the most
frequent call, is on the fast path (fast_path.py)."""

from __future__ import annotations

from fastapi import APIRouter

from gpuyard.core.agent_protocol import RegisterRequest, RegisterResponse
from gpuyard.server.deps import ClockDep, Session, SettingsDep
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
