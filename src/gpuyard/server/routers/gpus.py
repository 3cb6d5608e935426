"""``GET /v1/gpus``: the GPU types of the fleet, with availability and price."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from gpuyard.core import gpu_names
from gpuyard.server.deps import Caller, Session
from gpuyard.server.schemas.common import errors
from gpuyard.server.schemas.hosts import GpuTypeOut
from gpuyard.server.services import hosts

router = APIRouter(prefix="/v1", tags=["gpus"])


class GpusOut(BaseModel):
    data: list[GpuTypeOut]


@router.get("/gpus", response_model=GpusOut, responses=errors(403))
async def list_gpus(principal: Caller, session: Session) -> GpusOut:
    """Every GPU type: VRAM, how many exist and are free now, price per GPU-hour in cents."""
    types = await hosts.gpu_types(session)
    return GpusOut(data=[GpuTypeOut.of(t, gpu_names.slug(t.name)) for t in types])
