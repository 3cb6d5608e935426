"""SQLAlchemy tables. Rows only: no rules (services) and no API shapes (schemas).

One module per resource group; every table is importable from here (``orm.Cluster``).
"""

from gpuyard.server.orm.base import Base, JsonType, LeaseColumns, UTCDateTime
from gpuyard.server.orm.deployments import Cluster, Workload
from gpuyard.server.orm.fleet import Gpu, Host, JoinToken
from gpuyard.server.orm.inference import RateWindow, RequestLog, StoredCompletion
from gpuyard.server.orm.market import GpuPrice, Instance, Offer
from gpuyard.server.orm.records import Event, IdempotencyRecord
from gpuyard.server.orm.tenancy import ApiKey, Org, SshKey
from gpuyard.server.orm.vectors import VectorCollection, VectorFile, VectorItem

__all__ = [
    "ApiKey",
    "Base",
    "Cluster",
    "Event",
    "Gpu",
    "GpuPrice",
    "Host",
    "IdempotencyRecord",
    "Instance",
    "JoinToken",
    "JsonType",
    "LeaseColumns",
    "Offer",
    "Org",
    "RateWindow",
    "RequestLog",
    "SshKey",
    "StoredCompletion",
    "UTCDateTime",
    "VectorCollection",
    "VectorFile",
    "VectorItem",
    "Workload",
]
