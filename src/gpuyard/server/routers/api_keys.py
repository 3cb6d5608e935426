"""``/v1/orgs/{org_id}/api-keys``: create, list, read and revoke the org's keys."""

from __future__ import annotations

from fastapi import APIRouter, status

from gpuyard.server.deps import ClockDep, KeysChanged, OrgMember, Session
from gpuyard.server.routers.params import DEFAULT, Cursor, Limit
from gpuyard.server.schemas.common import PageOut, errors, page_of
from gpuyard.server.schemas.tenancy import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from gpuyard.server.services import api_keys

router = APIRouter(prefix="/v1/orgs/{org_id}/api-keys", tags=["api keys"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=errors(403, 404, 409),
)
async def create_key(
    org_id: str, body: ApiKeyCreate, principal: OrgMember, session: Session, clock: ClockDep
) -> ApiKeyCreated:
    """Issue a key. Its secret (``key``) is in this response only."""
    new = await api_keys.create_key(
        session,
        clock=clock,
        org_id=org_id,
        name=body.name,
        scopes=body.scopes,
        expires_at=body.expires_at,
        rpm_limit=body.rpm_limit,
        tpm_limit=body.tpm_limit,
        created_by=principal,
    )
    return ApiKeyCreated.of_new(new)


@router.get("", response_model=PageOut[ApiKeyOut], responses=errors(403, 404))
async def list_keys(
    org_id: str,
    principal: OrgMember,
    session: Session,
    clock: ClockDep,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[ApiKeyOut]:
    """The org's keys, oldest first, without secrets."""
    page = await api_keys.list_keys(session, clock=clock, org_id=org_id, limit=limit, cursor=cursor)
    return page_of(page, ApiKeyOut.of)


@router.get("/{key_id}", response_model=ApiKeyOut, responses=errors(403, 404))
async def get_key(
    org_id: str, key_id: str, principal: OrgMember, session: Session, clock: ClockDep
) -> ApiKeyOut:
    return ApiKeyOut.of(await api_keys.get_key(session, clock=clock, org_id=org_id, key_id=key_id))


@router.delete("/{key_id}", response_model=ApiKeyOut, responses=errors(403, 404, 409))
async def revoke_key(
    org_id: str,
    key_id: str,
    principal: OrgMember,
    session: Session,
    clock: ClockDep,
    keys_changed: KeysChanged,
) -> ApiKeyOut:
    """Revoke a key at once. Revoking a revoked key answers the same and changes nothing."""
    key = await api_keys.revoke_key(session, clock=clock, org_id=org_id, key_id=key_id)
    keys_changed()
    return ApiKeyOut.of(key)
