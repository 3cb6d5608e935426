"""The ``docker`` runtime: each workload is a container, driven through the Docker SDK.

A container is named ``gpuyard-<workload id>`` and labelled with the workload id, its spec hash and
its host port, so a restarted agent finds (re-adopts) its containers by label. Which containers
were stopped on request (rather than ending on their own) is kept in ``docker-stopped.json`` in
the agent's state dir, so a restarted agent still reports them ``stopped``, and starts them again
when the server wants them running. How a spec becomes a container (command, env, GPUs, port,
network, limits, mounts) is in ``docker_spec.py``; the rules are in ``docs/agent-runtimes.md``.

Tenancy rules, as far as the SDK can state them: never privileged, never the host's PID or IPC
namespace, only the assigned GPUs (device requests, and ``NVIDIA_VISIBLE_DEVICES`` which the spec
cannot override), CPU and memory limits from the workload's share of the host, and a bridge
network per org (``gpuyard-org-<org id>``) so containers of different orgs cannot reach each
other; the port is published on the agent's listen address only. On an engine that cannot make
bridge networks, containers use the host's network and the runtime reports that it does not
isolate.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from gpuyard.agent.ports import NoFreePort, PortAllocator
from gpuyard.agent.runtimes.base import DEFAULT_GRACE_S, LOG_TAIL_LINES, unknown_workload
from gpuyard.agent.runtimes.docker_client import ContainerLike, DockerClientLike
from gpuyard.agent.runtimes.docker_spec import (
    LABEL_HOST_PORT,
    LABEL_ORG,
    LABEL_SPEC_HASH,
    LABEL_WORKLOAD,
    SHARED_NETWORK,
    ContainerPlan,
    Networking,
    ResourceShare,
    container_command,
    create_options,
    network_name,
    parse_docker_time,
    state_message,
    workload_state,
)
from gpuyard.core.clock import Clock, SystemClock
from gpuyard.core.hosts import Isolation, PortRange
from gpuyard.core.workload import WorkloadSpec, WorkloadState, WorkloadStatus

__all__ = ["DockerRuntime", "Networking", "ResourceShare", "probe_networking"]

log = logging.getLogger(__name__)

STOPPED_FILE = "docker-stopped.json"
HOST_NETWORK_REASON = (
    "the Docker engine cannot make bridge networks, so containers share the host's network "
    "(they reach its loopback services and each other)"
)


def _has_network(client: DockerClientLike, name: str) -> bool:
    """Whether a network of exactly this name exists (the engine's name filter matches parts of
    names too: ``gpuyard-org-org_a`` would find ``gpuyard-org-org_ab``)."""
    return any(n.name == name for n in client.networks.list(names=[name]))


def probe_networking(client: DockerClientLike) -> Networking:
    """``bridge`` when the engine can make (or already has) gpuyard's shared bridge network,
    else ``host``. Blocks: run it in a thread."""
    try:
        if not _has_network(client, SHARED_NETWORK):
            client.networks.create(SHARED_NETWORK, driver="bridge", labels={LABEL_ORG: ""})
    except APIError as exc:
        log.warning("the Docker engine cannot make a bridge network: %s", exc)
        return Networking.HOST
    return Networking.BRIDGE


class CannotPull(Exception):
    """The engine lacks the image and cannot pull it; the message names the image."""


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
        networking: Networking = Networking.BRIDGE,
        read_only: tuple[str, ...] = (),
        hidden: tuple[str, ...] = (),
        share: ResourceShare | None = None,
    ) -> None:
        """``use_gpus=False`` leaves device requests out: the host's GPUs are logical ones.
        ``listen_host`` is the host address ports are published on. ``state_dir`` keeps which
        containers were stopped on request across agent restarts. ``read_only`` host paths are
        mounted read-only at the same path in every container, ``hidden`` ones under them are
        covered by an empty tmpfs; ``share`` sets CPU and memory limits."""
        self._client = client
        self._plan = ContainerPlan(
            networking=networking,
            listen_host=listen_host,
            use_gpus=use_gpus,
            read_only=tuple(os.path.abspath(p) for p in read_only),
            hidden=tuple(os.path.abspath(p) for p in hidden),
            share=share,
        )
        if networking is Networking.HOST:
            self.isolation = Isolation(
                isolates=False,
                runtime="docker",
                sandbox="docker containers",
                reason=HOST_NETWORK_REASON,
            )
        else:
            self.isolation = Isolation(isolates=True, runtime="docker", sandbox="docker containers")
        self._ports = PortAllocator(port_range)
        self._clock: Clock = clock or SystemClock()
        self._failures: dict[str, WorkloadStatus] = {}
        self._stopped_path = state_dir / STOPPED_FILE if state_dir is not None else None
        self._stop_requested: set[str] = self._load_stopped()
        self._lock = asyncio.Lock()

    @property
    def networking(self) -> Networking:
        return self._plan.networking

    async def start(self, spec: WorkloadSpec) -> WorkloadStatus:
        async with self._lock:
            existing = await self._find(spec.id)
            if existing is not None:
                status = await self._status(existing)
                if status.state.is_active:
                    return status
                self._forget_stop(spec.id)
                if await self._restart(existing, status, spec):
                    return await self._status(existing)
                await asyncio.to_thread(existing.remove, force=True)
            self._failures.pop(spec.id, None)
            self._forget_stop(spec.id)
            try:
                container = await asyncio.to_thread(self._create, spec)
            except (DockerException, NoFreePort, ValueError, CannotPull) as exc:
                return self._fail(spec, _explain(exc))
            try:
                await asyncio.to_thread(container.start)
            except APIError:
                pass  # the engine refused: the container says why (State.Error), and keeps saying
            except DockerException as exc:  # no answer in time, say: it may yet have started
                log.warning("workload %s: starting its container: %s", spec.id, exc)
            return await self._status(container)

    async def inspect(self, workload_id: str) -> WorkloadStatus | None:
        container = await self._find(workload_id)
        if container is None:
            return self._failures.get(workload_id)
        return await self._status(container)

    async def list(self) -> builtins.list[WorkloadStatus]:
        containers = await asyncio.to_thread(
            self._client.containers.list,
            all=True,
            filters={"label": LABEL_WORKLOAD},
            ignore_removed=True,  # one removed between the listing and its inspect: not an error
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

    async def _restart(
        self, container: ContainerLike, status: WorkloadStatus, spec: WorkloadSpec
    ) -> bool:
        """Start an ended container of the same spec again, keeping its files (a rented
        instance's disk survives a stop), as ``docker start`` does; False when it cannot be."""
        if status.spec_hash != spec.spec_hash() or status.state is WorkloadState.FAILED:
            return False
        try:
            await asyncio.to_thread(container.start)
        except APIError as exc:  # its port was taken meanwhile, say: a new container then
            log.info("workload %s: starting its container again failed: %s", spec.id, exc)
            return False
        return True

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
        self._stopped_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._stopped_path.with_name(STOPPED_FILE + ".tmp")
        tmp.write_text(json.dumps(sorted(self._stop_requested)))
        os.replace(tmp, self._stopped_path)

    def _forget_stop(self, workload_id: str) -> None:
        if workload_id in self._stop_requested:
            self._stop_requested.discard(workload_id)
            self._save_stopped()

    def _create(self, spec: WorkloadSpec) -> Any:
        if not spec.image:
            raise ValueError("the docker runtime needs an image")
        try:
            self._client.images.get(spec.image)
        except ImageNotFound:
            try:
                self._client.images.pull(spec.image)
            except DockerException as exc:
                raise CannotPull(f"cannot pull {spec.image}: {_explain(exc)}") from exc
        host_port = None
        if spec.port is not None:
            host_port = self._ports.allocate(taken=self._ports_in_use())
        network = self._network(spec) if self._plan.networking is Networking.BRIDGE else None
        options = create_options(spec, self._plan, host_port=host_port, network=network)
        _, command = container_command(spec)
        return self._client.containers.create(spec.image, command, **options)

    def _network(self, spec: WorkloadSpec) -> str:
        """The org's bridge network, made the first time one of its workloads runs here."""
        name = network_name(spec)
        if not _has_network(self._client, name):
            org = spec.labels.get(LABEL_ORG, "")
            with contextlib.suppress(APIError):  # made meanwhile by a concurrent start
                self._client.networks.create(name, driver="bridge", labels={LABEL_ORG: org})
        return name

    def _ports_in_use(self) -> set[int]:
        """The host ports of all our containers, stopped ones too: a stopped instance keeps its
        port for when it starts again."""
        containers = self._client.containers.list(
            all=True, filters={"label": LABEL_HOST_PORT}, ignore_removed=True
        )
        return {int(c.labels[LABEL_HOST_PORT]) for c in containers}

    async def _find(self, workload_id: str) -> ContainerLike | None:
        found = await asyncio.to_thread(
            self._client.containers.list,
            all=True,
            filters={"label": f"{LABEL_WORKLOAD}={workload_id}"},
            ignore_removed=True,
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
        state = workload_state(raw)
        if state is WorkloadState.EXITED and workload_id in self._stop_requested:
            state = WorkloadState.STOPPED
        started_at = parse_docker_time(raw.get("StartedAt"))
        final = state.is_final
        ran = started_at is not None  # the engine's code for a container it never started is 128
        exit_code = (
            int(raw["ExitCode"]) if final and ran and raw.get("ExitCode") is not None else None
        )
        pid = int(raw.get("Pid") or 0) or None
        port = labels.get(LABEL_HOST_PORT)
        return WorkloadStatus(
            id=workload_id,
            state=state,
            exit_code=exit_code,
            host_port=int(port) if port else None,
            pid=pid,
            container_id=container.id,
            started_at=started_at,
            finished_at=parse_docker_time(raw.get("FinishedAt")) if final else None,
            message=state_message(raw, state, exit_code),
            log_tail=_logs(container, LOG_TAIL_LINES),
            spec_hash=labels.get(LABEL_SPEC_HASH),
        )


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
