"""``GET /v1/me``: who the presented key is."""

from __future__ import annotations

from fastapi import APIRouter

from gpuyard.server.deps import Caller, Session
from gpuyard.server.schemas.common import errors
from gpuyard.server.schemas.tenancy import MeOut, OrgOut
from gpuyard.server.services import orgs

router = APIRouter(prefix="/v1", tags=["identity"])


@router.get("/me", response_model=MeOut, responses=errors(403))
async def whoami(principal: Caller, session: Session) -> MeOut:
    """The key's id, its organization and its scopes."""
    org = await orgs.get_org(session, org_id=principal.org_id)
    return MeOut(
        key_id=principal.key_id,
        org_id=principal.org_id,
        org=OrgOut.of(org),
        scopes=sorted(principal.scopes),
    )
