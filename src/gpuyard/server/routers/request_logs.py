"""The Vultr Inference API's request-log query (``POST /v1/requests``): your org's inference
requests of the last 15 to 60 minutes before a time, from the gateway's request log."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Security
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gpuyard.server.deps import ClockDep, Session, bearer_key
from gpuyard.server.errors import register_openai_paths
from gpuyard.server.routers.inference import Caller, openai_errors
from gpuyard.server.services import request_logs

router = APIRouter(tags=["inference"], dependencies=[Security(bearer_key)])
register_openai_paths("/v1/requests")
MAX_ROWS = 1_000


class RequestQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: Literal[15, 30, 45, 60] = Field(description="Minutes to look back from `timestamp`")
    timestamp: AwareDatetime | None = Field(
        default=None, description="ISO 8601 with a zone, e.g. 2024-01-01T12:00:00Z; default now"
    )
    endpoint: str | None = Field(
        default=None, max_length=80, description="Only this endpoint, e.g. `chat/completions`"
    )


class LoggedRequest(BaseModel):
    id: str
    timestamp: datetime
    endpoint: str
    model: str | None
    status: int
    stream: bool
    latency_ms: float
    prompt_tokens: int | None
    completion_tokens: int | None
    error: str | None


class RequestsAnswer(BaseModel):
    requests: list[LoggedRequest] = Field(description=f"Newest first, at most {MAX_ROWS}")


@router.post("/v1/requests", responses=openai_errors(400, 401, 403, 422))
async def query_requests(
    body: RequestQuery, principal: Caller, session: Session, clock: ClockDep
) -> RequestsAnswer:
    """Requests your keys sent to the inference API in ``period`` minutes up to ``timestamp``,
    with their status, latency and tokens."""
    end = body.timestamp or clock.now()
    endpoint = body.endpoint.strip("/").removeprefix("v1/") if body.endpoint else None
    rows = await request_logs.query(
        session,
        org_id=principal.org_id,
        start=end - timedelta(minutes=body.period),
        end=end,
        endpoint=endpoint,
        limit=MAX_ROWS,
    )
    return RequestsAnswer(
        requests=[
            LoggedRequest(
                id=r.id,
                timestamp=r.created_at,
                endpoint=r.endpoint,
                model=r.model,
                status=r.status,
                stream=r.stream,
                latency_ms=r.latency_ms,
                prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens,
                error=r.error,
            )
            for r in rows
        ]
    )
