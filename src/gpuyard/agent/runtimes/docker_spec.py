"""How a ``WorkloadSpec`` becomes a container, and how a container's state reads as a status.

Pure functions over the spec and the engine's ``inspect`` answer; ``docker.py`` does the I/O. The
rules are written down in ``docs/agent-runtimes.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from docker.types import DeviceRequest, Mount

from gpuyard.core.workload import WorkloadSpec, WorkloadState

LABEL_WORKLOAD = "gpuyard.workload_id"
LABEL_SPEC_HASH = "gpuyard.spec_hash"
LABEL_HOST_PORT = "gpuyard.host_port"
LABEL_KIND = "gpuyard.kind"
LABEL_ORG = "gpuyard.org"
NETWORK_PREFIX = "gpuyard-org-"
SHARED_NETWORK = "gpuyard-workloads"
"""For a spec that names no org (``gpuyard.org`` label); also the network the probe makes."""

_STATES = {
    "created": WorkloadState.STARTING,
    "running": WorkloadState.RUNNING,
    "restarting": WorkloadState.RUNNING,
    "paused": WorkloadState.RUNNING,
    "removing": WorkloadState.STOPPED,
    "exited": WorkloadState.EXITED,
    "dead": WorkloadState.FAILED,
}


class Networking(StrEnum):
    """``bridge``: a bridge network per org, the spec's port published on a host port. ``host``:
    the host's network (an engine that cannot make bridges), the workload listens on the host
    port itself (``PORT``); such a host does not isolate."""

    BRIDGE = "bridge"
    HOST = "host"


@dataclass(frozen=True)
class ResourceShare:
    """The host's CPUs and memory; a workload gets the share its GPUs are of the host's GPUs, as
    its offer said (``cpu_cores``, ``cpu_ram``). ``gpus`` 0: no limits."""

    cpu_cores: float
    ram_mb: int
    gpus: int

    def limits(self, spec: WorkloadSpec) -> dict[str, Any]:
        wanted = len(spec.gpu_uuids or spec.gpu_indices)
        if self.gpus <= 0 or wanted <= 0:
            return {}
        share = min(1.0, wanted / self.gpus)
        nano_cpus = max(1, math.floor(self.cpu_cores * share * 1e9))
        memory = max(_MIN_MEMORY_MB, int(self.ram_mb * share)) * _MB
        return {"nano_cpus": nano_cpus, "mem_limit": memory, "memswap_limit": memory}


_MB = 1024 * 1024
_MIN_MEMORY_MB = 64


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


def container_env(spec: WorkloadSpec, port: int | None = None) -> dict[str, str]:
    """The spec's env and ours (which win); ``port`` is what ``PORT`` says (the spec's port on a
    bridge, the host port on the host's network)."""
    env = dict(spec.env)
    devices = spec.gpu_uuids or [str(i) for i in spec.gpu_indices]
    env["NVIDIA_VISIBLE_DEVICES"] = ",".join(devices) or "void"  # the NVIDIA runtime reads it
    env["GPUYARD_WORKLOAD_ID"] = spec.id
    if port is not None:
        env["PORT"] = str(port)
    keys = "\n".join(k.strip() for k in spec.ssh_authorized_keys if k.strip())
    if keys:
        env["GPUYARD_SSH_AUTHORIZED_KEYS"] = keys
        env["SSH_PUBLIC_KEY"] = keys
    return env


@dataclass(frozen=True)
class ContainerPlan:
    """What the runtime asks the engine for, besides the spec: where and how it runs."""

    networking: Networking
    listen_host: str
    use_gpus: bool
    read_only: tuple[str, ...] = ()
    """Host paths mounted read-only at the same path in every container (model files)."""
    hidden: tuple[str, ...] = ()
    """Paths no container may see even where a read-only path holds them (the server's data)."""
    share: ResourceShare | None = None

    def mounts(self) -> list[Mount]:
        found = [Mount(target=p, source=p, type="bind", read_only=True) for p in self.read_only]
        for path in self.hidden:
            if any(_within(path, ro) for ro in self.read_only):
                found.append(Mount(target=path, source=None, type="tmpfs", read_only=True))
        return found


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def create_options(
    spec: WorkloadSpec, plan: ContainerPlan, *, host_port: int | None, network: str | None
) -> dict[str, Any]:
    """The keyword arguments of ``containers.create`` (image and command aside)."""
    labels = {
        **spec.labels,
        LABEL_WORKLOAD: spec.id,
        LABEL_SPEC_HASH: spec.spec_hash(),
        LABEL_KIND: str(spec.kind),
    }
    options: dict[str, Any] = {
        "name": container_name(spec.id),
        "labels": labels,
        "privileged": False,
        "init": True,  # PID 1 forwards SIGTERM and reaps; a bare command as PID 1 ignores SIGTERM
        "detach": True,
    }
    inner_port = spec.port
    if plan.networking is Networking.HOST:
        options["network_mode"] = "host"
        inner_port = host_port  # no publishing: the workload binds the host port itself
    else:
        options["network"] = network
        if spec.port is not None and host_port is not None:
            options["ports"] = {f"{spec.port}/tcp": (plan.listen_host, host_port)}
    if host_port is not None:
        labels[LABEL_HOST_PORT] = str(host_port)
    options["environment"] = container_env(spec, inner_port)
    devices = spec.gpu_uuids or [str(i) for i in spec.gpu_indices]
    if devices and plan.use_gpus:
        options["device_requests"] = [DeviceRequest(device_ids=devices, capabilities=[["gpu"]])]
    mounts = plan.mounts()
    if mounts:
        options["mounts"] = mounts
    if plan.share is not None:
        options.update(plan.share.limits(spec))
    entrypoint, _ = container_command(spec)
    if entrypoint is not None:
        options["entrypoint"] = entrypoint
    return options


def workload_state(raw: dict[str, Any]) -> WorkloadState:
    """A container's ``State`` as a workload state: one the engine could not start (``created``
    with an ``Error``) has failed, it is not starting."""
    status = str(raw.get("Status", ""))
    if status == "created" and raw.get("Error"):
        return WorkloadState.FAILED
    return _STATES.get(status, WorkloadState.UNKNOWN)


def state_message(raw: dict[str, Any], state: WorkloadState, exit_code: int | None) -> str | None:
    if raw.get("Error"):
        return f"docker: {raw['Error']}"
    if raw.get("OOMKilled"):
        return "killed: out of memory"
    if state.is_final and exit_code is not None:
        return f"{state.value} with code {exit_code}"
    if raw.get("Status") == "paused":
        return "paused"
    return None


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
