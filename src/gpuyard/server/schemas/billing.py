"""Money on the wire: integer cents everywhere, never a float."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, StrictInt, StrictStr

from gpuyard.server.schemas.common import RequestBody
from gpuyard.server.services.ledger import Entry, ModelUsage, Summary, UsageLine
from gpuyard.server.services.token_charges import ModelPrice
from gpuyard.server.services.top_ups import TopUp


class CreditCreate(RequestBody):
    amount_cents: StrictInt = Field(description="Whole cents to add, at least 1")
    currency: StrictStr = Field(default="usd", max_length=8, description="Only usd")
    description: StrictStr | None = Field(default=None, max_length=500)


class LedgerEntryOut(BaseModel):
    id: str
    org_id: str
    kind: str = Field(
        description="credit, usage (GPU time and disk), tokens or transfer (between orgs)"
    )
    amount_cents: int = Field(description="Positive adds to the balance, negative is a charge")
    currency: str = "usd"
    description: str | None
    resource_kind: str | None = Field(
        description="usage: instance, replica, worker; instance_disk or worker_disk (storage)"
    )
    resource_id: str | None = Field(
        description="usage: the instance's, the cluster's or the serverless endpoint's id"
    )
    gpu_seconds: int | None = Field(description="usage: GPU-seconds this entry charges for")
    cents_per_hour: int | None = Field(description="usage: the GPU price in force")
    disk_gb: int | None = Field(default=None, description="storage: the disk charged for")
    cents_per_gb_month: int | None = Field(
        default=None, description="storage: the price in force per GB-month (730 hours)"
    )
    model: str | None = Field(default=None, description="tokens: the model")
    input_tokens: int | None = Field(default=None, description="tokens: the request's input")
    output_tokens: int | None = Field(default=None, description="tokens: the request's output")
    cents_per_million_input: int | None = Field(default=None, description="tokens: price")
    cents_per_million_output: int | None = Field(default=None, description="tokens: price")
    characters: int | None = Field(default=None, description="speech: the request's input")
    cents_per_million_characters: int | None = Field(default=None, description="speech: price")
    period_start: datetime | None
    period_end: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, e: Entry) -> LedgerEntryOut:
        return cls(
            id=e.id,
            org_id=e.org_id,
            kind=e.kind,
            amount_cents=e.amount_cents,
            description=e.description,
            resource_kind=e.resource_kind,
            resource_id=e.resource_id,
            gpu_seconds=e.gpu_seconds,
            cents_per_hour=e.cents_per_hour,
            disk_gb=e.disk_gb,
            cents_per_gb_month=e.cents_per_gb_month,
            model=e.model,
            input_tokens=e.input_tokens,
            output_tokens=e.output_tokens,
            cents_per_million_input=e.cents_per_million_input,
            cents_per_million_output=e.cents_per_million_output,
            characters=e.characters,
            cents_per_million_characters=e.cents_per_million_characters,
            period_start=e.period_start,
            period_end=e.period_end,
            created_at=e.created_at,
        )


class BillingOut(BaseModel):
    org_id: str
    balance_cents: int = Field(description="The sum of the ledger")
    month_to_date_spend_cents: int = Field(description="Usage charged since the month began")
    burn_cents_per_hour: int = Field(description="What runs now costs per hour")
    currency: str

    @classmethod
    def of(cls, s: Summary) -> BillingOut:
        return cls(
            org_id=s.org_id,
            balance_cents=s.balance_cents,
            month_to_date_spend_cents=s.month_to_date_spend_cents,
            burn_cents_per_hour=s.burn_cents_per_hour,
            currency=s.currency,
        )


class UsageLineOut(BaseModel):
    day: str = Field(description="UTC date, YYYY-MM-DD")
    resource_kind: str
    resource_id: str
    gpu_seconds: int
    cost_cents: int
    model: str | None = Field(default=None, description="tokens: the model")
    input_tokens: int = 0
    output_tokens: int = 0
    characters: int = Field(default=0, description="text to speech: characters spoken")

    @classmethod
    def of(cls, u: UsageLine) -> UsageLineOut:
        return cls(
            day=u.day,
            resource_kind=u.resource_kind,
            resource_id=u.resource_id,
            gpu_seconds=u.gpu_seconds,
            cost_cents=u.cost_cents,
            model=u.model,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            characters=u.characters,
        )


class UsageOut(BaseModel):
    org_id: str
    since: datetime
    until: datetime
    gpu_seconds: int
    cost_cents: int
    data: list[UsageLineOut]


class ModelPriceSet(RequestBody):
    model: StrictStr = Field(min_length=1, max_length=200, description="As requests name it")
    cents_per_million_input: StrictInt = Field(ge=0, le=100_000_000)
    cents_per_million_output: StrictInt = Field(ge=0, le=100_000_000)
    cents_per_million_characters: StrictInt = Field(
        default=0, ge=0, le=100_000_000, description="text to speech: per million characters"
    )


class ModelPriceOut(BaseModel):
    model: str
    cents_per_million_input: int
    cents_per_million_output: int
    cents_per_million_characters: int
    updated_at: datetime

    @classmethod
    def of(cls, p: ModelPrice) -> ModelPriceOut:
        return cls(
            model=p.model,
            cents_per_million_input=p.cents_per_million_input,
            cents_per_million_output=p.cents_per_million_output,
            cents_per_million_characters=p.cents_per_million_characters,
            updated_at=p.updated_at,
        )


class ModelUsageOut(BaseModel):
    model: str
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_cents: int


class MonthUsageOut(BaseModel):
    month: str = Field(description="YYYY-MM (UTC)")
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_cents: int
    models: list[ModelUsageOut]

    @classmethod
    def of(cls, start: datetime, lines: list[ModelUsage]) -> MonthUsageOut:
        models = [
            ModelUsageOut(
                model=u.model,
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                total_tokens=u.input_tokens + u.output_tokens,
                cost_cents=u.cost_cents,
            )
            for u in lines
        ]
        tokens_in = sum(m.input_tokens for m in models)
        tokens_out = sum(m.output_tokens for m in models)
        return cls(
            month=start.strftime("%Y-%m"),
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            total_tokens=tokens_in + tokens_out,
            cost_cents=sum(m.cost_cents for m in models),
            models=models,
        )


class VultrUsageOut(BaseModel):
    current_month: MonthUsageOut
    previous_month: MonthUsageOut


class TopUpCreate(RequestBody):
    amount_cents: StrictInt = Field(description="Whole cents to pay in, 100 to 100,000,000")
    currency: StrictStr = Field(default="usd", max_length=8, description="Only usd")


class TopUpOut(BaseModel):
    id: str
    org_id: str
    amount_cents: int
    currency: str
    provider: str
    provider_ref: str | None = Field(description="The payment's id at the provider")
    client_secret: str | None = Field(
        description="For the payer's browser to confirm the payment (Stripe.js)"
    )
    status: str = Field(description="pending, succeeded (credited) or failed")
    credited_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, t: TopUp) -> TopUpOut:
        return cls(
            id=t.id,
            org_id=t.org_id,
            amount_cents=t.amount_cents,
            currency=t.currency,
            provider=t.provider,
            provider_ref=t.provider_ref,
            client_secret=t.client_secret,
            status=t.status,
            credited_at=t.credited_at,
            created_at=t.created_at,
        )
