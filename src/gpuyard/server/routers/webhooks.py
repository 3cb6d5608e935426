"""``/v1/orgs/{org_id}/webhooks``: the org's webhook endpoints, their deliveries and attempts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from gpuyard.server.deps import ClockDep, OrgMember, Session, SettingsDep
from gpuyard.server.routers.params import DEFAULT, Cursor, Limit
from gpuyard.server.schemas.common import PageOut, errors, page_of
from gpuyard.server.schemas.webhooks import (
    AttemptOut,
    DeliveryAttemptsOut,
    DeliveryOut,
    WebhookCreate,
    WebhookOut,
    WebhookUpdate,
    WebhookWithSecret,
)
from gpuyard.server.services import webhooks

router = APIRouter(prefix="/v1/orgs/{org_id}/webhooks", tags=["webhooks"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookWithSecret,
    responses=errors(403, 404),
)
async def create_webhook(
    org_id: str,
    body: WebhookCreate,
    principal: OrgMember,
    session: Session,
    clock: ClockDep,
    settings: SettingsDep,
) -> WebhookWithSecret:
    """Subscribe a URL to the org's events; the signing secret is in this answer only."""
    endpoint = await webhooks.create_endpoint(
        session,
        clock=clock,
        org_id=org_id,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        allow_private=settings.webhook_allow_private_targets,
    )
    return WebhookWithSecret.of_new(endpoint)


@router.get("", response_model=PageOut[WebhookOut], responses=errors(403, 404))
async def list_webhooks(
    org_id: str,
    principal: OrgMember,
    session: Session,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[WebhookOut]:
    page = await webhooks.list_endpoints(session, org_id=org_id, limit=limit, cursor=cursor)
    return page_of(page, WebhookOut.of)


@router.get("/{webhook_id}", response_model=WebhookOut, responses=errors(403, 404))
async def get_webhook(
    org_id: str, webhook_id: str, principal: OrgMember, session: Session
) -> WebhookOut:
    return WebhookOut.of(await webhooks.get_endpoint(session, org_id=org_id, ref=webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookOut, responses=errors(403, 404))
async def update_webhook(
    org_id: str,
    webhook_id: str,
    body: WebhookUpdate,
    principal: OrgMember,
    session: Session,
    clock: ClockDep,
    settings: SettingsDep,
) -> WebhookOut:
    """Change the URL, the event filter, the description, or enable it again."""
    endpoint = await webhooks.update_endpoint(
        session,
        clock=clock,
        org_id=org_id,
        ref=webhook_id,
        changes=body.model_dump(exclude_unset=True),
        allow_private=settings.webhook_allow_private_targets,
    )
    return WebhookOut.of(endpoint)


@router.delete("/{webhook_id}", status_code=204, responses=errors(403, 404))
async def delete_webhook(
    org_id: str, webhook_id: str, principal: OrgMember, session: Session
) -> None:
    await webhooks.delete_endpoint(session, org_id=org_id, ref=webhook_id)


@router.post(
    "/{webhook_id}/rotate-secret", response_model=WebhookWithSecret, responses=errors(403, 404)
)
async def rotate_secret(
    org_id: str, webhook_id: str, principal: OrgMember, session: Session, clock: ClockDep
) -> WebhookWithSecret:
    """A new secret (in this answer only); the old one also signs for 24 hours."""
    endpoint = await webhooks.rotate_secret(session, clock=clock, org_id=org_id, ref=webhook_id)
    return WebhookWithSecret.of_new(endpoint)


@router.post(
    "/{webhook_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryOut,
    responses=errors(403, 404),
)
async def send_test(
    org_id: str, webhook_id: str, principal: OrgMember, session: Session, clock: ClockDep
) -> DeliveryOut:
    """Send a `webhook.test` event to this endpoint."""
    return DeliveryOut.of(
        await webhooks.send_test(session, clock=clock, org_id=org_id, ref=webhook_id)
    )


@router.get(
    "/{webhook_id}/deliveries", response_model=PageOut[DeliveryOut], responses=errors(403, 404)
)
async def list_deliveries(
    org_id: str,
    webhook_id: str,
    principal: OrgMember,
    session: Session,
    status: Annotated[
        Literal["pending", "succeeded", "failed"] | None, Query(description="Only these")
    ] = None,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[DeliveryOut]:
    page = await webhooks.list_deliveries(
        session, org_id=org_id, ref=webhook_id, status=status, limit=limit, cursor=cursor
    )
    return page_of(page, DeliveryOut.of)


@router.get(
    "/{webhook_id}/deliveries/{delivery_id}/attempts",
    response_model=DeliveryAttemptsOut,
    responses=errors(403, 404),
)
async def list_attempts(
    org_id: str, webhook_id: str, delivery_id: str, principal: OrgMember, session: Session
) -> DeliveryAttemptsOut:
    """Every attempt of one delivery, oldest first."""
    delivery, attempts = await webhooks.list_attempts(
        session, org_id=org_id, ref=webhook_id, delivery_id=delivery_id
    )
    return DeliveryAttemptsOut(
        delivery=DeliveryOut.of(delivery), data=[AttemptOut.of(a) for a in attempts]
    )


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryOut,
    responses=errors(403, 404),
)
async def redeliver(
    org_id: str,
    webhook_id: str,
    delivery_id: str,
    principal: OrgMember,
    session: Session,
    clock: ClockDep,
) -> DeliveryOut:
    """Send the event again now, with a fresh retry schedule."""
    delivery = await webhooks.redeliver(
        session, clock=clock, org_id=org_id, ref=webhook_id, delivery_id=delivery_id
    )
    return DeliveryOut.of(delivery)
