"""All server configuration, read once from ``GPUYARD_*`` environment variables."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gpuyard.core.autoscaling import DEFAULT_TUNING, PolicyTuning
from gpuyard.core.clusters import DEFAULT_DRAIN_SECONDS
from gpuyard.core.money import BalancePolicy
from gpuyard.server.data_dir import private_dir, private_sqlite_files, sqlite_file


def default_data_dir() -> Path:
    return Path.home() / ".gpuyard"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GPUYARD_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default is SQLite in the data dir. "
        "Postgres: postgresql+asyncpg://user@host/db",
    )
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = Field(
        default=None, description="How clients reach this server; default http://host:port"
    )
    admin_key: str | None = Field(
        default=None, description="Use this vl_ key as the operator key instead of a new one"
    )
    admin_key_file: Path | None = Field(
        default=None, description="Read the operator key from this file instead (one line)"
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="API worker processes sharing the port (each runs the controllers too)",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    endpoint_domain: str | None = None
    controller_poll_seconds: float = Field(default=5.0, gt=0)
    run_controllers: bool = True
    heartbeat_seconds: float = Field(default=5.0, gt=0, description="agents heartbeat this often")
    host_unreachable_seconds: float = Field(
        default=20.0, gt=0, description="no heartbeat this long: host unreachable"
    )
    host_offline_seconds: float = Field(
        default=60.0, gt=0, description="no heartbeat this long: host offline, its work lost"
    )
    replica_drain_seconds: float = Field(
        default=DEFAULT_DRAIN_SECONDS,
        ge=0,
        description="a cluster replica being removed leaves routing and keeps running this long "
        "so requests in flight finish",
    )
    default_gpu_price_cents: int = Field(
        default=50, ge=0, description="cents per GPU-hour for GPU types with no operator price"
    )
    storage_price_cents: int = Field(
        default=10,
        ge=0,
        description="cents per GB-month of disk kept by stopped instances and cold serverless "
        "workers",
    )
    meter_settle_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="running workloads are settled into the ledger this often (and at once when "
        "they start or stop)",
    )
    autoscale_smoothing_seconds: float = Field(
        default=DEFAULT_TUNING.smoothing,
        gt=0,
        le=3600,
        description="serverless autoscaler: seconds of the rolling mean the load is read through",
    )
    autoscale_hold_seconds: float = Field(
        default=DEFAULT_TUNING.scale_down_hold,
        ge=0,
        le=3600,
        description="serverless autoscaler: seconds the smoothed load must stay low before "
        "active workers are stopped",
    )
    low_balance_cents: int = Field(
        default=500, ge=0, description="a billing.low_balance event when a balance drops below"
    )
    depleted_grace_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="an org at or below zero this long has its instances stopped and its "
        "clusters scaled to zero",
    )
    token_hold_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="an inference request's hold not settled this long (its server stopped "
        "first) is settled from its request log, or else released",
    )
    stripe_secret_key: SecretStr | None = Field(
        default=None, description="top-ups through Stripe (sk_…); unset: top-ups are off"
    )
    stripe_webhook_secret: SecretStr | None = Field(
        default=None, description="the signing secret of Stripe's webhook (whsec_…)"
    )
    stripe_api_base: str | None = Field(
        default=None, description="another address for Stripe's API (a local fake in tests)"
    )
    webhook_allow_private_targets: bool = Field(
        default=False,
        description="let webhooks reach loopback and private addresses (otherwise refused: SSRF)",
    )
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=60)
    vector_embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description="the embedding model of a vector store collection created without one",
    )
    vector_index_dir: Path | None = Field(
        default=None,
        description="where the vector store keeps its approximate indexes; default: "
        "vector-index in the data dir",
    )
    completion_retention_days: float = Field(
        default=30, gt=0, description="chat completions are kept this long, then deleted"
    )
    log_level: str = "info"

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if url.startswith(("postgres://", "postgresql://")):
            return "postgresql+asyncpg://" + url.split("://", 1)[1]
        if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
            return "sqlite+aiosqlite://" + url.split("://", 1)[1]
        return url

    def balance_policy(self) -> BalancePolicy:
        return BalancePolicy(
            low_balance_cents=self.low_balance_cents,
            grace_seconds=self.depleted_grace_seconds,
            hold_seconds=self.token_hold_seconds,
        )

    def autoscale_tuning(self) -> PolicyTuning:
        return replace(
            DEFAULT_TUNING,
            smoothing=self.autoscale_smoothing_seconds,
            scale_down_hold=self.autoscale_hold_seconds,
        )

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'gpuyard.db'}"

    def prepare_data_dir(self) -> None:
        """Make the data dir (when the default SQLite file lives there) and the SQLite database
        private to this user; see server/data_dir.py."""
        if not self.database_url:
            private_dir(self.data_dir)
        database = sqlite_file(self.resolved_database_url())
        if database is not None:
            private_sqlite_files(database)

    def resolved_vector_index_dir(self) -> Path:
        return self.vector_index_dir or self.data_dir / "vector-index"

    def resolved_public_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
