"""The Vast dialect's billing history: ``vastai show invoices`` (``/api/v0/users/me/invoices``)
and ``vastai show invoices-v1`` (``/api/v1/invoices/`` and ``/api/v0/charges/``). Amounts are
dollars (the dialect speaks dollars; gpuyard keeps integer cents and converts only here)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


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
