"""The Vast account: the current user (the key's org), SSH keys and API keys."""

from __future__ import annotations

from fastapi import APIRouter

from gpuyard.core.errors import InvalidRequest
from gpuyard.server.compat.vast_listing import drain
from gpuyard.server.compat.vast_scopes import Reader, Writer
from gpuyard.server.deps import ClockDep, KeysChanged, Session
from gpuyard.server.schemas.vast import (
    ApiKeys,
    SshKeyCreate,
    SshKeyCreated,
    Success,
    VastApiKey,
    VastSshKey,
    VastUser,
    vast_errors,
)
from gpuyard.server.services import api_keys, ledger, orgs, ssh_keys

router = APIRouter(prefix="/api/v0", tags=["vast"])


@router.get("/users/current", response_model=VastUser, responses=vast_errors(403))
@router.get("/users/current/", response_model=VastUser, include_in_schema=False)
async def current_user(principal: Reader, session: Session) -> VastUser:
    """The key's organization as a user (`vastai show user`), with its ledger balance."""
    org = await orgs.get_org(session, org_id=principal.org_id)
    balance = await ledger.balance_cents(session, org_id=principal.org_id)
    return VastUser.of(
        org, key_id=principal.key_id, scopes=sorted(principal.scopes), balance_cents=balance
    )


@router.post("/ssh/", response_model=SshKeyCreated, responses=vast_errors(403, 409))
async def create_ssh_key(
    body: SshKeyCreate, principal: Writer, session: Session, clock: ClockDep
) -> SshKeyCreated:
    """Add an OpenSSH public key (`vastai create ssh-key`); instances created afterwards get it."""
    try:
        key = await ssh_keys.create_key(
            session, clock=clock, org_id=principal.org_id, public_key=body.ssh_key, name=None
        )
    except InvalidRequest as exc:
        if " " in body.ssh_key.strip():
            raise
        raise InvalidRequest(
            f"{exc.message}. `vastai create ssh-key` sends its argument as it is, not a file's "
            'contents: pass the key itself, e.g. "$(cat ~/.ssh/id_ed25519.pub)"',
            param="ssh_key",
        ) from exc
    return SshKeyCreated(**VastSshKey.of(key).model_dump())


@router.get("/ssh/", response_model=list[VastSshKey], responses=vast_errors(403))
async def list_ssh_keys(principal: Reader, session: Session) -> list[VastSshKey]:
    """The org's SSH keys, oldest first (`vastai show ssh-keys`)."""
    found = await drain(
        lambda cursor: ssh_keys.list_keys(
            session, org_id=principal.org_id, limit=100, cursor=cursor
        )
    )
    return [VastSshKey.of(k) for k in found]


@router.delete("/ssh/{key_id}/", response_model=Success, responses=vast_errors(403, 404))
async def delete_ssh_key(
    key_id: str, principal: Writer, session: Session, clock: ClockDep
) -> Success:
    """Remove an SSH key (`vastai delete ssh-key`); running instances keep it."""
    await ssh_keys.delete_key(session, clock=clock, org_id=principal.org_id, key_ref=key_id)
    return Success()


@router.get("/auth/apikeys/", response_model=ApiKeys, responses=vast_errors(403))
async def list_api_keys(principal: Reader, session: Session, clock: ClockDep) -> ApiKeys:
    """The org's API keys without their secrets (`vastai show api-keys`)."""
    found = await drain(
        lambda cursor: api_keys.list_keys(
            session, clock=clock, org_id=principal.org_id, limit=100, cursor=cursor
        )
    )
    return ApiKeys(apikeys=[VastApiKey.of(k) for k in found])


@router.get("/auth/apikeys/{key_id}/", response_model=VastApiKey, responses=vast_errors(403, 404))
async def get_api_key(
    key_id: str, principal: Reader, session: Session, clock: ClockDep
) -> VastApiKey:
    """One API key, without its secret (`vastai show api-key`)."""
    key = await api_keys.get_key(session, clock=clock, org_id=principal.org_id, key_id=key_id)
    return VastApiKey.of(key)


@router.delete(
    "/auth/apikeys/{key_id}/", response_model=Success, responses=vast_errors(403, 404, 409)
)
async def revoke_api_key(
    key_id: str, principal: Writer, session: Session, clock: ClockDep, keys_changed: KeysChanged
) -> Success:
    """Revoke an API key at once (`vastai delete api-key`)."""
    await api_keys.revoke_key(session, clock=clock, org_id=principal.org_id, key_id=key_id)
    keys_changed()
    return Success()
