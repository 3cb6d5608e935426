"""Request bodies, errors and account rows of the Vast dialect (offer rows are in
``vast_offers.py``, instance rows in ``vast_instances.py``).

Shaped for the official ``vastai`` CLI 1.9.1 (docs/vast-dialect.md): ids are integers, money is
dollars as a float, times are Unix seconds, and a value gpuyard does not know is ``null``, never
invented. Request bodies ignore keys they do not name, as Vast does: the CLI sends many that mean
nothing here (``client_id``, ``python_utf8``, ``image_login``, ...).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from gpuyard.core import money
from gpuyard.core.ssh_keys import SshKey
from gpuyard.core.tenancy import ApiKey, Org


def epoch(at: datetime | None) -> float | None:
    return at.timestamp() if at is not None else None


def dollars(cents: int) -> float:
    return cents / 100


class VastBody(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- requests ----------------------------------------------------------------------------------


class AskCreate(VastBody):
    """``PUT /api/v0/asks/{offer_id}/``: rent an offer (``vastai create instance``)."""

    image: StrictStr | None = Field(default=None, max_length=500)
    env: dict[str, StrictStr] | None = Field(
        default=None,
        max_length=256,
        description='Environment variables; docker-style keys (`"-p 8080:8080": "1"`) are '
        "port mappings and other flags, not variables",
    )
    disk: StrictFloat | StrictInt | None = Field(default=None, gt=0, le=1_000_000)
    label: StrictStr | None = Field(default=None, max_length=200)
    onstart: StrictStr | None = Field(default=None, max_length=65536)
    args: list[StrictStr] | None = Field(default=None, max_length=256)
    runtype: StrictStr | None = Field(default=None, max_length=32)
    target_state: Literal["running", "stopped"] | None = None
    price: StrictFloat | StrictInt | None = Field(
        default=None, description="A bid price; accepted and ignored (offers are on-demand)"
    )
    template_hash_id: StrictStr | None = Field(
        default=None, description="Templates are not supported; give an image"
    )


class InstanceUpdate(VastBody):
    """``PUT /api/v0/instances/{id}/``: ``{"state": …}`` or ``{"label": …}``."""

    state: Literal["running", "stopped"] | None = None
    label: StrictStr | None = Field(default=None, max_length=200)


class SshKeyCreate(VastBody):
    ssh_key: StrictStr = Field(min_length=1, max_length=16384)


# --- responses ---------------------------------------------------------------------------------


class VastError(BaseModel):
    success: bool = False
    error: str = Field(description="Stable machine-readable code")
    msg: str = Field(description="What went wrong, for a human (what the CLI prints)")
    request_id: str | None = None


_ERROR_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing, unknown, expired or revoked API key",
    403: "The key may not do this",
    404: "No such thing in the caller's organization",
    409: "Conflicts with the current state (e.g. the offer was just rented)",
    503: "Not serving now (e.g. the endpoint is suspended)",
    422: "The body or parameters do not match the schema",
}


def vast_errors(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` for the Vast-shaped errors a route can answer."""
    wanted = sorted({400, 401, 422, *statuses})
    return {s: {"model": VastError, "description": _ERROR_DESCRIPTIONS[s]} for s in wanted}


class Success(BaseModel):
    success: bool = True


class NewContract(BaseModel):
    success: bool = True
    new_contract: int = Field(description="The new instance's id")


class GpuNames(BaseModel):
    gpu_names: list[str]


class VastUser(BaseModel):
    """The caller's organization as a Vast user. ``credit`` and ``balance`` are the org's ledger
    balance in dollars (the dialect speaks dollars; gpuyard keeps integer cents)."""

    id: int = Field(description="The organization's integer id")
    username: str = Field(description="The organization's slug")
    fullname: str = Field(description="The organization's name")
    email: str | None = None
    api_key: str | None = Field(
        default=None, description="Never sent: keys are stored hashed (the CLI drops this field)"
    )
    balance: float = Field(default=0.0, description="The ledger balance, dollars")
    credit: float = Field(default=0.0, description="The ledger balance, dollars")
    host_agreement_accepted: bool = False
    org_id: str
    key_id: str
    scopes: list[str]

    @classmethod
    def of(cls, org: Org, *, key_id: str, scopes: list[str], balance_cents: int = 0) -> VastUser:
        dollars = money.dollars(balance_cents)
        return cls(
            id=org.number,
            username=org.slug,
            fullname=org.name,
            balance=dollars,
            credit=dollars,
            org_id=org.id,
            key_id=key_id,
            scopes=scopes,
        )


class VastSshKey(BaseModel):
    id: int
    name: str
    key: str = Field(description="The OpenSSH public key")
    fingerprint: str
    created_at: float

    @classmethod
    def of(cls, k: SshKey) -> VastSshKey:
        return cls(
            id=k.number,
            name=k.name,
            key=k.public_key,
            fingerprint=k.fingerprint,
            created_at=k.created_at.timestamp(),
        )


class SshKeyCreated(VastSshKey):
    success: bool = True


class VastApiKey(BaseModel):
    """An API key without its secret: ``prefix`` is the part shown everywhere."""

    id: int
    key_id: str
    name: str
    prefix: str
    scopes: list[str]
    status: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None

    @classmethod
    def of(cls, k: ApiKey) -> VastApiKey:
        return cls(
            id=k.number,
            key_id=k.id,
            name=k.name,
            prefix=k.prefix,
            scopes=sorted(s.value for s in k.scopes),
            status=k.status.value,
            created_at=k.created_at.timestamp(),
            expires_at=epoch(k.expires_at),
            last_used_at=epoch(k.last_used_at),
            revoked_at=epoch(k.revoked_at),
        )


class ApiKeys(BaseModel):
    apikeys: list[VastApiKey]
