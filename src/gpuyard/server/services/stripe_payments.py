"""The Stripe adapter of ``top_ups.PaymentProvider``, through the official ``stripe`` SDK.

A top-up is a PaymentIntent (its ``client_secret`` lets the payer's browser confirm it with
Stripe.js), created with the top-up's id as Stripe's idempotency key and in its metadata. Stripe's
webhook is verified with Stripe's own scheme (``stripe.Webhook.construct_event``: the
``Stripe-Signature`` header's HMAC-SHA256 of ``timestamp.payload``, at most five minutes old).
"""

from __future__ import annotations

import stripe

from gpuyard.core.errors import InvalidRequest, Unavailable
from gpuyard.server.services.top_ups import PaymentEvent, Started

SUCCEEDED = "payment_intent.succeeded"
FAILED = ("payment_intent.payment_failed", "payment_intent.canceled")
TOLERANCE_SECONDS = 300


class StripePayments:
    name = "stripe"

    def __init__(self, *, secret_key: str, webhook_secret: str, api_base: str | None = None):
        self._webhook_secret = webhook_secret
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=stripe.HTTPXClient(timeout=30),
            max_network_retries=2,
        )

    async def start(
        self, *, top_up_id: str, org_id: str, amount_cents: int, currency: str
    ) -> Started:
        try:
            intent = await self._client.v1.payment_intents.create_async(
                params={
                    "amount": amount_cents,
                    "currency": currency,
                    "automatic_payment_methods": {"enabled": True},
                    "metadata": {"gpuyard_top_up": top_up_id, "gpuyard_org": org_id},
                },
                options={"idempotency_key": top_up_id},
            )
        except stripe.StripeError as exc:
            raise Unavailable(
                f"the payment provider refused the top-up: {exc.user_message or exc}",
                code="payment_provider_error",
            ) from exc
        return Started(ref=intent.id, client_secret=intent.client_secret)

    def verify(self, payload: bytes, signature: str | None) -> PaymentEvent:
        try:
            event = stripe.Webhook.construct_event(
                payload, signature, self._webhook_secret, tolerance=TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError as exc:
            raise InvalidRequest(
                "the Stripe-Signature header does not verify", code="invalid_signature"
            ) from exc
        except ValueError as exc:
            raise InvalidRequest("the body is not a Stripe event", code="invalid_event") from exc
        obj = event.data.object.to_dict()
        ref = obj.get("id") if event.type.startswith("payment_intent.") else None
        amount = obj.get("amount_received") or obj.get("amount")
        succeeded: bool | None = None
        if event.type == SUCCEEDED:
            succeeded = True
        elif event.type in FAILED:
            succeeded = False
        return PaymentEvent(
            id=event.id,
            type=event.type,
            ref=ref if isinstance(ref, str) else None,
            amount_cents=amount if isinstance(amount, int) else None,
            succeeded=succeeded,
        )
