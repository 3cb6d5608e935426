"""Top-ups through Stripe on both databases: the official ``stripe`` SDK talks to a local fake of
Stripe's API on loopback (Stripe itself cannot be reached here), and Stripe's webhook, signed
with Stripe's scheme, credits a paid top-up exactly once however often (and however
concurrently) it is redelivered; bad signatures, old timestamps and bad amounts change nothing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.harness import Api, Tenant, serve_app, start_api

WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)
SECRET_KEY = "sk_test_" + secrets.token_hex(12)


def fake_stripe() -> FastAPI:
    """Stripe's ``POST /v1/payment_intents`` as the SDK calls it: form-encoded parameters, the
    secret key as Bearer, an ``Idempotency-Key`` that answers a retry with the same intent."""
    app = FastAPI()
    app.state.intents = {}
    app.state.calls = []

    @app.post("/v1/payment_intents")
    async def create(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {SECRET_KEY}":
            return JSONResponse({"error": {"type": "invalid_request_error"}}, status_code=401)
        form = await request.form()
        app.state.calls.append(dict(form))
        key = request.headers.get("idempotency-key", secrets.token_hex(8))
        if key not in app.state.intents:
            pi = "pi_" + secrets.token_hex(12)
            app.state.intents[key] = {
                "id": pi,
                "object": "payment_intent",
                "amount": int(str(form["amount"])),
                "currency": form["currency"],
                "client_secret": f"{pi}_secret_{secrets.token_hex(8)}",
                "status": "requires_payment_method",
                "metadata": {"gpuyard_top_up": form.get("metadata[gpuyard_top_up]")},
            }
        return JSONResponse(app.state.intents[key])

    return app


def stripe_event(kind: str, intent: dict[str, Any], **over: Any) -> bytes:
    obj = {**intent, "amount_received": intent["amount"], **over}
    event = {
        "id": "evt_" + secrets.token_hex(10),
        "object": "event",
        "type": kind,
        "data": {"object": obj},
        "api_version": "2024-06-20",
        "created": int(time.time()),
    }
    return json.dumps(event).encode()


def signed(payload: bytes, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    """Stripe's signature header: ``t=<unix time>,v1=<hex HMAC-SHA256 of "t.payload">``."""
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


@pytest.fixture
async def stripe_app() -> AsyncIterator[tuple[FastAPI, str]]:
    app = fake_stripe()
    async with serve_app(app) as url:
        yield app, url


@pytest.fixture
async def paying_api(
    db_url: str, tmp_path: Path, stripe_app: tuple[FastAPI, str]
) -> AsyncIterator[Api]:
    async with start_api(
        db_url,
        tmp_path,
        stripe_secret_key=SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe_app[1],
    ) as running:
        yield running


async def balance(t: Tenant) -> int:
    return int((await t.client.get(f"/v1/orgs/{t.org_id}/billing")).json()["balance_cents"])


async def deliver(api: Api, payload: bytes, signature: str) -> int:
    r = await api.client_for(None).post(
        "/v1/payments/stripe/webhook",
        content=payload,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )
    return r.status_code


async def test_a_paid_top_up_is_credited_once(
    paying_api: Api, stripe_app: tuple[FastAPI, str]
) -> None:
    api, fake = paying_api, stripe_app[0]
    t = await api.tenant()
    r = await t.client.post(f"/v1/orgs/{t.org_id}/billing/top-ups", json={"amount_cents": 2500})
    assert r.status_code == 201, r.text
    top_up = r.json()
    assert top_up["status"] == "pending" and top_up["provider"] == "stripe"
    [call] = fake.state.calls
    assert call["amount"] == "2500" and call["currency"] == "usd"
    assert call["metadata[gpuyard_top_up]"] == top_up["id"]
    [intent] = fake.state.intents.values()
    assert top_up["provider_ref"] == intent["id"]
    assert top_up["client_secret"] == intent["client_secret"]
    assert await balance(t) == 0  # not paid yet
    payload = stripe_event("payment_intent.succeeded", intent)
    # Stripe redelivers, sometimes at once: one credit.
    codes = await asyncio.gather(*(deliver(api, payload, signed(payload)) for _ in range(5)))
    assert codes == [200] * 5
    for _ in range(3):
        assert await deliver(api, payload, signed(payload)) == 200
    assert await balance(t) == 2500
    r = await t.client.get(f"/v1/orgs/{t.org_id}/billing/top-ups")
    [listed] = r.json()["data"]
    assert listed["status"] == "succeeded" and listed["credited_at"] is not None
    r = await t.client.get(f"/v1/orgs/{t.org_id}/billing/ledger", params={"kind": "credit"})
    [credit] = r.json()["data"]
    assert credit["amount_cents"] == 2500
    r = await t.client.get(f"/v1/orgs/{t.org_id}/events", params={"limit": 100})
    events = r.json()["data"]
    assert [e["type"] for e in events].count("billing.topped_up") == 1


async def test_bad_webhooks_change_nothing(
    paying_api: Api, stripe_app: tuple[FastAPI, str]
) -> None:
    api, fake = paying_api, stripe_app[0]
    t = await api.tenant()
    r = await t.client.post(f"/v1/orgs/{t.org_id}/billing/top-ups", json={"amount_cents": 1000})
    assert r.status_code == 201, r.text
    [intent] = fake.state.intents.values()
    payload = stripe_event("payment_intent.succeeded", intent)
    assert await deliver(api, payload, signed(payload, secret="whsec_other")) == 400
    assert await deliver(api, payload, signed(payload, at=int(time.time()) - 3600)) == 400
    assert await deliver(api, payload, "t=1,v1=00") == 400
    assert await deliver(api, payload + b" ", signed(payload)) == 400  # body changed
    r = await api.client_for(None).post("/v1/payments/stripe/webhook", content=payload)
    assert r.status_code == 400  # no signature at all
    wrong = stripe_event("payment_intent.succeeded", intent, amount_received=999_999)
    assert await deliver(api, wrong, signed(wrong)) == 400
    failed = stripe_event("payment_intent.payment_failed", intent)
    assert await deliver(api, failed, signed(failed)) == 200
    assert await balance(t) == 0
    [listed] = (await t.client.get(f"/v1/orgs/{t.org_id}/billing/top-ups")).json()["data"]
    assert listed["status"] == "failed"
    other = stripe_event("payment_intent.succeeded", {**intent, "id": "pi_not_ours"})
    assert await deliver(api, other, signed(other)) == 200  # acknowledged, nothing credited
    assert await balance(t) == 0


async def test_bad_top_ups_are_refused(paying_api: Api, stripe_app: tuple[FastAPI, str]) -> None:
    api, fake = paying_api, stripe_app[0]
    t = await api.tenant()
    for body in (
        {"amount_cents": -100},
        {"amount_cents": 0},
        {"amount_cents": 10.5},
        {"amount_cents": "100"},
        {"amount_cents": 99},
        {"amount_cents": 1000, "currency": "eur"},
        {"amount_cents": 1000, "tip": 1},
    ):
        r = await t.client.post(f"/v1/orgs/{t.org_id}/billing/top-ups", json=body)
        assert r.status_code in (400, 422), (body, r.text)
    other = await api.tenant()
    r = await other.client.post(f"/v1/orgs/{t.org_id}/billing/top-ups", json={"amount_cents": 1000})
    assert r.status_code in (403, 404)
    assert fake.state.calls == []
    assert (await t.client.get(f"/v1/orgs/{t.org_id}/billing/top-ups")).json()["data"] == []


async def test_top_ups_off_without_stripe(api: Api) -> None:
    t = await api.tenant()
    r = await t.client.post(f"/v1/orgs/{t.org_id}/billing/top-ups", json={"amount_cents": 1000})
    assert r.status_code == 404 and r.json()["code"] == "top_ups_not_configured"
    r = await api.client_for(None).post("/v1/payments/stripe/webhook", content=b"{}")
    assert r.status_code == 404 and r.json()["code"] == "top_ups_not_configured"
