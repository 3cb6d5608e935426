"""What the gateway needs from the rest of gpuyard, as five small interfaces.

The gateway imports nothing of the server: the composition root (server/app.py, through
server/gateway_ports.py) fills these in over the database, and a test may fill them in with
its own honest implementations.

- ``ReplicaSource``: where replicas come from, the clusters that may be routed to and their
  ready replicas (the model directory indexes them, directory.py);
- ``Keys``: who an API key is (the principal cache asks it on a miss, auth.py);
- ``LogSink``: where request-log rows go, in batches off the request path (logs.py);
- ``Limiter``: the per-key request and token limits, and where a request's token usage goes;
- ``CompletionSink``: where answered chat completions are kept (optional).
- ``ServerlessRouter``: a worker of the org's serverless endpoint named like the model, as
  ``/route/`` gives one (serverless.py waits while one starts).
- ``Spend``: what a request may cost the org (a hold before it goes upstream) and what it did.
- ``LoadSink``: where the load measured on each replica goes (load_meter.py), for the
  autoscaling of clusters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from gpuyard.core.principal import Principal


@dataclass(frozen=True, slots=True)
class RoutableCluster:
    """A cluster that is not deleted, ready or not (its endpoint answers 503 until it is)."""

    id: str
    org_id: str
    slug: str
    public: bool  # the operator publishes it to every org
    models: tuple[str, ...]  # named by the cluster; empty: each replica's discovered models
    created_at: float  # a POSIX timestamp, for ``/v1/models``
    task: str | None = None  # what its models do, as its owner declared (core.clusters.TASKS)


@dataclass(frozen=True, slots=True)
class ReadyReplica:
    """A replica that is running, healthy and on a ready host: it may be sent requests."""

    id: str
    cluster_id: str
    url: str  # http://address:port
    served_models: tuple[str, ...]  # what its ``/v1/models`` answered


@dataclass(frozen=True, slots=True)
class Routable:
    clusters: Sequence[RoutableCluster]
    replicas: Sequence[ReadyReplica]


class ReplicaSource(Protocol):
    async def load(self) -> Routable:
        """Every cluster and ready replica now (one consistent read)."""
        ...


class Keys(Protocol):
    async def principal(self, secret: str | None) -> Principal:
        """The key's principal; raises ``GpuyardError`` (401, 403) when it may not be used."""
        ...


class RequestLogRow(NamedTuple):
    id: str
    created_at: datetime
    org_id: str
    key_id: str
    endpoint: str
    model: str | None
    cluster_id: str | None
    replica_id: str | None
    stream: bool
    status: int
    latency_ms: float
    prompt_tokens: int | None
    completion_tokens: int | None
    error: str | None


class LogSink(Protocol):
    async def write(self, rows: Sequence[RequestLogRow]) -> None:
        """Keep ``rows`` (all or none)."""
        ...


class Limiter(Protocol):
    async def admit(self, principal: Principal) -> None:
        """Count one request against the key's limits; raises ``RateLimited`` past one."""
        ...

    async def add_tokens(self, key_id: str, tokens: int) -> None:
        """Count the tokens a finished request used against its key."""
        ...


class CompletionRow(NamedTuple):
    id: str
    org_id: str
    key_id: str
    model: str | None
    body: dict[str, Any]
    created_at: datetime


class CompletionSink(Protocol):
    async def write(self, rows: Sequence[CompletionRow]) -> None:
        """Keep answered chat completions (all or none)."""


@dataclass(frozen=True, slots=True)
class WorkerGrant:
    """A ready serverless worker for one request, and the signed grant it checks."""

    endpoint_id: str
    worker_id: int
    request_idx: int
    url: str  # http://address:port
    auth_data: dict[str, Any]  # what ``/route/`` answers: the worker's ``auth_data``


@dataclass(frozen=True, slots=True)
class WorkerWait:
    """No worker is ready yet; the endpoint's autoscaler was told. Ask again with the number."""

    request_idx: int


class ServerlessRouter(Protocol):
    async def route(
        self, org_id: str, name: str, *, cost: float, request_idx: int
    ) -> WorkerGrant | WorkerWait | None:
        """A worker of the org's endpoint ``name`` (None when it has none), or the number to
        ask again with (``request_idx`` 0 is a new request)."""
        ...

    async def abandon(self, org_id: str, request_idx: int) -> None:
        """The request will not reach a worker (its caller gave up, was refused, or the worker
        could not be reached): closed, it is no longer demand nor in flight."""
        ...

    async def reroute(
        self, org_id: str, request_idx: int, refused: tuple[int, ...]
    ) -> WorkerGrant | None:
        """Another ready worker with room for the request the workers ``refused`` answered with
        429 (None: none has room)."""
        ...

    async def names(self, org_id: str) -> dict[str, float]:
        """The org's endpoints by name (what ``model`` routes to), with when each was created
        (a POSIX timestamp), for ``/v1/models``."""
        ...


class Spend(Protocol):
    async def hold(
        self,
        principal: Principal,
        request_id: str,
        model: str,
        body_bytes: int,
        max_tokens: int | None,
        characters: int = 0,
    ) -> int:
        """Take what the request could cost (0: nothing to take); raises ``InsufficientQuota``
        when the org's balance does not cover it. ``characters``: text to speech's input."""
        ...

    async def settle(
        self,
        principal: Principal,
        request_id: str,
        model: str,
        held_cents: int,
        input_tokens: int,
        output_tokens: int,
        characters: int = 0,
    ) -> None:
        """Charge what the request used against its hold (once per request)."""
        ...

    def prices_changed(self) -> None:
        """The price book changed: what is known of it is read again."""
        ...


class FreeSpend:
    """``Spend`` where nothing is charged by the token."""

    async def hold(
        self,
        principal: Principal,
        request_id: str,
        model: str,
        body_bytes: int,
        max_tokens: int | None,
        characters: int = 0,
    ) -> int:
        return 0

    async def settle(
        self,
        principal: Principal,
        request_id: str,
        model: str,
        held_cents: int,
        input_tokens: int,
        output_tokens: int,
        characters: int = 0,
    ) -> None:
        return None

    def prices_changed(self) -> None:
        return None


class LoadReport(NamedTuple):
    """What one gateway measured on one replica since its last report: the requests in flight on
    it now, and the request-seconds it served (its mean concurrency times the span); a request
    refused because its cluster had no ready replica counts in ``refused``."""

    cluster_id: str
    replica_id: str | None  # None: a refused request, on no replica
    in_flight: int
    busy_seconds: float
    refused: int
    at: datetime


class LoadSink(Protocol):
    async def write(self, reporter: str, reports: Sequence[LoadReport]) -> None:
        """Keep what gateway ``reporter`` measured (all or none)."""
        ...
