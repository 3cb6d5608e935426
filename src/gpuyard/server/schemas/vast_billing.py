"""The Vast dialect's billing history: ``vastai show invoices`` (``/api/v0/users/me/invoices``)
and ``vastai show invoices-v1`` (``/api/v1/invoices/`` and ``/api/v0/charges/``). Amounts are
dollars (the dialect speaks dollars; gpuyard keeps integer cents and converts only here)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr


class InvoiceRow(BaseModel):
    """A line of ``vastai show invoices``: a charge (positive dollars) or a payment (negative)."""

    id: str
    type: str = Field(description="charge or payment")
    description: str
    quantity: float = Field(description="charges: hours of GPU time or of disk, or tokens")
    rate: float = Field(description="dollars per unit of quantity")
    amount: float = Field(description="dollars: charges positive, payments negative")
    timestamp: float = Field(description="UNIX time")
    instance_id: int | None = None


class CurrentCharges(BaseModel):
    charges: float = Field(description="this month's charges so far, dollars")
    service_fee: float = 0.0
    total: float
    credit: float = Field(description="the balance, dollars")


class Invoices(BaseModel):
    invoices: list[InvoiceRow]
    current: CurrentCharges


class HistoryItem(BaseModel):
    """A result of ``vastai show invoices-v1``: an invoice (a payment in, ``amount`` negative as
    Vast sends it) or a day's charge of one resource (``amount`` positive)."""

    type: str = Field(description="invoices: credit; charges: instance, volume or serverless")
    source: str | None = Field(description="charges: <kind>-<id>; invoices: the provider")
    description: str
    amount: float = Field(description="dollars")
    start: int = Field(description="UNIX time")
    end: int | None = Field(description="UNIX time")
    metadata: dict[str, Any] = Field(default_factory=dict)
    items: list[HistoryItem] = Field(default_factory=list)


class HistoryPage(BaseModel):
    results: list[HistoryItem]
    count: int = Field(description="results on this page")
    total: int = Field(description="results over the whole window")
    next_token: str | None = Field(description="after_token of the next page; null: the last")


class TransferCredit(BaseModel):
    """``PUT /api/v0/commands/transfer_credit/`` (``vastai transfer credit``)."""

    model_config = ConfigDict(extra="ignore")

    sender: StrictStr = Field(default="me", max_length=64, description="Always the caller: me")
    recipient: StrictStr = Field(
        max_length=200, description="The organization's integer id, org_… id or slug"
    )
    amount: StrictFloat | StrictInt = Field(description="Dollars, whole cents")


class CreditTransferred(BaseModel):
    success: bool = True
    msg: str
    transfer_id: str = Field(description="The sender's ledger entry")
    recipient_id: int = Field(description="The recipient organization's integer id")
    recipient: str = Field(description="The recipient organization's slug")
    amount: float = Field(description="Dollars moved")
    balance: float = Field(description="The sender's balance afterwards, dollars")


class Deposit(BaseModel):
    """``GET /api/v0/instances/balance/{id}/`` (``vastai show deposit``): nothing is held in
    reserve for an instance (gpuyard has no reserved instances); what it has been charged."""

    success: bool = True
    instance_id: int
    deposit: float = Field(default=0.0, description="Held in reserve: always 0, nothing is")
    refundable_deposit: float = 0.0
    dph_total: float = Field(description="Its price, dollars per hour")
    charged: float = Field(description="Dollars charged so far, GPU time and disk")
    gpu_charged: float
    disk_charged: float
    gpu_seconds: int = Field(description="GPU-seconds charged (GPU time times GPUs)")
    last_charged: float | None = Field(description="UNIX time of its last charge")
    credit: float = Field(description="The org's balance, dollars")


class Earn(BaseModel):
    gpu_earn: float
    sto_earn: float
    bwu_earn: float = 0.0
    bwd_earn: float = 0.0


class MachineEarn(Earn):
    machine_id: int


class DayEarn(Earn):
    day: int = Field(description="Days since 1970-01-01 (UTC)")


class EarningsSummary(BaseModel):
    total_gpu: float
    total_stor: float
    total_bwu: float = 0.0
    total_bwd: float = 0.0


class EarningsCurrent(BaseModel):
    balance: float = Field(description="The org's balance, dollars")
    service_fee: float = 0.0
    total: float
    credit: float


class MachineEarnings(BaseModel):
    """``GET /api/v0/users/me/machine-earnings`` (``vastai show earnings``)."""

    username: str
    fullname: str
    sday: int
    eday: int
    summary: EarningsSummary
    current: EarningsCurrent
    per_machine: list[MachineEarn]
    per_day: list[DayEarn]
    unattributed: Earn = Field(
        description="Earned by charges that name no machine: those of cluster replicas and "
        "serverless workers that had ended before charges recorded their host"
    )
