"""``/v1/orgs/{org_id}/ssh-keys``: keys given to the org's instances (authorized_keys)."""

from __future__ import annotations

from fastapi import APIRouter, status

from gpuyard.server.deps import ClockDep, OrgMember, Session
from gpuyard.server.routers.params import DEFAULT, Cursor, Limit
from gpuyard.server.schemas.common import PageOut, errors, page_of
from gpuyard.server.schemas.instances import SshKeyCreate, SshKeyOut
from gpuyard.server.services import ssh_keys

router = APIRouter(prefix="/v1/orgs/{org_id}/ssh-keys", tags=["ssh keys"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SshKeyOut,
    responses=errors(403, 404, 409),
)
async def create_ssh_key(
    org_id: str, body: SshKeyCreate, principal: OrgMember, session: Session, clock: ClockDep
) -> SshKeyOut:
    """Add an OpenSSH public key; instances created afterwards get it in authorized_keys."""
    key = await ssh_keys.create_key(
        session, clock=clock, org_id=org_id, public_key=body.public_key, name=body.name
    )
    return SshKeyOut.of(key)


@router.get("", response_model=PageOut[SshKeyOut], responses=errors(403, 404))
async def list_ssh_keys(
    org_id: str,
    principal: OrgMember,
    session: Session,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[SshKeyOut]:
    page = await ssh_keys.list_keys(session, org_id=org_id, limit=limit, cursor=cursor)
    return page_of(page, SshKeyOut.of)


@router.get("/{key_id}", response_model=SshKeyOut, responses=errors(403, 404))
async def get_ssh_key(
    org_id: str, key_id: str, principal: OrgMember, session: Session
) -> SshKeyOut:
    return SshKeyOut.of(await ssh_keys.get_key(session, org_id=org_id, key_ref=key_id))


@router.delete("/{key_id}", response_model=SshKeyOut, responses=errors(403, 404))
async def delete_ssh_key(
    org_id: str, key_id: str, principal: OrgMember, session: Session, clock: ClockDep
) -> SshKeyOut:
    return SshKeyOut.of(
        await ssh_keys.delete_key(session, clock=clock, org_id=org_id, key_ref=key_id)
    )
