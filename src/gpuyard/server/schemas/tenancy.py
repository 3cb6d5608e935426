"""Organizations, API keys, the caller, and events as the native API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, StrictInt, StrictStr

from gpuyard.core.principal import Scope
from gpuyard.core.tenancy import ApiKey, ApiKeyStatus, Event, NewApiKey, Org, OrgStatus
from gpuyard.server.schemas.common import RequestBody, UtcDatetime


class OrgOut(BaseModel):
    id: str
    name: str
    slug: str
    status: OrgStatus
    status_reason: str | None
    is_operator: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, org: Org) -> OrgOut:
        return cls(
            id=org.id,
            name=org.name,
            slug=org.slug,
            status=org.status,
            status_reason=org.status_reason,
            is_operator=org.is_operator,
            created_at=org.created_at,
            updated_at=org.updated_at,
        )


class OrgCreate(RequestBody):
    name: StrictStr = Field(min_length=1, max_length=200)
    slug: StrictStr | None = Field(default=None, min_length=1, max_length=64)


class OrgUpdate(RequestBody):
    name: StrictStr = Field(min_length=1, max_length=200)


class OrgSuspend(RequestBody):
    reason: StrictStr | None = Field(default=None, max_length=500)


class ApiKeyOut(BaseModel):
    id: str
    org_id: str
    name: str
    prefix: str = Field(description="The first characters of the key, to tell keys apart")
    scopes: list[Scope]
    status: ApiKeyStatus
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    rpm_limit: int | None = Field(description="Inference requests per minute; null: unlimited")
    tpm_limit: int | None = Field(description="Inference tokens per minute; null: unlimited")

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            id=key.id,
            org_id=key.org_id,
            name=key.name,
            prefix=key.prefix,
            scopes=list(key.scopes),
            status=key.status,
            created_at=key.created_at,
            expires_at=key.expires_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
            rpm_limit=key.rpm_limit,
            tpm_limit=key.tpm_limit,
        )


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret. Shown only in this response: store it now.")

    @classmethod
    def of_new(cls, new: NewApiKey) -> ApiKeyCreated:
        return cls(**ApiKeyOut.of(new.key).model_dump(), key=new.secret)


class ApiKeyCreate(RequestBody):
    name: StrictStr = Field(default="", max_length=200)
    scopes: list[Scope] = Field(
        default_factory=lambda: [Scope.WRITE],
        min_length=1,
        description="operator (operator org only), org:write, org:read, inference",
    )
    expires_at: UtcDatetime | None = Field(default=None, description="RFC 3339, in the future")
    rpm_limit: StrictInt | None = Field(
        default=None, ge=1, le=10_000_000, description="Inference requests per minute"
    )
    tpm_limit: StrictInt | None = Field(
        default=None, ge=1, le=1_000_000_000, description="Inference tokens per minute"
    )


class MeOut(BaseModel):
    key_id: str
    org_id: str
    org: OrgOut
    scopes: list[Scope]


class EventOut(BaseModel):
    id: str
    type: str
    org_id: str
    subject_id: str | None
    created_at: datetime
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls(
            id=event.id,
            type=event.type,
            org_id=event.org_id,
            subject_id=event.subject_id,
            created_at=event.created_at,
            data=dict(event.data),
        )
