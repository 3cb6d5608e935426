"""Kept chat completions of the Vultr Inference API: ``GET /v1/chat/completions/{id}`` (as its
caller received it; a stream put together) and its rating, ``POST
/v1/chat/completions/{id}/rating`` ``{"vote": "up"|"down"}`` (the seed names no path for it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Security
from pydantic import BaseModel, ConfigDict, Field

from gpuyard.server.deps import ClockDep, Session, bearer_key
from gpuyard.server.routers.inference import Caller, openai_errors
from gpuyard.server.services import completions

router = APIRouter(tags=["inference"], dependencies=[Security(bearer_key)])


class Vote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vote: str = Field(description="up or down")


class Rated(BaseModel):
    id: str
    vote: str


@router.get("/v1/chat/completions/{completion_id}", responses=openai_errors(401, 403, 404))
async def get_completion(completion_id: str, principal: Caller, session: Session) -> Any:
    """A chat completion your org was answered, kept for the retention period
    (``GPUYARD_COMPLETION_RETENTION_DAYS``)."""
    row = await completions.get(session, org_id=principal.org_id, completion_id=completion_id)
    return {**row.body, "vote": row.vote}


@router.post(
    "/v1/chat/completions/{completion_id}/rating", responses=openai_errors(400, 401, 403, 404)
)
async def rate_completion(
    completion_id: str, body: Vote, principal: Caller, session: Session, clock: ClockDep
) -> Rated:
    """Rate a kept chat completion up or down (a later vote replaces an earlier one)."""
    row = await completions.rate(
        session, clock=clock, org_id=principal.org_id, completion_id=completion_id, vote=body.vote
    )
    return Rated(id=row.id, vote=body.vote)
