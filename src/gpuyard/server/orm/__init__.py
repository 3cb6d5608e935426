"""SQLAlchemy tables. Rows only: no rules (services) and no API shapes (schemas).

One module per resource group; every table is importable from here (``orm.Cluster``).
"""

from gpuyard.server.orm.base import Base, JsonType, LeaseColumns, UTCDateTime
from gpuyard.server.orm.billing import (
    BillingAccount,
    LedgerEntry,
    Meter,
    ModelPrice,
    TokenHold,
    TokenMeter,
    TopUp,
)
from gpuyard.server.orm.cluster_load import ClusterLoadSample, ReplicaInFlight
from gpuyard.server.orm.deployments import Cluster, Workload
from gpuyard.server.orm.fleet import Gpu, Host, JoinToken
from gpuyard.server.orm.inference import RateWindow, RequestLog, StoredCompletion
from gpuyard.server.orm.market import GpuPrice, Instance, Offer
from gpuyard.server.orm.records import Event, IdempotencyRecord
from gpuyard.server.orm.serverless import (
    Endpoint,
    RoutedRequest,
    ServerlessWorker,
    SigningKey,
    Template,
    Workergroup,
)
from gpuyard.server.orm.tenancy import ApiKey, Org, SshKey
from gpuyard.server.orm.vectors import VectorCollection, VectorFile, VectorItem
from gpuyard.server.orm.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiKey",
    "Base",
    "BillingAccount",
    "Cluster",
    "ClusterLoadSample",
    "Endpoint",
    "Event",
    "Gpu",
    "GpuPrice",
    "Host",
    "IdempotencyRecord",
    "Instance",
    "JoinToken",
    "JsonType",
    "LeaseColumns",
    "LedgerEntry",
    "Meter",
    "ModelPrice",
    "Offer",
    "Org",
    "RateWindow",
    "ReplicaInFlight",
    "RequestLog",
    "RoutedRequest",
    "ServerlessWorker",
    "SigningKey",
    "SshKey",
    "StoredCompletion",
    "Template",
    "TokenHold",
    "TokenMeter",
    "TopUp",
    "UTCDateTime",
    "VectorCollection",
    "VectorFile",
    "VectorItem",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "Workergroup",
    "Workload",
]
