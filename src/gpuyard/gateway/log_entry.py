"""What the request log says about one request (``LogEntry``), filled in as the gateway routes it,
and the row it becomes once the request has ended."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from gpuyard.core.ids import new_id
from gpuyard.core.principal import Principal
from gpuyard.gateway.directory import Target
from gpuyard.gateway.ports import RequestLogRow
from gpuyard.gateway.relay import StreamEnd
from gpuyard.gateway.usage import Usage

MAX_LOGGED_ERROR = 500
MAX_ENDPOINT = 64  # request_logs.endpoint
CLIENT_CLOSED = 499  # logged for a request whose client left before any answer (as nginx logs it)


@dataclass
class LogEntry:
    """What the request log will say about one request, filled in as it is routed."""

    principal: Principal
    endpoint: str
    model: str | None
    stream: bool
    cluster_id: str | None = None
    replica_id: str | None = None
    started: float = field(default_factory=time.perf_counter)
    end: StreamEnd | None = None  # a stream's: its last piece's time, not its (later) close's
    id: str = field(default_factory=lambda: new_id("req"))
    held_cents: int = 0  # what ``Spend.hold`` took for it
    characters: int = 0  # text to speech: charged by them when it is answered

    def at(self, target: Target) -> None:
        self.cluster_id, self.replica_id = target.cluster_id, target.replica_id

    def row(
        self, *, now: datetime, status: int, usage: Usage | None, error: str | None
    ) -> RequestLogRow:
        """The log row of the request, ended now with ``status``."""
        ended = self.end.at if self.end is not None and self.end.at else time.perf_counter()
        return RequestLogRow(
            id=self.id,
            created_at=now,
            org_id=self.principal.org_id,
            key_id=self.principal.key_id,
            endpoint=self.endpoint,
            model=self.model,
            cluster_id=self.cluster_id,
            replica_id=self.replica_id,
            stream=self.stream,
            status=status,
            latency_ms=round((ended - self.started) * 1000, 3),
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            error=error[:MAX_LOGGED_ERROR] if error else None,
        )
