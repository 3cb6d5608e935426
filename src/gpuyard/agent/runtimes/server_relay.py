"""The one way out of a sandbox: a loopback port inside it, relayed to the server the agent
reports to, for workloads that must report to it (serverless workers: ``/worker_status/``).

A sandboxed workload has no network but its own loopback (``sandbox.py``). A workload whose
spec carries the label ``gpuyard.server_relay`` (its value names an environment variable, e.g.
``REPORT_ADDR``) gets that variable set to ``http://127.0.0.1:<port>``: the wrapper listens on
that port inside the sandbox and carries each connection over a Unix socket in the workload's
``run/`` directory (``process_relay.serve_to_server``); here the agent accepts on that socket
and dials its own server's address, with TLS when the server's URL is ``https`` (so the worker
speaks plain HTTP on its loopback and the agent verifies the server's certificate). Nothing the
workload sends chooses where the agent dials: one host and port, the server's public API, which
any tenant reaches anyway from wherever it is; not the host's network, not the agent, not other
workloads, not the server's other ports.

The relay lives in the agent: while the agent restarts, a worker's reports fail (it reports
again), and the agent listens again when it finds the workload running (``ensure``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
from collections.abc import Awaitable
from pathlib import Path
from urllib.parse import urlsplit

from gpuyard.agent.runtimes.process_relay import Inbound, Pipe
from gpuyard.core.workload import SERVER_RELAY_LABEL, WorkloadSpec

SOCKET_NAME = "server.sock"
INSIDE_PORT = 8479
"""The loopback port inside the sandbox (the next one when the workload's own port is this)."""
_VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def relay_variable(spec: WorkloadSpec) -> str | None:
    """The environment variable that should name the relay, when the spec asks for one."""
    name = spec.labels.get(SERVER_RELAY_LABEL)
    return name if name is not None and _VARIABLE_RE.match(name) else None


def inside_port(workload_port: int | None) -> int:
    return INSIDE_PORT + 1 if workload_port == INSIDE_PORT else INSIDE_PORT


class ServerRelays:
    """The agent's side: one Unix socket per workload, each relayed to the server's address."""

    def __init__(self, server_url: str) -> None:
        parts = urlsplit(server_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"cannot relay to {server_url!r}: expected an http(s) URL")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self._servers: dict[str, asyncio.Server] = {}

    async def ensure(self, workload_id: str, run_dir: Path) -> None:
        """Listen on ``run_dir``'s socket for ``workload_id``, unless this agent already does."""
        current = self._servers.get(workload_id)
        if current is not None and current.is_serving():
            return
        loop = asyncio.get_running_loop()
        sock = _bind_in(run_dir, SOCKET_NAME)
        context = ssl.create_default_context() if self.tls else None

        def dial(loop: asyncio.AbstractEventLoop) -> Awaitable[tuple[asyncio.Transport, Pipe]]:
            return loop.create_connection(
                Pipe,
                self.host,
                self.port,
                ssl=context,
                server_hostname=self.host if context is not None else None,
            )

        self._servers[workload_id] = await loop.create_unix_server(lambda: Inbound(dial), sock=sock)

    def close_all(self) -> None:
        for workload_id in list(self._servers):
            self.close(workload_id)

    def close(self, workload_id: str) -> None:
        server = self._servers.pop(workload_id, None)
        if server is not None:
            server.close()


def _bind_in(directory: Path, name: str) -> socket.socket:
    """A Unix socket bound at ``directory/name`` (mode 0600, a stale one replaced), reached
    through ``/proc/self/fd`` since a socket's path is limited to 107 bytes."""
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    try:
        path = f"/proc/self/fd/{fd}/{name}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, 0o600)
        except OSError:
            sock.close()
            raise
        return sock
    finally:
        os.close(fd)
