"""Top-ups: ``/v1/orgs/{org_id}/billing/top-ups`` (start one, list them) and the payment
provider's webhook (``/v1/payments/stripe/webhook``), which credits a paid top-up once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, status

from gpuyard.core.errors import NotFound
from gpuyard.server.deps import ClockDep, OrgMember, Session, SettingsDep
from gpuyard.server.routers.params import DEFAULT, Cursor, Limit
from gpuyard.server.schemas.billing import TopUpCreate, TopUpOut
from gpuyard.server.schemas.common import PageOut, errors, page_of
from gpuyard.server.services import top_ups
from gpuyard.server.services.stripe_payments import StripePayments
from gpuyard.server.settings import Settings

router = APIRouter(tags=["billing"])
MAX_WEBHOOK_BYTES = 256 * 1024


def stripe_provider(settings: SettingsDep) -> StripePayments:
    return configured_stripe(settings)


def configured_stripe(settings: Settings) -> StripePayments:
    if settings.stripe_secret_key is None or settings.stripe_webhook_secret is None:
        raise NotFound(
            "top-ups are not set up on this server (GPUYARD_STRIPE_SECRET_KEY and "
            "GPUYARD_STRIPE_WEBHOOK_SECRET)",
            code="top_ups_not_configured",
        )
    return StripePayments(
        secret_key=settings.stripe_secret_key.get_secret_value(),
        webhook_secret=settings.stripe_webhook_secret.get_secret_value(),
        api_base=settings.stripe_api_base,
    )


Stripe = Annotated[StripePayments, Depends(stripe_provider)]


@router.post(
    "/v1/orgs/{org_id}/billing/top-ups",
    status_code=status.HTTP_201_CREATED,
    response_model=TopUpOut,
    responses=errors(400, 403, 404),
)
async def create_top_up(
    org_id: str,
    body: TopUpCreate,
    principal: OrgMember,
    session: Session,
    clock: ClockDep,
    provider: Stripe,
) -> TopUpOut:
    """Start paying money in: a payment at the provider (Stripe: a PaymentIntent, confirmed by
    the payer with its `client_secret`). The balance grows when the provider says it is paid."""
    top_up = await top_ups.create(
        session,
        clock=clock,
        provider=provider,
        org_id=org_id,
        amount_cents=body.amount_cents,
        currency=body.currency,
    )
    return TopUpOut.of(top_up)


@router.get(
    "/v1/orgs/{org_id}/billing/top-ups",
    response_model=PageOut[TopUpOut],
    responses=errors(403, 404),
)
async def list_top_ups(
    org_id: str,
    principal: OrgMember,
    session: Session,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[TopUpOut]:
    """The org's top-ups, oldest first."""
    page = await top_ups.list_top_ups(session, org_id=org_id, limit=limit, cursor=cursor)
    return page_of(page, TopUpOut.of)


@router.post("/v1/payments/stripe/webhook", responses=errors(400, 404))
async def stripe_webhook(
    request: Request,
    session: Session,
    clock: ClockDep,
    settings: SettingsDep,
    provider: Stripe,
    stripe_signature: Annotated[str | None, Header()] = None,
) -> dict[str, bool]:
    """Stripe's events, verified by their signature; a paid top-up is credited exactly once
    however often Stripe delivers its event."""
    event = provider.verify(await request.body(), stripe_signature)
    await top_ups.apply_event(
        session,
        clock=clock,
        provider=provider.name,
        event=event,
        policy=settings.balance_policy(),
    )
    return {"received": True}
