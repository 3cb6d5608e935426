"""Webhook endpoints, deliveries and attempts on the wire."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, StrictBool, StrictStr

from gpuyard.server.schemas.common import RequestBody, reject_null
from gpuyard.server.services.webhooks import Attempt, Delivery, Endpoint


class WebhookCreate(RequestBody):
    url: StrictStr = Field(min_length=1, max_length=2048, description="An http(s) URL")
    event_types: list[StrictStr] = Field(
        default_factory=list,
        max_length=50,
        description="Only these events (`instance.running`, `billing.*`); empty: every event",
    )
    description: StrictStr | None = Field(default=None, max_length=500)


class WebhookUpdate(RequestBody):
    url: StrictStr | None = Field(default=None, min_length=1, max_length=2048)
    event_types: list[StrictStr] | None = Field(default=None, max_length=50)
    description: StrictStr | None = Field(default=None, max_length=500)
    enabled: StrictBool | None = None

    _no_null = reject_null("url", "event_types", "enabled")


class WebhookOut(BaseModel):
    id: str
    org_id: str
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, e: Endpoint) -> WebhookOut:
        return cls(
            id=e.id,
            org_id=e.org_id,
            url=e.url,
            description=e.description,
            event_types=e.event_types,
            enabled=e.enabled,
            disabled_reason=e.disabled_reason,
            created_at=e.created_at,
            updated_at=e.updated_at,
        )


class WebhookWithSecret(WebhookOut):
    secret: str = Field(description="whsec_…: shown this once; verify signatures with it")

    @classmethod
    def of_new(cls, e: Endpoint) -> WebhookWithSecret:
        assert e.secret is not None
        return cls(**WebhookOut.of(e).model_dump(), secret=e.secret)


class DeliveryOut(BaseModel):
    id: str
    endpoint_id: str
    event_id: str = Field(description="Sent as webhook-id")
    event_type: str
    status: str = Field(description="pending, succeeded or failed")
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            endpoint_id=d.endpoint_id,
            event_id=d.event_id,
            event_type=d.event_type,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
        )


class AttemptOut(BaseModel):
    number: int
    status_code: int | None
    error: str | None
    duration_ms: int
    created_at: datetime

    @classmethod
    def of(cls, a: Attempt) -> AttemptOut:
        return cls(
            number=a.number,
            status_code=a.status_code,
            error=a.error,
            duration_ms=a.duration_ms,
            created_at=a.created_at,
        )


class DeliveryAttemptsOut(BaseModel):
    delivery: DeliveryOut
    data: list[AttemptOut]
