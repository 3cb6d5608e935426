"""``/v1/orgs/{org_id}``: the caller's organization."""

from __future__ import annotations

from fastapi import APIRouter

from gpuyard.server.deps import ClockDep, OrgMember, Session
from gpuyard.server.schemas.common import errors
from gpuyard.server.schemas.tenancy import OrgOut, OrgUpdate
from gpuyard.server.services import orgs

router = APIRouter(prefix="/v1/orgs", tags=["organizations"])


@router.get("/{org_id}", response_model=OrgOut, responses=errors(403, 404))
async def get_org(org_id: str, principal: OrgMember, session: Session) -> OrgOut:
    """The organization the key belongs to."""
    return OrgOut.of(await orgs.get_org(session, org_id=org_id))


@router.patch("/{org_id}", response_model=OrgOut, responses=errors(403, 404))
async def update_org(
    org_id: str, body: OrgUpdate, principal: OrgMember, session: Session, clock: ClockDep
) -> OrgOut:
    """Rename the organization."""
    return OrgOut.of(await orgs.rename_org(session, clock=clock, org_id=org_id, name=body.name))
