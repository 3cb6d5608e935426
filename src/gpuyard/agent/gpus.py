"""GPU detection and host facts.

GPUs come from NVML first (``nvidia-ml-py``). Where NVML finds none (no driver, no library, no
device), the GPUs declared with ``--gpus "RTX 4090:2"`` are used instead: *logical* GPUs, which is
how machines without NVIDIA GPUs, tests and simulations run. A logical GPU's uuid is derived from a
seed kept in the agent's state dir, its index and its name, so it is the same after every restart.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import platform
import shutil
import socket
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import psutil
import pynvml
from pydantic import BaseModel, ConfigDict, Field

from gpuyard.core.gpu_names import known_vram_mb
from gpuyard.core.hosts import GpuInfo, HostFacts, Isolation, PortRange

log = logging.getLogger(__name__)

_MB = 1024 * 1024
_SEED_FILE = "gpu-seed"
_MAX_DECLARED_PER_TYPE = 64


class GpuProbeResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    gpus: list[GpuInfo] = Field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None


class GpuProbe(Protocol):
    def probe(self) -> GpuProbeResult:
        """Return the host's GPUs; no GPUs (never an exception) when none can be found."""
        ...


class NvmlApi(Protocol):
    """The part of the ``pynvml`` module (``nvidia-ml-py``) the probe uses."""

    @property
    def NVMLError(self) -> type[Exception]: ...

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str | bytes: ...
    def nvmlSystemGetCudaDriverVersion(self) -> int: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetUUID(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetName(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...


class NvmlProbe:
    """Reads GPUs through NVML; ``nvml`` is the ``pynvml`` module or a stand-in with its API."""

    def __init__(self, nvml: NvmlApi | None = None) -> None:
        self._nvml: NvmlApi = nvml if nvml is not None else pynvml

    def probe(self) -> GpuProbeResult:
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except (nvml.NVMLError, OSError) as exc:
            log.info("NVML unavailable (%s): no NVIDIA GPUs detected", exc)
            return GpuProbeResult()
        try:
            driver = _text(nvml.nvmlSystemGetDriverVersion())
            cuda = _cuda_version(int(nvml.nvmlSystemGetCudaDriverVersion()))
            gpus = []
            for index in range(int(nvml.nvmlDeviceGetCount())):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                gpus.append(
                    GpuInfo(
                        index=index,
                        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                        name=_text(nvml.nvmlDeviceGetName(handle)),
                        vram_mb=int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // _MB,
                    )
                )
            return GpuProbeResult(gpus=gpus, driver_version=driver, cuda_version=cuda)
        except nvml.NVMLError as exc:
            log.warning("NVML query failed (%s): no NVIDIA GPUs detected", exc)
            return GpuProbeResult()
        finally:
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError as exc:
                log.debug("nvmlShutdown failed: %s", exc)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _cuda_version(value: int) -> str:
    """NVML encodes CUDA 12.4 as 12040."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def logical_gpu_seed(state_dir: Path) -> str:
    """The seed logical GPU uuids derive from, created once in ``state_dir`` and kept."""
    path = state_dir / _SEED_FILE
    try:
        seed = path.read_text().strip()
        if seed:
            return seed
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    seed = uuid.uuid4().hex
    tmp = path.with_suffix(".tmp")
    tmp.write_text(seed + "\n")
    os.replace(tmp, path)
    return seed


def logical_gpu_uuid(seed: str, index: int, name: str) -> str:
    return f"GPU-{uuid.uuid5(uuid.NAMESPACE_OID, f'gpuyard:{seed}:{index}:{name}')}"


DEFAULT_LOCAL_GPUS = "Logical GPU:2"
"""What ``gpuyard up``'s local agent declares where NVML finds no GPU and ``--gpus`` says none."""


def parse_gpu_declaration(text: str, *, seed: str) -> list[GpuInfo]:
    """Parse ``"NAME[:COUNT[:VRAM_MB]][,NAME…]"`` into logical GPUs, indexed in order.

    ``"RTX 4090:2"`` → two RTX 4090; ``"RTX 4090:2:24576"`` → with 24576 MB each;
    ``"RTX 4090:2,A100 80GB:1"`` → indices 0 and 1 are RTX 4090, 2 is the A100. COUNT defaults to 1;
    VRAM defaults to the known VRAM of the named type (``core.gpu_names``), else stays unknown.
    """
    if not text.strip():
        raise ValueError("empty GPU declaration; expected e.g. 'RTX 4090:2' or 'RTX 4090:2:24576'")
    gpus: list[GpuInfo] = []
    for item in text.split(","):
        name, count, vram = _parse_item(item)
        for _ in range(count):
            index = len(gpus)
            gpus.append(
                GpuInfo(
                    index=index,
                    uuid=logical_gpu_uuid(seed, index, name),
                    name=name,
                    vram_mb=vram,
                    logical=True,
                )
            )
    return gpus


def _parse_item(item: str) -> tuple[str, int, int | None]:
    parts = [p.strip() for p in item.split(":")]
    if len(parts) > 3:
        raise ValueError(f"bad GPU declaration {item.strip()!r}: expected NAME[:COUNT[:VRAM_MB]]")
    name = parts[0]
    if not name:
        raise ValueError(f"bad GPU declaration {item.strip()!r}: the GPU name is empty")
    count = 1
    if len(parts) >= 2:
        if not parts[1].isdigit() or not 1 <= int(parts[1]) <= _MAX_DECLARED_PER_TYPE:
            raise ValueError(
                f"bad GPU count {parts[1]!r} in {item.strip()!r}: "
                f"expected a whole number from 1 to {_MAX_DECLARED_PER_TYPE}"
            )
        count = int(parts[1])
    vram = known_vram_mb(name)
    if len(parts) == 3:
        if not parts[2].isdigit() or int(parts[2]) == 0:
            raise ValueError(
                f"bad VRAM {parts[2]!r} in {item.strip()!r}: expected a positive whole number "
                "of MB, e.g. 'RTX 4090:2:24576'"
            )
        vram = int(parts[2])
    return name, count, vram


def choose_gpus(found: Sequence[GpuInfo], declared: Sequence[GpuInfo]) -> list[GpuInfo]:
    """NVML's GPUs where it found any; else the declared logical GPUs."""
    return list(found) if found else list(declared)


def detect_gpus(probe: GpuProbe, declared: Sequence[GpuInfo]) -> list[GpuInfo]:
    return choose_gpus(probe.probe().gpus, declared)


def listen_host(address: str | None) -> str:
    """Where a workload should listen so the control plane reaches it at ``address`` (this host's
    address as reported, ``None`` for the outward one): loopback for a host that is only reached
    on loopback, every interface otherwise (as Docker publishes a container's port)."""
    chosen = address or outward_address()
    try:
        loopback = ipaddress.ip_address(chosen).is_loopback
    except ValueError:
        loopback = chosen == "localhost"
    return "127.0.0.1" if loopback else "0.0.0.0"


def outward_address() -> str:
    """The address other machines most likely reach this host at (the default route's source)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: routing only, nothing is sent
            return str(sock.getsockname()[0])
        except OSError:
            pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


async def collect_facts(
    *,
    probe: GpuProbe,
    declared: Sequence[GpuInfo],
    disk_path: Path,
    port_range: PortRange,
    address: str | None = None,
    isolation: Isolation | None = None,
) -> HostFacts:
    """Gather the facts a heartbeat carries; blocking probes run in a worker thread."""
    return await asyncio.to_thread(
        _collect_facts, probe, declared, disk_path, port_range, address, isolation
    )


def _collect_facts(
    probe: GpuProbe,
    declared: Sequence[GpuInfo],
    disk_path: Path,
    port_range: PortRange,
    address: str | None,
    isolation: Isolation | None,
) -> HostFacts:
    result = probe.probe()
    disk = shutil.disk_usage(disk_path)
    return HostFacts(
        gpus=choose_gpus(result.gpus, declared),
        driver_version=result.driver_version,
        cuda_version=result.cuda_version,
        cpu_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        ram_mb=psutil.virtual_memory().total // _MB,
        disk_free_mb=disk.free // _MB,
        disk_total_mb=disk.total // _MB,
        hostname=socket.gethostname(),
        address=address or outward_address(),
        port_range=port_range,
        os=f"{platform.system()} {platform.release()} ({platform.machine()})",
        isolation=isolation,
    )
