"""``/v1/admin/…``: the operator's API over every organization."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from gpuyard.core.tenancy import OrgStatus
from gpuyard.server.deps import ClockDep, KeysChanged, Operator, Session
from gpuyard.server.routers.params import DEFAULT, Cursor, Limit
from gpuyard.server.schemas.common import PageOut, errors, page_of
from gpuyard.server.schemas.tenancy import (
    ApiKeyCreate,
    ApiKeyCreated,
    OrgCreate,
    OrgOut,
    OrgSuspend,
)
from gpuyard.server.services import api_keys, orgs

router = APIRouter(prefix="/v1/admin", tags=["operator"])


@router.post(
    "/orgs", status_code=status.HTTP_201_CREATED, response_model=OrgOut, responses=errors(403, 409)
)
async def create_org(
    body: OrgCreate, principal: Operator, session: Session, clock: ClockDep
) -> OrgOut:
    return OrgOut.of(await orgs.create_org(session, clock=clock, name=body.name, slug=body.slug))


@router.get("/orgs", response_model=PageOut[OrgOut], responses=errors(403))
async def list_orgs(
    principal: Operator,
    session: Session,
    status: Annotated[OrgStatus | None, Query(description="Only orgs in this status")] = None,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[OrgOut]:
    page = await orgs.list_orgs(session, status=status, limit=limit, cursor=cursor)
    return page_of(page, OrgOut.of)


@router.get("/orgs/{org_id}", response_model=OrgOut, responses=errors(403, 404))
async def get_org(org_id: str, principal: Operator, session: Session) -> OrgOut:
    return OrgOut.of(await orgs.get_org(session, org_id=org_id))


@router.post("/orgs/{org_id}/suspend", response_model=OrgOut, responses=errors(403, 404, 409))
async def suspend_org(
    org_id: str,
    body: OrgSuspend,
    principal: Operator,
    session: Session,
    clock: ClockDep,
    keys_changed: KeysChanged,
) -> OrgOut:
    """Suspend an org: its keys get 403 until it is reactivated."""
    org = await orgs.set_status(
        session, clock=clock, org_id=org_id, status=OrgStatus.SUSPENDED, reason=body.reason
    )
    keys_changed()
    return OrgOut.of(org)


@router.post("/orgs/{org_id}/reactivate", response_model=OrgOut, responses=errors(403, 404))
async def reactivate_org(
    org_id: str, principal: Operator, session: Session, clock: ClockDep
) -> OrgOut:
    org = await orgs.set_status(session, clock=clock, org_id=org_id, status=OrgStatus.ACTIVE)
    return OrgOut.of(org)


@router.post(
    "/orgs/{org_id}/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=errors(403, 404),
)
async def issue_key(
    org_id: str, body: ApiKeyCreate, principal: Operator, session: Session, clock: ClockDep
) -> ApiKeyCreated:
    """Issue a key for any org (its first key, typically)."""
    new = await api_keys.create_key(
        session,
        clock=clock,
        org_id=org_id,
        name=body.name,
        scopes=body.scopes,
        expires_at=body.expires_at,
        rpm_limit=body.rpm_limit,
        tpm_limit=body.tpm_limit,
    )
    return ApiKeyCreated.of_new(new)
