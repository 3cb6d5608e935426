"""``GET /v1/orgs/{org_id}/events``: the org's event log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gpuyard.server.deps import OrgMember, Session
from gpuyard.server.routers.params import DEFAULT, Cursor, Limit
from gpuyard.server.schemas.common import PageOut, UtcDatetime, errors, page_of
from gpuyard.server.schemas.tenancy import EventOut
from gpuyard.server.services import events

router = APIRouter(prefix="/v1/orgs/{org_id}/events", tags=["events"])


@router.get("", response_model=PageOut[EventOut], responses=errors(403, 404))
async def list_events(
    org_id: str,
    principal: OrgMember,
    session: Session,
    type: Annotated[
        list[str] | None, Query(max_length=20, description="Only these types (repeatable)")
    ] = None,
    since: Annotated[UtcDatetime | None, Query(description="Created at or after")] = None,
    until: Annotated[UtcDatetime | None, Query(description="Created before")] = None,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[EventOut]:
    """Events oldest first; filter by type and time."""
    page = await events.list_events(
        session, org_id=org_id, types=type, since=since, until=until, limit=limit, cursor=cursor
    )
    return page_of(page, EventOut.of)
