"""Money: the append-only ledger, and the meters that settle running workloads into it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gpuyard.server.orm.base import PK, Base, LeaseColumns


class LedgerEntry(Base):
    """One movement of an org's money, in integer cents: credits and top-ups positive, charges
    negative. Rows are only ever inserted; the balance is their sum. ``key`` is unique: a charge
    is ``usage:<workload>:<period>``, a credit ``credit:<org>:<Idempotency-Key>``, so a retried
    write can never add a second row."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_org_created", "org_id", "created_at", "pk"),
        Index("ix_ledger_entries_org_resource", "org_id", "resource_id", "created_at"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(320), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # credit, usage
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    # Usage only: what was used, how much, at which price in force, over which period.
    resource_kind: Mapped[str | None] = mapped_column(String(16), default=None)
    resource_id: Mapped[str | None] = mapped_column(String(32), default=None)
    gpu_seconds: Mapped[int | None] = mapped_column(BigInteger, default=None)
    cents_per_hour: Mapped[int | None] = mapped_column(Integer, default=None)
    period_start: Mapped[datetime | None] = mapped_column(default=None)
    period_end: Mapped[datetime | None] = mapped_column(default=None)
    # Disk usage only: the size charged for and the storage price in force.
    disk_gb: Mapped[int | None] = mapped_column(Integer, default=None)
    cents_per_gb_month: Mapped[int | None] = mapped_column(Integer, default=None)
    # Tokens only: the model, the tokens of the request and the model's prices in force.
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    input_tokens: Mapped[int | None] = mapped_column(BigInteger, default=None)
    output_tokens: Mapped[int | None] = mapped_column(BigInteger, default=None)
    cents_per_million_input: Mapped[int | None] = mapped_column(Integer, default=None)
    cents_per_million_output: Mapped[int | None] = mapped_column(Integer, default=None)
    # Speech only: the characters of the request and the model's price per million of them.
    characters: Mapped[int | None] = mapped_column(BigInteger, default=None)
    cents_per_million_characters: Mapped[int | None] = mapped_column(Integer, default=None)
    # Workload usage only: the number (pk) of the host it ran on, Vast's machine id; kept when
    # the workload's row and even the host are gone (earnings by machine read it).
    machine_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    day: Mapped[str] = mapped_column(String(10))  # UTC date of created_at, for usage by day
    created_at: Mapped[datetime]


class Meter(LeaseColumns, Base):
    """What one billable workload has used and been charged, on one ``basis``: ``compute`` (an
    instance, a cluster replica or a serverless worker while it runs: its GPUs at cents per hour)
    or ``storage`` (a stopped instance's or cold worker's disk: ``disk_gb`` at the storage price,
    ``cents_per_hour`` then holding cents per ``rate_seconds``, a 730-hour month).

    Seconds accrue while the workload runs; ``used`` is ``base_microcents`` plus the exact
    micro-cents of ``seconds`` at ``cents_per_hour`` (a price change folds the seconds so far into
    the base), and each settlement charges ``floor(used / 1e6) - charged_cents`` whole cents, so
    fractions carry and rounding never drifts. The metering controller owns every column but the
    identity ones.
    """

    __tablename__ = "meters"
    __table_args__ = (
        Index("ix_meters_next_run_at", "next_run_at"),
        UniqueConstraint("workload_id", "basis", name="uq_meters_workload_basis"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    workload_id: Mapped[str] = mapped_column(String(32))
    basis: Mapped[str] = mapped_column(String(16), default="compute", server_default="compute")
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    # instance, replica, worker; instance_disk, worker_disk (storage)
    resource_kind: Mapped[str] = mapped_column(String(16))
    # the instance's, the cluster's or the serverless endpoint's id
    resource_id: Mapped[str] = mapped_column(String(32))
    num_gpus: Mapped[int] = mapped_column(Integer, default=1)
    disk_gb: Mapped[int | None] = mapped_column(Integer, default=None)  # storage only
    cents_per_hour: Mapped[int] = mapped_column(Integer, default=0)  # per ``rate_seconds``
    rate_seconds: Mapped[int] = mapped_column(Integer, default=3600, server_default="3600")
    seconds: Mapped[int] = mapped_column(BigInteger, default=0)  # at ``cents_per_hour``
    base_microcents: Mapped[int] = mapped_column(BigInteger, default=0)  # at earlier prices
    total_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    ledgered_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    charged_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    period: Mapped[int] = mapped_column(Integer, default=0)  # settlements written so far
    running: Mapped[bool] = mapped_column(Boolean, default=False)
    accrued_until: Mapped[datetime]
    settled_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    machine_id: Mapped[int | None] = mapped_column(BigInteger, default=None)  # the host's pk
    created_at: Mapped[datetime]


class BillingAccount(LeaseColumns, Base):
    """An org's balance as one row: the ledger's sum, kept in the transaction of every entry (so
    a debit can check and take in one statement), and where the balance stands against the
    low-balance threshold and zero. The billing enforcer (controllers/billing_enforcer.py) acts on
    an account whose balance has been at or below zero for the grace period."""

    __tablename__ = "billing_accounts"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), unique=True)
    balance_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    low_balance_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    depleted_at: Mapped[datetime | None] = mapped_column(default=None)
    enforced_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime]


class ModelPrice(Base):
    """The operator's price of a model's use, in cents per million input and output tokens and
    per million characters of text to speech (a model without a row is not charged)."""

    __tablename__ = "model_prices"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(200), unique=True)
    cents_per_million_input: Mapped[int] = mapped_column(Integer)
    cents_per_million_output: Mapped[int] = mapped_column(Integer)
    cents_per_million_characters: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )
    updated_at: Mapped[datetime]


class TokenHold(LeaseColumns, Base):
    """An inference request's hold (entry ``tokens:<request>:hold``) not settled yet: written in
    the hold's transaction, deleted in its settlement's. One still here at ``next_run_at`` (the
    hold timeout) belongs to a request whose server died before settling it: the hold sweeper
    (controllers/token_holds.py) settles it from the request's log or releases it."""

    __tablename__ = "token_holds"
    __table_args__ = (Index("ix_token_holds_next_run_at", "next_run_at"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(200))
    held_cents: Mapped[int] = mapped_column(BigInteger)
    characters: Mapped[int] = mapped_column(BigInteger, default=0)  # speech: its input's
    created_at: Mapped[datetime]


class TokenMeter(Base):
    """What an org's requests to one model have used (micro-cents: one token at ``c`` cents per
    million is exactly ``c`` micro-cents) and been charged, so per-request rounding never drifts:
    each request is charged ``floor(used / 1e6) - charged_cents``."""

    __tablename__ = "token_meters"
    __table_args__ = (UniqueConstraint("org_id", "model", name="uq_token_meters_org_model"),)

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(200))
    used_microcents: Mapped[int] = mapped_column(BigInteger, default=0)
    charged_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]


class TopUp(Base):
    """Money an org pays in through a payment provider: ``pending`` until the provider's webhook
    says the payment succeeded (then credited once, keyed ``topup:<id>``) or failed."""

    __tablename__ = "top_ups"
    __table_args__ = (
        Index("ix_top_ups_org_created", "org_id", "created_at", "pk"),
        UniqueConstraint("provider", "provider_ref", name="uq_top_ups_provider_ref"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(8))
    provider: Mapped[str] = mapped_column(String(32))
    provider_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    client_secret: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[str] = mapped_column(String(16))  # pending, succeeded, failed
    credited_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
