"""Domain models of organizations and their API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gpuyard.core.principal import Scope


class OrgStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    number: int  # the integer id (the Vast dialect's)
    name: str
    slug: str
    status: OrgStatus
    status_reason: str | None
    is_operator: bool
    created_at: datetime
    updated_at: datetime


class ApiKeyStatus(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    number: int  # the integer id (the Vast dialect's)
    org_id: str
    name: str
    prefix: str
    scopes: tuple[Scope, ...]
    status: ApiKeyStatus
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    rpm_limit: int | None = None  # requests per minute for inference; None: unlimited
    tpm_limit: int | None = None  # tokens per minute for inference; None: unlimited


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A key just created: the only time its secret exists outside the caller's hands."""

    key: ApiKey
    secret: str


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    org_id: str
    type: str
    subject_id: str | None
    data: dict[str, object]
    created_at: datetime
