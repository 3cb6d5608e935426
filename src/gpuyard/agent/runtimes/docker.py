"""The ``docker`` runtime: each workload is a container, driven through the Docker SDK.

A container is named ``gpuyard-<workload id>`` and labelled with the workload id, its spec hash and
its host port, so a restarted agent finds (re-adopts) its containers by label. Which containers
were stopped on request (rather than ending on their own) is kept in ``docker-stopped.json`` in
the agent's state dir, so a restarted agent still reports them ``stopped``, and starts them again
when the server wants them running. GPUs are given as
device requests for the spec's GPU uuids (or indices); the spec's port is published on a host port
from the agent's range. See ``docs/agent-runtimes.md`` for how a spec becomes a container.

Tenancy rules, as far as the SDK can state them: never privileged, never the host's network (nor
its PID or IPC namespace), only the assigned GPUs (device requests, and ``NVIDIA_VISIBLE_DEVICES``
which the spec cannot override), and a bridge network per org (``gpuyard-org-<org id>``) so
containers of different orgs cannot reach each other; the port is published on the agent's
listen address only.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest

from gpuyard.agent.ports import NoFreePort, PortAllocator
from gpuyard.agent.runtimes.base import DEFAULT_GRACE_S, LOG_TAIL_LINES, unknown_workload
from gpuyard.agent.runtimes.docker_client import ContainerLike, DockerClientLike
from gpuyard.core.clock import Clock, SystemClock
from gpuyard.core.hosts import Isolation, PortRange
from gpuyard.core.workload import WorkloadSpec, WorkloadState, WorkloadStatus

LABEL_WORKLOAD = "gpuyard.workload_id"
LABEL_SPEC_HASH = "gpuyard.spec_hash"
LABEL_HOST_PORT = "gpuyard.host_port"
LABEL_KIND = "gpuyard.kind"
LABEL_ORG = "gpuyard.org"
NETWORK_PREFIX = "gpuyard-org-"
SHARED_NETWORK = "gpuyard-workloads"
"""For a spec that names no org (``gpuyard.org`` label)."""
STOPPED_FILE = "docker-stopped.json"

_STATES = {
    "created": WorkloadState.STARTING,
    "running": WorkloadState.RUNNING,
    "restarting": WorkloadState.RUNNING,
    "paused": WorkloadState.RUNNING,
    "removing": WorkloadState.STOPPED,
    "exited": WorkloadState.EXITED,
    "dead": WorkloadState.FAILED,
}


def container_name(workload_id: str) -> str:
    return f"gpuyard-{workload_id}"


def container_command(spec: WorkloadSpec) -> tuple[list[str] | None, list[str] | None]:
    """``(entrypoint, command)`` for a spec; ``None`` keeps the image's own."""
    if spec.command is not None and spec.command.strip():
        return ["/bin/sh", "-c"], [spec.command, "gpuyard", *spec.args]
    if spec.onstart is not None and spec.onstart.strip():
        script = f'{spec.onstart}\nexec "$@"' if spec.args else spec.onstart
        return ["/bin/sh", "-c"], [script, "gpuyard", *spec.args]
    return None, (list(spec.args) or None)


def network_name(spec: WorkloadSpec) -> str:
    """The org's own bridge network."""
    org = spec.labels.get(LABEL_ORG)
    return f"{NETWORK_PREFIX}{org}" if org else SHARED_NETWORK


def container_env(spec: WorkloadSpec) -> dict[str, str]:
    env = dict(spec.env)
    devices = spec.gpu_uuids or [str(i) for i in spec.gpu_indices]
    env["NVIDIA_VISIBLE_DEVICES"] = ",".join(devices) or "void"  # the NVIDIA runtime reads it
    env["GPUYARD_WORKLOAD_ID"] = spec.id
    if spec.port is not None:
        env["PORT"] = str(spec.port)
    keys = "\n".join(k.strip() for k in spec.ssh_authorized_keys if k.strip())
    if keys:
        env["GPUYARD_SSH_AUTHORIZED_KEYS"] = keys
        env["SSH_PUBLIC_KEY"] = keys
    return env


class DockerRuntime:
    name = "docker"

    def __init__(
        self,
        client: DockerClientLike,
        *,
        port_range: PortRange,
        clock: Clock | None = None,
        use_gpus: bool = True,
        listen_host: str = "0.0.0.0",
        state_dir: Path | None = None,
    ) -> None:
        """``use_gpus=False`` leaves device requests out: the host's GPUs are logical ones.
        ``listen_host`` is the host address ports are published on. ``state_dir`` keeps which
        containers were stopped on request across agent restarts."""
        self._client = client
        self._listen_host = listen_host
        self.isolation = Isolation(isolates=True, runtime="docker", sandbox="docker containers")
        self._ports = PortAllocator(port_range)
        self._clock: Clock = clock or SystemClock()
        self._use_gpus = use_gpus
        self._failures: dict[str, WorkloadStatus] = {}
        self._stopped_path = state_dir / STOPPED_FILE if state_dir is not None else None
        self._stop_requested: set[str] = self._load_stopped()
        self._lock = asyncio.Lock()

    async def start(self, spec: WorkloadSpec) -> WorkloadStatus:
        async with self._lock:
            existing = await self._find(spec.id)
            if existing is not None:
                status = await self._status(existing)
                if status.state.is_active:
                    return status
                await asyncio.to_thread(existing.remove, force=True)
            self._failures.pop(spec.id, None)
            self._forget_stop(spec.id)
            try:
                container = await asyncio.to_thread(self._run, spec)
            except (DockerException, NoFreePort, ValueError) as exc:
                return self._fail(spec, _explain(exc))
            return await self._status(container)

    async def inspect(self, workload_id: str) -> WorkloadStatus | None:
        container = await self._find(workload_id)
        if container is None:
            return self._failures.get(workload_id)
        return await self._status(container)

    async def list(self) -> builtins.list[WorkloadStatus]:
        containers = await asyncio.to_thread(
            self._client.containers.list, all=True, filters={"label": LABEL_WORKLOAD}
        )
        statuses = [await self._status(c) for c in containers]
        seen = {s.id for s in statuses}
        return statuses + [f for wid, f in self._failures.items() if wid not in seen]

    async def stop(self, workload_id: str, grace_s: float = DEFAULT_GRACE_S) -> WorkloadStatus:
        container = await self._find(workload_id)
        if container is None:
            if workload_id in self._failures:
                return self._failures[workload_id]
            raise unknown_workload(workload_id)
        if workload_id not in self._stop_requested:
            self._stop_requested.add(workload_id)
            self._save_stopped()
        with contextlib.suppress(NotFound):
            await asyncio.to_thread(container.stop, timeout=max(0, math.ceil(grace_s)))
        return await self._status(container)

    async def remove(self, workload_id: str) -> None:
        self._failures.pop(workload_id, None)
        self._forget_stop(workload_id)
        container = await self._find(workload_id)
        if container is not None:
            with contextlib.suppress(NotFound):
                await asyncio.to_thread(container.remove, force=True)

    async def logs(self, workload_id: str, tail_lines: int = 100) -> str:
        container = await self._find(workload_id)
        if container is None:
            if workload_id in self._failures:
                return ""
            raise unknown_workload(workload_id)
        return await asyncio.to_thread(_logs, container, tail_lines)

    def _load_stopped(self) -> set[str]:
        if self._stopped_path is None:
            return set()
        try:
            found = json.loads(self._stopped_path.read_text())
        except FileNotFoundError:
            return set()
        except (OSError, ValueError):
            return set()  # damaged: those containers read ``exited`` as before this file
        return {str(x) for x in found} if isinstance(found, list) else set()

    def _save_stopped(self) -> None:
        if self._stopped_path is None:
            return
        tmp = self._stopped_path.with_name(STOPPED_FILE + ".tmp")
        tmp.write_text(json.dumps(sorted(self._stop_requested)))
        os.replace(tmp, self._stopped_path)

    def _forget_stop(self, workload_id: str) -> None:
        if workload_id in self._stop_requested:
            self._stop_requested.discard(workload_id)
            self._save_stopped()

    def _run(self, spec: WorkloadSpec) -> Any:
        if not spec.image:
            raise ValueError("the docker runtime needs an image")
        try:
            self._client.images.get(spec.image)
        except ImageNotFound:
            self._client.images.pull(spec.image)
        labels = {
            **spec.labels,
            LABEL_WORKLOAD: spec.id,
            LABEL_SPEC_HASH: spec.spec_hash(),
            LABEL_KIND: str(spec.kind),
        }
        kwargs: dict[str, Any] = {}
        if spec.port is not None:
            host_port = self._ports.allocate(taken=self._ports_in_use())
            labels[LABEL_HOST_PORT] = str(host_port)
            kwargs["ports"] = {f"{spec.port}/tcp": (self._listen_host, host_port)}
        devices = spec.gpu_uuids or [str(i) for i in spec.gpu_indices]
        if devices and self._use_gpus:
            kwargs["device_requests"] = [DeviceRequest(device_ids=devices, capabilities=[["gpu"]])]
        entrypoint, command = container_command(spec)
        if entrypoint is not None:
            kwargs["entrypoint"] = entrypoint
        return self._client.containers.run(
            spec.image,
            command,
            detach=True,
            name=container_name(spec.id),
            environment=container_env(spec),
            labels=labels,
            network=self._network(spec),
            privileged=False,
            **kwargs,
        )

    def _network(self, spec: WorkloadSpec) -> str:
        """The org's bridge network, made the first time one of its workloads runs here."""
        name = network_name(spec)
        if not self._client.networks.list(names=[name]):
            org = spec.labels.get(LABEL_ORG, "")
            self._client.networks.create(name, driver="bridge", labels={LABEL_ORG: org})
        return name

    def _ports_in_use(self) -> set[int]:
        containers = self._client.containers.list(all=False, filters={"label": LABEL_HOST_PORT})
        return {int(c.labels[LABEL_HOST_PORT]) for c in containers}

    async def _find(self, workload_id: str) -> ContainerLike | None:
        found = await asyncio.to_thread(
            self._client.containers.list,
            all=True,
            filters={"label": f"{LABEL_WORKLOAD}={workload_id}"},
        )
        return found[0] if found else None

    def _fail(self, spec: WorkloadSpec, message: str) -> WorkloadStatus:
        status = WorkloadStatus(
            id=spec.id,
            state=WorkloadState.FAILED,
            message=message,
            finished_at=self._clock.now(),
            spec_hash=spec.spec_hash(),
        )
        self._failures[spec.id] = status
        return status

    async def _status(self, container: ContainerLike) -> WorkloadStatus:
        return await asyncio.to_thread(self._status_sync, container)

    def _status_sync(self, container: ContainerLike) -> WorkloadStatus:
        with contextlib.suppress(NotFound):
            container.reload()
        labels = container.labels
        workload_id = labels.get(LABEL_WORKLOAD, container.name)
        raw: dict[str, Any] = container.attrs.get("State") or {}
        state = _STATES.get(str(raw.get("Status", "")), WorkloadState.UNKNOWN)
        if state is WorkloadState.EXITED and workload_id in self._stop_requested:
            state = WorkloadState.STOPPED
        final = state.is_final
        exit_code = int(raw["ExitCode"]) if final and raw.get("ExitCode") is not None else None
        pid = int(raw.get("Pid") or 0) or None
        port = labels.get(LABEL_HOST_PORT)
        return WorkloadStatus(
            id=workload_id,
            state=state,
            exit_code=exit_code,
            host_port=int(port) if port else None,
            pid=pid,
            container_id=container.id,
            started_at=parse_docker_time(raw.get("StartedAt")),
            finished_at=parse_docker_time(raw.get("FinishedAt")) if final else None,
            message=_message(raw, state, exit_code),
            log_tail=_logs(container, LOG_TAIL_LINES),
            spec_hash=labels.get(LABEL_SPEC_HASH),
        )


def _message(raw: dict[str, Any], state: WorkloadState, exit_code: int | None) -> str | None:
    if raw.get("Error"):
        return str(raw["Error"])
    if raw.get("OOMKilled"):
        return "killed: out of memory"
    if state.is_final and exit_code is not None:
        return f"{state.value} with code {exit_code}"
    if raw.get("Status") == "paused":
        return "paused"
    return None


def _logs(container: ContainerLike, tail_lines: int) -> str:
    try:
        data = container.logs(stdout=True, stderr=True, tail=max(0, tail_lines))
    except NotFound:
        return ""
    return data.decode(errors="replace")


def _explain(exc: Exception) -> str:
    if isinstance(exc, APIError):
        return f"docker: {exc.explanation or exc}"
    return str(exc)


def parse_docker_time(value: object) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds; its zero time means "never"."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None
