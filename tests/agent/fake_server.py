"""A small honest stand-in for the server side of the agent protocol.

``FakeServer`` is an ``AgentTransport`` (tests hand it to a ``Supervisor`` directly): it spends join
tokens, checks credentials, keeps each host's assignments and records every heartbeat. ``down``
makes it unreachable. ``agent_api(server)`` puts the same object behind real HTTP routes, and
``serve(app)`` runs those on loopback with uvicorn inside the test's event loop (``serve_in_thread``
in a thread of its own, for the CLI, which runs its own loop).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gpuyard.agent.transport import AgentRejected, ServerUnavailable
from gpuyard.core.agent_protocol import (
    Assignment,
    Desired,
    HeartbeatRequest,
    HeartbeatResponse,
    HostStatus,
    RegisterRequest,
    RegisterResponse,
)
from gpuyard.core.workload import WorkloadSpec, WorkloadStatus


@dataclass
class FakeServer:
    tokens: set[str] = field(default_factory=lambda: {"gyj_test"})
    interval_s: float = 5.0
    down: bool = False
    retry_after: float | None = None
    refused: int = 0
    """Calls answered "down"."""
    host_status: HostStatus = HostStatus.READY
    registrations: list[RegisterRequest] = field(default_factory=list)
    heartbeats: list[HeartbeatRequest] = field(default_factory=list)
    assignments: dict[str, Assignment] = field(default_factory=dict)
    credentials: dict[str, str] = field(default_factory=dict)  # credential → host id

    # -- what the operator and the controllers do -------------------------------------------

    def assign(self, spec: WorkloadSpec, desired: Desired = Desired.RUNNING) -> None:
        self.assignments[spec.id] = Assignment(spec=spec, desired=desired)

    def want(self, workload_id: str, desired: Desired) -> None:
        self.assign(self.assignments[workload_id].spec, desired)

    def forget(self, workload_id: str) -> None:
        del self.assignments[workload_id]

    def revoke_all(self) -> None:
        self.credentials.clear()

    @property
    def statuses(self) -> dict[str, WorkloadStatus]:
        """The statuses of the last heartbeat, by workload id."""
        if not self.heartbeats:
            return {}
        return {s.id: s for s in self.heartbeats[-1].workloads}

    # -- AgentTransport ------------------------------------------------------------------------

    async def register(self, request: RegisterRequest) -> RegisterResponse:
        self._reachable()
        if request.token not in self.tokens:
            raise AgentRejected(
                "this join token is invalid, used or revoked",
                code="invalid_join_token",
                status=401,
            )
        self.tokens.discard(request.token)
        self.registrations.append(request)
        host_id = f"host_{len(self.registrations)}"
        credential = f"gyh_{secrets.token_urlsafe(8)}"
        self.credentials[credential] = host_id
        return RegisterResponse(
            host_id=host_id, credential=credential, heartbeat_interval_s=self.interval_s
        )

    async def heartbeat(self, credential: str, request: HeartbeatRequest) -> HeartbeatResponse:
        self._reachable()
        host_id = self.credentials.get(credential)
        if host_id is None:
            raise AgentRejected(
                "this host's credential was revoked", code="unauthenticated", status=401
            )
        self.heartbeats.append(request)
        return HeartbeatResponse(
            host_id=host_id,
            status=self.host_status,
            cordoned=False,
            heartbeat_interval_s=self.interval_s,
            workloads=list(self.assignments.values()),
        )

    def _reachable(self) -> None:
        if self.down:
            self.refused += 1
            raise ServerUnavailable(
                "connection refused (the fake server is down)", retry_after=self.retry_after
            )


def agent_api(server: FakeServer) -> FastAPI:
    """The agent routes over ``server``, answering errors in the native envelope."""
    app = FastAPI()

    @app.exception_handler(AgentRejected)
    async def rejected(request: Request, exc: AgentRejected) -> JSONResponse:
        return JSONResponse({"error": exc.message, "code": exc.code}, status_code=exc.status)

    @app.exception_handler(ServerUnavailable)
    async def unavailable(request: Request, exc: ServerUnavailable) -> JSONResponse:
        body = {"error": exc.reason, "code": "unavailable"}
        headers = {} if exc.retry_after is None else {"Retry-After": f"{exc.retry_after:g}"}
        return JSONResponse(body, status_code=503, headers=headers)

    @app.post("/v1/agent/register")
    async def register(body: RegisterRequest) -> RegisterResponse:
        return await server.register(body)

    @app.post("/v1/agent/heartbeat")
    async def heartbeat(body: HeartbeatRequest, request: Request) -> HeartbeatResponse:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential:
            raise AgentRejected("no credential", code="unauthenticated", status=401)
        return await server.heartbeat(credential, body)

    return app


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` from a thread of its own, for code that runs its own event loop (the CLI)."""
    sock = _loopback_socket()
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port in this event loop; yields its base URL."""
    sock = _loopback_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = asyncio.get_running_loop().time() + 10
    while not server.started:
        if task.done():
            task.result()
        assert asyncio.get_running_loop().time() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
